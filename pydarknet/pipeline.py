"""Decode and preprocess images beside the network, in order, so the network never waits for decoding:
in worker processes (``workers`` > 0; they import only NumPy and Pillow, so forking them is cheap and safe),
or else in a background thread of this process (Pillow's decoders and NumPy's array loops release the GIL, and
nothing is pickled between processes)."""
from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import DarknetError
from .image import decode_rgb8

Prepared = tuple[int, str, "np.ndarray | None", "str | None"]  # (position, path, CHW array(s), error)


def _prepare(args: tuple[int, str, Callable]) -> Prepared:
    """Decode one image to its (H, W, 3) uint8 pixels and hand them to ``fn`` (the preprocessing takes them
    as they are: no full-size float copy is made)."""
    i, path, fn = args
    try:
        return i, path, fn(decode_rgb8(path)), None
    except DarknetError as e:
        return i, path, None, str(e)
    except Exception as e:  # a decoder bug must not stop a batch run: report it against the file
        return i, path, None, f"{path}: cannot read image: {e}"


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding processes beside the network: none on one or two cores, where a process only takes a core
    from the forward pass and pickles every image back (the background thread does better there: over
    darknet's 7 sample photos x 100 with Tiny Darknet, whole ``classifier valid`` runs on 2 cores, two worker
    processes took the same 10.2 s as the thread for 35 % more CPU, 18.8 against 13.9 s, at a load of 1.3-2.7
    from other work; under a load of about 3.5, medians of 5, 16.2 s with two processes, 16.0 s with one,
    14.2 s with the thread); else up to 4, leaving at least half the cores to PyTorch."""
    cpus = cpu_count()
    return 0 if cpus <= 2 else min(4, cpus // 2)


#: below this many BFLOPs per image, decoding a photo costs about as much as the forward pass
LIGHT_NETWORK_BFLOPS = 2.0


def default_inference_threads(bflops: float, workers: int) -> int | None:
    """PyTorch threads for batched CPU inference beside the decoding, or None to keep PyTorch's default.

    With decoding in the background thread (``workers`` = 0) and a light network, the decoding thread
    gets a core of its own: on 2 cores Tiny Darknet (0.98 BFLOPs) went from 102 to 126 images/s with one
    PyTorch thread instead of two, while Darknet19 (5.6 BFLOPs), whose forward pass dominates, is fastest
    with both (39.6 against 26.3 images/s). Measured with 300-520 px PNG photos, batch 16."""
    cpus = cpu_count()
    if workers > 0 or cpus < 2 or bflops >= LIGHT_NETWORK_BFLOPS:
        return None
    return cpus - 1


@contextlib.contextmanager
def inference_threads(engine, workers: int, threads: int | None = None):
    """While batched CPU inference runs on a PyTorch engine: ``threads`` PyTorch threads, else
    ``default_inference_threads``' choice (None: PyTorch's default). PyTorch's setting is restored afterwards
    (the caller may be a longer-lived process). The onnxruntime engine gets the same count on its own
    session; other engines are left alone."""
    kind = getattr(engine, "kind", None)
    if kind == "onnxruntime":  # its own threads, set on the engine's session (nothing process-wide)
        engine.set_threads(threads or default_inference_threads(engine.spec.bflops, workers))
        yield
        return
    if kind not in ("torch", "network") or str(engine.device) != "cpu":
        yield
        return
    threads = threads or default_inference_threads(engine.spec.bflops, workers)
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepared_images(paths: Iterable[str], fn: Callable, workers: int = 0, threads: int = 1) -> Iterator[Prepared]:
    """Yield (position, path, fn(decoded image) or None, error or None) for each path, in input order. The
    decoded image is ``image.decode_rgb8``'s (H, W, 3) uint8 array.

    With ``workers`` = 0, ``threads`` background threads decode. One, the default, is the fastest beside a
    light network on 2 cores, where the forward pass is the slower side and a second decoding thread only
    takes CPU from it: over darknet's 7 sample photos x 100 with Tiny Darknet (one PyTorch thread), whole
    ``classifier valid`` runs took 9.6-9.9 s with one thread against 10.4-10.9 s with two (three alternating
    pairs, load 1.5-1.8), 93 against 81 images/s in-process on an idle machine.

    ``fn`` must pickle (a module-level function, or an object such as ``model.Prepare``) to travel to the
    worker processes."""
    jobs = ((i, p, fn) for i, p in enumerate(paths))
    if workers <= 0:
        yield from _in_background_thread(jobs, threads=max(1, threads))
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ctx.Pool(workers, initializer=quiet_worker)
    try:
        yield from pool.imap(_prepare, jobs, chunksize=4)
    except BaseException:
        pool.terminate()  # Ctrl-C, or the consumer stopped: no waiting for the queued images
        raise
    else:
        pool.close()
    finally:
        pool.join()


#: what a worker's connections to its parent raise once the parent has gone (Ctrl-C, an error)
_PARENT_GONE = (BrokenPipeError, ConnectionResetError, EOFError)


def quiet_worker(*_args) -> None:
    """Worker initializer (the decoding pool's and training's DataLoader's): Ctrl-C reaches the whole process
    group, but only the parent acts on it (it stops the workers), so a worker ignores SIGINT; and once the
    parent has gone, the broken pipes of the worker's helper threads (multiprocessing's resource sharer,
    which hands tensors over) and of its finalizers are not printed as tracebacks under the parent's one line.
    Any other error is reported as usual."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    thread_hook, unraisable_hook, except_hook = threading.excepthook, sys.unraisablehook, sys.excepthook

    def on_thread_error(args):
        if not issubclass(args.exc_type, _PARENT_GONE):
            thread_hook(args)

    def on_unraisable(u):
        if not isinstance(u.exc_value, _PARENT_GONE):
            unraisable_hook(u)

    def on_error(kind, value, tb):  # the resource sharer's thread reports through sys.excepthook itself
        if not issubclass(kind, _PARENT_GONE):
            except_hook(kind, value, tb)

    threading.excepthook = on_thread_error
    sys.unraisablehook = on_unraisable
    sys.excepthook = on_error


