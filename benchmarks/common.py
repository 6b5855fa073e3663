"""Machinery shared by the benchmark scripts (forward.py, predict.py, validate.py, train.py).

Not a package: each script is run as ``python benchmarks/X.py``, which puts benchmarks/ first on sys.path,
and each also puts its own directory there before ``import common`` (so loading a script with importlib from
elsewhere works too). Importing this module puts the repository root on sys.path, so the scripts use this
checkout's pydarknet whether or not it is installed.

* machine state: ``cpu_idle_fraction``, ``wait_quiet`` and ``Quiet`` (wait for idle CPUs before a
  measurement, remember the ones that started busy), ``cpu_snapshot`` (for the CPU time other processes
  took during a measurement), ``loadavg``, ``machine_info``;
* processes: ``child_env`` (thread variables, bytecode cache), ``run_proc`` (wall and CPU time of a child,
  arrival times of a marker in its output), ``line_buffered``, ``pydarknet_exe``, ``darknet_exe``,
  ``predicted_in``;
* inputs of predict.py and validate.py: ``make_images`` (deterministic PNG images), ``make_weights``
  (darknet's seeded random init, logits scaled to a std of about 3);
* options and results: ``zoo_models``, ``int_list``, ``add_quiet_wait``, ``add_json``,
  ``add_process_options``, ``scratch_dir``,
  ``report_tail`` (goals and busy-machine warning), ``finish`` (the common end of predict.py and
  validate.py), ``write_json``.
"""
from __future__ import annotations

import contextlib
import glob
import gzip
import json
import math
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.join(ROOT, "tests")  # the ctypes binding to the C darknet (cdarknet.py) lives with the tests
if TESTS not in sys.path:
    sys.path.append(TESTS)

PHOTOS = "/usr/share/darknet/data"
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
SHORTNAMES = "/usr/share/darknet/data/imagenet.shortnames.list"
LABELS = "/usr/share/darknet/data/imagenet.labels.list"
#: the running line both programs' `classifier valid` print after each image: 'N: top 1: X, top K: Y'
RUNNING_LINE = re.compile(r"^(\d+): top 1: ([0-9.]+), top (\d+): ([0-9.]+)$")
FASHION_EVERY = 10
TARGET_LOGIT_STD = 3.0

T0 = time.perf_counter()


def log(msg: str) -> None:
    """A progress line on stderr, stamped with the seconds since this module was imported."""
    print(f"[{time.perf_counter() - T0:5.0f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# machine state


def _proc_stat() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait ...), in clock ticks."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def cpu_idle_fraction(dt: float = 0.5) -> float | None:
    """Fraction of all CPUs' time that was idle over ``dt`` seconds (Linux; None elsewhere)."""
    try:
        v0 = _proc_stat()
        time.sleep(dt)
        v1 = _proc_stat()
    except OSError:
        return None
    return ((v1[3] + v1[4]) - (v0[3] + v0[4])) / max(sum(v1) - sum(v0), 1)


def wait_quiet(timeout: float, need: float = 0.9, dt: float = 0.5) -> bool:
    """Wait (up to ``timeout`` s) until other processes leave the CPUs >= ``need`` idle; False on timeout.

    Timings on a shared 2-core machine are meaningless while something else computes; this makes each
    measurement start on a quiet machine where possible, and the JSON records where it could not. The idle
    fraction is sampled over ``dt`` seconds at a time.
    """
    t = time.perf_counter()
    while True:
        idle = cpu_idle_fraction(dt)
        if idle is None or idle >= need:
            return True
        if time.perf_counter() - t >= timeout:
            return False


def cpu_snapshot() -> tuple[float, float] | None:
    """(seconds of busy CPU time on the whole machine, seconds of CPU time of this process and its children).

    Two snapshots around a measurement give the cores other processes used meanwhile:
    ``((b1 - b0) - (o1 - o0)) / wall``. None where /proc/stat is missing."""
    try:
        v = _proc_stat()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    t = os.times()
    return (sum(v) - v[3] - v[4]) / hz, t.user + t.system + t.children_user + t.children_system


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class Quiet:
    """Waits for a quiet machine before each measurement and remembers which ones started busy."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.busy: list[str] = []

    def __call__(self, what: str) -> bool:
        ok = wait_quiet(self.timeout)
        if not ok:
            self.busy.append(what)
            log(f"  (machine busy before {what}: timing suspect)")
        return ok


def machine_info(*, processor: bool = False) -> dict:
    """platform, (processor,) cpu_count, python: the ``machine`` entry of every result JSON."""
    info: dict = {"platform": platform.platform()}
    if processor:
        info["processor"] = platform.processor() or platform.machine()
    info.update(cpu_count=os.cpu_count(), python=platform.python_version())
    return info


# ---------------------------------------------------------------------------------------------------------
# processes


def thread_env(threads: int) -> dict:
    """This environment with OMP/OpenBLAS/MKL limited to ``threads`` threads."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads))


