"""Decode and preprocess images in worker processes, in order, so the network never waits for JPEG
decoding. Workers import only NumPy and Pillow (no torch), so forking them is cheap and safe."""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import DarknetError
from .image import load_image
from .preprocess import PREPROCESS

Prepared = tuple[int, str, "np.ndarray | None", "str | None"]  # (position, path, CHW array(s), error)


def _prepare(args: tuple[int, str, Callable | str, int, int]) -> Prepared:
    i, path, fn, w, h = args
    fn = PREPROCESS[fn] if isinstance(fn, str) else fn
    try:
        return i, path, fn(load_image(path), w, h), None
    except DarknetError as e:
        return i, path, None, str(e)
    except Exception as e:  # a decoder bug must not stop a batch run: report it against the file
        return i, path, None, f"{path}: cannot read image: {e}"


def default_workers() -> int:
    """Decoding processes beside the network: none on one or two cores, where a worker only takes a core
    from the forward pass (benchmarks/validate.py measured workers=0 fastest at 2 cores); else up to 4,
    leaving at least half the cores to PyTorch."""
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus // 2)


def prepared_images(paths: Iterable[str], fn: Callable | str, w: int, h: int, workers: int = 0) -> Iterator[Prepared]:
    """Yield (position, path, fn(image, w, h) or None, error or None) for each path, in input order.

    ``fn`` is a preprocessing name (see ``preprocess.PREPROCESS``) or a module-level function (it travels
    to the worker processes by reference)."""
    jobs = ((i, p, fn, w, h) for i, p in enumerate(paths))
    if workers <= 0:
        yield from map(_prepare, jobs)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_prepare, jobs, chunksize=4)


def batches(items: Iterator[Prepared], size: int) -> Iterator[list[Prepared]]:
    """Group prepared images into lists of at most ``size`` (failed images travel along, unbatched)."""
    batch: list[Prepared] = []
    for item in items:
        batch.append(item)
        if sum(1 for b in batch if b[2] is not None) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