def ordered_map(fn: Callable, items: Iterable, threads: int = 1, ahead: int = 32, name: str = "pydarknet") -> Iterator:
    """``fn(item)`` for each item, in order, computed in ``threads`` background threads at most ``ahead``
    items ahead of the consumer (an error is raised where its item's result would have come). Stopping the
    iteration (or an error) cancels what has not started."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix=name)
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _in_background_thread(jobs: Iterator, lookahead: int = 32, threads: int = 1) -> Iterator[Prepared]:
    """_prepare each job in ``threads`` background threads, at most ``lookahead`` images ahead of the
    consumer, in order."""
    return ordered_map(_prepare, jobs, threads, lookahead, "pydarknet-decode")


#: the most forward passes run at once by ``default_inference_calls``
LIGHT_NETWORK_CALLS = 2


def default_inference_calls(bflops: float, workers: int) -> int:
    """Forward passes (batches) to run at once, each in its own thread (``ordered_map(infer, batches,
    calls, ahead=calls)``), beside the decoding: two for a light network with the background decoding thread
    on 2+ cores, else one.

    With one PyTorch thread per pass (``default_inference_threads``' light-network split) one pass at a time
    leaves CPU unused whenever the decoding thread waits or is ahead, and two PyTorch threads in one pass wait
    on each other at every layer (38-47 s instead of 10.5 s when other work loads the machine). Two passes of
    one thread each fill both cores through the scheduler: over darknet's 7 sample photos x 100 with Tiny
    Darknet on 2 cores, whole ``classifier valid`` runs took 8.4-9.0 s against 9.9-10.5 s (three alternating
    pairs, load 0.8-1.6; the same lines), 111 against 93 images/s in-process on an idle machine, whether one or
    two threads decode. The outputs are the same bits (the torch engine's, checked: 8 batches of 32 in two threads)."""
    if workers > 0 or cpu_count() < 2 or bflops >= LIGHT_NETWORK_BFLOPS:
        return 1
    return LIGHT_NETWORK_CALLS


def batches(items: Iterator[Prepared], size: int) -> Iterator[list[Prepared]]:
    """Group prepared images into lists of at most ``size`` (failed images travel along, unbatched)."""
    batch: list[Prepared] = []
    decoded = 0  # a running count: a long run of unreadable images must not make each append O(batch)
    for item in items:
        batch.append(item)
        decoded += item[2] is not None
        if decoded >= size or len(batch) >= max(size, 256):  # failures alone are reported in groups too
            yield batch
            batch = []
            decoded = 0
    if batch:
        yield batch