def child_env(threads: int, pycache: str | None = None) -> dict:
    """``thread_env``; with ``pycache`` the children also keep their bytecode there (as an installed package
    has its .pyc files) instead of recompiling pydarknet in every process."""
    env = thread_env(threads)
    if pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def run_proc(cmd: list[str], *, env: dict, stdin: bytes = b"", marker: bytes | None = None,
             marker_stream: str = "stdout", cwd: str | None = None, check: bool = True) -> dict:
    """Run ``cmd`` to the end; wall time, outputs, and the arrival time of each ``marker`` occurrence."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=cwd)
    bufs = {"stdout": bytearray(), "stderr": bytearray()}
    marks: list[float] = []

    def reader(name, f):
        scan = 0
        fd = f.fileno()
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            t = time.perf_counter() - t0
            buf = bufs[name]
            buf += chunk
            if marker and name == marker_stream:
                while (i := buf.find(marker, scan)) >= 0:
                    marks.append(t)
                    scan = i + len(marker)

    def writer():
        try:
            if stdin:
                p.stdin.write(stdin)
            p.stdin.close()
        except BrokenPipeError:
            pass

    threads = [threading.Thread(target=reader, args=("stdout", p.stdout)),
               threading.Thread(target=reader, args=("stderr", p.stderr)), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(p.pid, 0)  # like p.wait(), plus the child's CPU time
    wall = time.perf_counter() - t0
    rc = p.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    out = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rc": rc,
           "stdout": bufs["stdout"].decode(errors="replace"),
           "stderr": bufs["stderr"].decode(errors="replace"), "marks": marks}
    if check and rc != 0:
        tail = "\n".join(out["stderr"].strip().splitlines()[-5:])
        raise RuntimeError(f"exit status {rc}: {' '.join(cmd)}\n{tail}")
    return out


def line_buffered() -> list[str]:
    """``stdbuf -oL`` where available: a C program's stdout lines then arrive as they are printed."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL"] if stdbuf else []


def predicted_in(stderr: str) -> list[float]:
    """The ``PATH: Predicted in X seconds.`` figures (forward pass only) both programs print."""
    return [float(m) for m in re.findall(r"Predicted in ([0-9.]+) seconds", stderr)]


def pydarknet_exe() -> list[str]:
    """The installed console script, run by this interpreter (no pyenv shim in between)."""
    script = os.path.join(os.path.dirname(sys.executable), "pydarknet")
    if os.path.isfile(script):
        return [sys.executable, script]
    return [sys.executable, "-m", "pydarknet"]


def darknet_exe() -> str | None:
    """C darknet's command: $PYDARKNET_DARKNET_BIN, else ``darknet`` on PATH, else None."""
    return os.environ.get("PYDARKNET_DARKNET_BIN") or shutil.which("darknet")


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------------------------------------
# inputs of predict.py and validate.py: images, weights


def _fashion(n: int) -> list[np.ndarray]:
    if n <= 0 or not os.path.isfile(FASHION):
        return []
    with gzip.open(FASHION) as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        n = min(n, count)
        return list(np.frombuffer(f.read(n * rows * cols), np.uint8).reshape(n, rows, cols))


def make_images(out_dir: str, n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic PNG images (see predict.py's Method); file names hold no ImageNet synset."""
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    photos = []
    for p in sorted(glob.glob(os.path.join(PHOTOS, "*.jpg"))):
        with Image.open(p) as im:
            photos.append(im.convert("RGB"))
    if not photos:
        raise SystemExit(f"no sample photos in {PHOTOS} (Debian's darknet package)")
    fashion = _fashion(n // FASHION_EVERY + 1)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        if fashion and i % FASHION_EVERY == FASHION_EVERY - 1:
            path = os.path.join(out_dir, f"fm{i:05d}.png")
            if not os.path.exists(path):
                Image.fromarray(fashion[(i // FASHION_EVERY) % len(fashion)]).save(path)
            paths.append(path)
            continue
        src = photos[i % len(photos)]
        area = rng.uniform(0.35, 1.0) * src.width * src.height
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw = int(min(src.width, round(math.sqrt(area * aspect))))
        ch = int(min(src.height, round(math.sqrt(area / aspect))))
        x0 = int(rng.integers(0, src.width - cw + 1))
        y0 = int(rng.integers(0, src.height - ch + 1))
        flip = rng.random() < 0.5
        longer = int(rng.integers(300, 521))
        path = os.path.join(out_dir, f"img{i:05d}.png")
        if not os.path.exists(path):
            im = src.crop((x0, y0, x0 + cw, y0 + ch))
            if flip:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
            s = longer / max(cw, ch)
            im = im.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.BICUBIC)
            im.save(path)
        paths.append(path)
    return paths


def make_weights(cfg: str, path: str, seed: int, sample_images: list[str]) -> float:
    """darknet's random init (seeded), last conv layer scaled by 2**j so the logits' std is about 3."""
    import torch

    from pydarknet.engines.network import load_network
    from pydarknet.image import load_image
    from pydarknet.preprocess import letterbox_image

    torch.manual_seed(seed)
    net = load_network(cfg)
    spec = net.spec
    c, h, w = spec.input_shape
    x = np.stack([letterbox_image(load_image(p), w, h) for p in sample_images])
    with torch.inference_mode():
        std = float(net.forward_logits(torch.from_numpy(x)).std())
    k = 1.0
    if std < TARGET_LOGIT_STD / 2:
        k = 2.0 ** round(math.log2(TARGET_LOGIT_STD / max(std, 1e-30)))
        last = [s for s in spec.layers if s.units and s.index < spec.softmax_index][-1]
        layer = net.layers[f"{last.index}_{last.kind}"]
        names = ("scales", "biases") if last.has_batchnorm else ("weights", "biases")
        with torch.no_grad():
            for n in names:
                getattr(layer, n).mul_(k)
    net.save_weights(path)
    return k


# ---------------------------------------------------------------------------------------------------------
# options and results


def zoo_models(text: str) -> list[str]:
    """Comma-separated zoo names -> list; an unknown name fails here, before any measurement."""
    import pydarknet

    models = [m.strip() for m in text.split(",") if m.strip()]
    for m in models:
        pydarknet.zoo_cfg(m)
    return models


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def add_quiet_wait(ap) -> None:
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="before each measurement wait up to this many seconds for the CPUs to be >= 90%% idle")


def add_json(ap, name: str) -> None:
    ap.add_argument("--json", default=os.path.join(RESULTS, f"{name}.json"), help="JSON output path")


def add_process_options(ap, name: str) -> None:
    """The options predict.py and validate.py share: --models, --threads, --seed, --quiet-wait, --keep, --json."""
    ap.add_argument("--models", default="tiny,darknet19", help="comma-separated zoo names (default: tiny,darknet19)")
    ap.add_argument("--threads", type=int, default=2, help="OMP/OpenBLAS/MKL threads in the children (default 2)")
    ap.add_argument("--seed", type=int, default=1, help="weights seed (default 1)")
    add_quiet_wait(ap)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (images, weights, lists)")
    add_json(ap, name)


@contextlib.contextmanager
def scratch_dir(keep: bool = False):
    """A fresh temporary directory (``pydarknet-bench-*``), removed afterwards unless ``keep``."""
    tmp = tempfile.mkdtemp(prefix="pydarknet-bench-")
    try:
        yield tmp
    finally:
        if keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(doc: dict, path: str) -> str:
    """Write ``doc`` (indent 1; anything else as str) at ``path``, making its directory; its relative path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    return os.path.relpath(path)


def report_tail(doc: dict) -> list[str]:
    """The end of predict.py's and validate.py's reports: the goals, and which measurements started busy."""
    L = []
    if doc.get("goals"):
        L += ["### Goals", ""] + [f"- {g}" for g in doc["goals"]] + [""]
    if doc.get("busy"):
        L += [f"warning: the machine was busy before: {', '.join(doc['busy'])} (those timings are suspect)", ""]
    return L


def finish(doc: dict, quiet: Quiet, report, goals, json_path: str, strip=None) -> None:
    """The end of predict.py and validate.py: busy list, load average, elapsed time and goals into ``doc``;
    print ``report(doc)``; then ``strip(doc)`` (drop what only the report needed) and write the JSON."""
    doc["busy"] = quiet.busy
    doc["loadavg_end"] = loadavg()
    doc["elapsed_s"] = round(time.perf_counter() - T0, 1)
    doc["goals"] = goals(doc)
    print(report(doc))
    if strip:
        strip(doc)
    rel = write_json(doc, json_path)
    print(f"({doc['elapsed_s']:.0f} s; JSON: {rel})")
