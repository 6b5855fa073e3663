"""Forward-pass benchmark: pydarknet vs C darknet (libdarknet.so) vs OpenCV's Darknet importer.

Batch 1, fp32, at 1 and 2 threads, on every zoo model (or ``--models tiny,darknet19``)::

    python benchmarks/forward.py                      # all 16 zoo models
    python benchmarks/forward.py --models tiny,resnet50 --repeat 20 --threads 1

Prints a markdown table and writes ``benchmarks/results/forward.json`` (git-ignored).

Method
  * Weights: ``torch.manual_seed(0)``, ``load_network(cfg)`` (darknet's random init), written with our own
    ``save_weights`` to a temporary directory; every implementation then loads that file.
    Darknet's random init gives a useless softmax: almost flat for the plain nets (logit std 1e-5 .. 0.5,
    top-5 decided by rounding noise) and saturated to one-hot for the residual ones (their activations grow
    block by block: logit std 30 .. 30000, top-2..5 are exact zeros). So the last convolutional/connected
    layer's weights and biases are multiplied by the power of two ``k`` that brings the std of the softmax
    input nearest to 3 (``TARGET_LOGIT_STD``; untouched if already within 1.5 .. 6). Only positively
    homogeneous ops (linear/relu/leaky, avgpool) follow that layer, so this just scales the logits; a power
    of two keeps it exact in float32. ``k`` is in the JSON (``logit_scale``).
  * Input: ``numpy.random.default_rng(1).random((C, H, W), float32)`` (uniform in [0, 1)), the same array for
    all three implementations (OpenCV gets it as a (1, C, H, W) blob: no scaling, no mean, no RB swap).
  * Timing: ``time.perf_counter`` around one forward call. Warm-up: at least one call and at least
    ``--warmup`` seconds; then ``repeats = clamp(budget / first_time, 3, --repeat)`` timed calls; the median
    is reported (min and all samples are in the JSON).
  * Shared machines: each measurement waits (up to ``--quiet-wait`` s) for the CPUs to be >= 90% idle, and
    is repeated (up to ``--retries`` times) if other processes used more than ``--max-contention`` cores
    on average while it ran (machine busy time from /proc/stat minus our own and our children's CPU
    time). The JSON records ``contention`` per measurement; rows still disturbed are listed at the end.
  * pydarknet runs in this process (``torch.set_num_threads(t)``, ``torch.inference_mode()``). C darknet and
    OpenCV each run in a fresh subprocess per thread count (``OMP_NUM_THREADS=t`` set before the library is
    loaded; ``cv2.setNumThreads(t)``), which also keeps libdarknet's OpenCV 4.6 away from the cv2 wheel and
    keeps the thread pools from competing.
  * If libdarknet.so was built without OpenMP (Debian's is: it imports no ``GOMP_*``/``omp_*`` symbol) its
    thread count cannot change anything, so the 1-thread measurement is reused for the other thread counts
    (marked in the JSON as ``"reused_from_threads": 1``); ``--c-every-thread-count`` measures anyway.
  * Correctness: top-5 indices (in order) of the output vector must be identical across the
    implementations that ran; ``max|diff|`` is the largest absolute difference of the (softmax) outputs of
    pydarknet vs darknet and vs OpenCV.

OpenCV (``pip install "opencv-python-headless<5"``; 5.x dropped the Darknet importer) is optional: without
cv2 its column is skipped with a note. Models OpenCV's importer refuses are recorded as ``unsupported``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ZOO = ("alexnet", "darknet", "tiny", "squeezenet", "vgg-16", "extraction", "darknet19", "darknet19_448",
       "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50", "darknet53", "densenet201")
TARGET_LOGIT_STD = 3.0
WEIGHT_SEED = 0
INPUT_SEED = 1


# ---------------------------------------------------------------------------------------------------------
# timing (shared by the main process and the workers)


def time_calls(fn, *, repeat: int, budget: float, warmup: float) -> dict:
    """Warm up (>= 1 call, >= ``warmup`` s), then time ``clamp(budget/first, 3, repeat)`` calls."""
    t0 = time.perf_counter()
    first = None
    while True:
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        first = dt if first is None else min(first, dt)
        if time.perf_counter() - t0 >= warmup:
            break
    n = max(3, min(repeat, int(budget / max(first, 1e-9))))
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t)
    return {"median_ms": 1e3 * statistics.median(samples), "min_ms": 1e3 * min(samples),
            "samples_ms": [round(1e3 * s, 4) for s in samples], "repeats": n, "output": out}


def cpu_idle_fraction(dt: float = 0.3) -> float | None:
    """Fraction of the machine's CPU time that was idle over ``dt`` seconds (Linux; None elsewhere)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    try:
        i0, t0 = read()
        time.sleep(dt)
        i1, t1 = read()
    except OSError:
        return None
    return (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(timeout: float, need: float = 0.9) -> bool:
    """Wait (up to ``timeout`` s) until other processes leave the CPUs >= ``need`` idle; False on timeout.

    Timings on a shared 2-core machine are meaningless while something else computes; this makes each
    measurement start on a quiet machine where possible, and the JSON records where it could not.
    """
    t = time.perf_counter()
    while True:
        idle = cpu_idle_fraction()
        if idle is None or idle >= need:
            return True
        if time.perf_counter() - t >= timeout:
            return False


def _cpu_snapshot() -> tuple[float, float] | None:
    """(seconds of busy CPU time on the whole machine, seconds of CPU time of this process and its children)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    t = os.times()
    return (sum(v) - v[3] - v[4]) / hz, t.user + t.system + t.children_user + t.children_system


def measure(run, args) -> tuple[dict, float | None]:
    """``run()`` on a quiet machine: wait for quiet, run, and re-run (up to ``--retries`` times) where other
    processes took more than ``--max-contention`` cores on average meanwhile. Returns (result, contention)."""
    for attempt in range(args.retries + 1):
        wait_quiet(args.quiet_wait)
        t0, s0 = time.perf_counter(), _cpu_snapshot()
        res = run()
        t1, s1 = time.perf_counter(), _cpu_snapshot()
        if s0 is None or s1 is None:
            return res, None
        other = max(0.0, ((s1[0] - s0[0]) - (s1[1] - s0[1])) / max(t1 - t0, 1e-9))
        if other <= args.max_contention:
            break
    res["contention"] = round(other, 3)
    res["attempts"] = attempt + 1
    return res, other


# ---------------------------------------------------------------------------------------------------------
# subprocess workers: C darknet and OpenCV


def _worker(args) -> None:
    # Keep a private handle on stdout for the JSON line; route fd 1 (darknet prints there and to stderr) to
    # stderr, which the parent shows only on failure.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    x = np.load(args.input)
    res: dict
    try:
        if args._worker == "darknet":
            from pydarknet.cdarknet import CDarknet
            net = CDarknet(args.cfg, args.weights)
            fn = lambda: net.predict(x)  # noqa: E731
        else:
            import cv2
            cv2.setNumThreads(args.threads)
            net = cv2.dnn.readNetFromDarknet(args.cfg, args.weights)
            blob = np.ascontiguousarray(x[None])
            def fn():
                net.setInput(blob)
                return net.forward()
        r = time_calls(fn, repeat=args.repeat, budget=args.budget, warmup=args.warmup)
        np.save(args.output, np.asarray(r.pop("output"), dtype=np.float32).reshape(-1))
        res = {"ok": True, **r}
        if args._worker == "opencv":
            res["version"] = cv2.__version__
    except Exception as e:  # noqa: BLE001 - reported to the parent as 'unsupported' / 'error'
        name = f"{type(e).__module__}.{type(e).__name__}".replace("builtins.", "")
        res = {"ok": False, "error": f"{name}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
    with os.fdopen(out_fd, "w") as f:
        f.write(json.dumps(res) + "\n")


def run_worker(kind: str, cfg: str, weights: str, input_path: str, threads: int, args, tmp: str) -> dict:
    output = os.path.join(tmp, f"{kind}_{threads}.npy")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", kind, "--cfg", cfg, "--weights", weights,
           "--input", input_path, "--output", output, "--threads", str(threads), "--repeat", str(args.repeat),
           "--budget", str(args.budget), "--warmup", str(args.warmup)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"ok": False, "error": f"worker exited {p.returncode}: {tail}"}
    res = json.loads(lines[-1])
    if res.get("ok"):
        res["output"] = np.load(output)
    return res


def libdarknet_has_openmp(path: str) -> bool:
    """Whether libdarknet.so imports OpenMP (a build without it ignores OMP_NUM_THREADS)."""
    with open(path, "rb") as f:
        data = f.read()
    return b"GOMP_parallel" in data or b"omp_get_num_threads" in data or b"omp_get_max_threads" in data


# ---------------------------------------------------------------------------------------------------------
# weights and input


def make_weights(name: str, x: np.ndarray, path: str) -> float:
    """Deterministic darknet weights for a zoo model, saved with pydarknet's writer; returns the scale k."""
    import torch

    import pydarknet
    torch.manual_seed(WEIGHT_SEED)
    net = pydarknet.load_network(pydarknet.zoo_cfg(name), fuse=False)
    spec = net.spec
    with torch.inference_mode():
        outs = net.forward_all(torch.from_numpy(x)[None])
    soft = [s.index for s in spec.layers if s.kind == "softmax" and s.index <= spec.output_index]
    logits = outs[soft[-1] - 1] if soft and soft[-1] > 0 else outs[spec.output_index]
    std = float(logits.std())
    k = 1.0
    if not TARGET_LOGIT_STD / 2 <= std <= TARGET_LOGIT_STD * 2:
        k = 2.0 ** round(math.log2(TARGET_LOGIT_STD / max(std, 1e-30)))
        last = [s for s in spec.layers if s.kind in ("convolutional", "connected") and s.index < spec.output_index][-1]
        layer = net.layers[f"{last.index}_{last.kind}"]
        with torch.no_grad():
            layer.weights.mul_(k)
            layer.biases.mul_(k)
    net.save_weights(path)
    return k


def make_input(shape) -> np.ndarray:
    return np.random.default_rng(INPUT_SEED).random(tuple(shape), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
# main


def bench_pydarknet(cfg: str, weights: str, x: np.ndarray, threads: int, args) -> dict:
    import torch

    import pydarknet
    torch.set_num_threads(threads)
    net = pydarknet.load_network(cfg, weights)
    xt = torch.from_numpy(x)[None]

    def fn():
        with torch.inference_mode():
            return net(xt)
    r = time_calls(fn, repeat=args.repeat, budget=args.budget, warmup=args.warmup)
    r["output"] = r["output"].reshape(-1).numpy().copy()
    r["ok"] = True
    return r


def top5(v: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-v, kind="stable")[:5]]


def fmt_ms(r: dict | None) -> str:
    if r is None:
        return "-"
    if not r.get("ok"):
        return "unsupported" if r.get("unsupported") else "error"
    ms = r["median_ms"]
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def speedup(base: dict | None, ours: dict) -> str:
    if not base or not base.get("ok"):
        return "-"
    return f"{base['median_ms'] / ours['median_ms']:.1f}x"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo names (default: all 16)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: 1,2)")
    ap.add_argument("--repeat", type=int, default=30, help="max timed repeats per measurement (min is 3)")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls aimed at per measurement")
    ap.add_argument("--warmup", type=float, default=0.3, help="minimum seconds of warm-up calls")
    ap.add_argument("--no-darknet", action="store_true", help="skip the C darknet baseline")
    ap.add_argument("--no-opencv", action="store_true", help="skip the OpenCV baseline")
    ap.add_argument("--c-every-thread-count", action="store_true",
                    help="time C darknet at every thread count even if libdarknet has no OpenMP")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="before each measurement wait up to this many seconds for the CPUs to be >= 90%% idle")
    ap.add_argument("--max-contention", type=float, default=0.25,
                    help="re-measure when other processes used more than this many cores meanwhile")
    ap.add_argument("--retries", type=int, default=2, help="re-measurements allowed per measurement")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "forward.json"), help="JSON output path")
    # internal: subprocess workers
    ap.add_argument("--_worker", choices=("darknet", "opencv"), help=argparse.SUPPRESS)
    for a in ("--cfg", "--weights", "--input", "--output"):
        ap.add_argument(a, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        args.threads = int(args.threads)
        _worker(args)
        return 0

    import torch

    import pydarknet
    from pydarknet.cdarknet import find_library

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    for m in models:
        pydarknet.zoo_cfg(m)  # fail early on a bad name

    lib = None if args.no_darknet else find_library()
    if not args.no_darknet and lib is None:
        print("note: libdarknet.so not found; skipping the C darknet column", file=sys.stderr)
    c_openmp = libdarknet_has_openmp(lib) if lib else None
    if lib and not c_openmp and len(threads) > 1 and not args.c_every_thread_count:
        print(f"note: {lib} has no OpenMP (single-threaded build): timing it once, at 1 thread, and reusing "
              "that for every thread count (--c-every-thread-count to measure anyway)", file=sys.stderr)
    cv_version = None
    if not args.no_opencv:
        import importlib.util
        if importlib.util.find_spec("cv2") is None:
            print('note: cv2 not installed (pip install "opencv-python-headless<5"); skipping the OpenCV column',
                  file=sys.stderr)
        else:
            cv_version = "?"  # the worker reports cv2.__version__

    results = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pydarknet-bench-") as tmp:
        for name in models:
            cfg = pydarknet.zoo_cfg(name)
            spec = pydarknet.load_specs(cfg)
            x = make_input(spec.input_shape)
            weights = os.path.join(tmp, f"{name}.weights")
            k = make_weights(name, x, weights)
            input_path = os.path.join(tmp, f"{name}_input.npy")
            np.save(input_path, x)
            c_cache: dict | None = None
            for t in threads:
                t_model = time.perf_counter()
                row: dict = {"model": name, "threads": t, "logit_scale": k, "bflops": round(spec.bflops, 3)}
                busy = []
                py, other = measure(lambda: bench_pydarknet(cfg, weights, x, t, args), args)
                if other is not None and other > args.max_contention:
                    busy.append("pydarknet")
                c = None
                if lib:
                    if c_openmp or args.c_every_thread_count or c_cache is None:
                        c, other = measure(lambda: run_worker("darknet", cfg, weights, input_path, t, args, tmp), args)
                        if other is not None and other > args.max_contention:
                            busy.append("darknet")
                        c_cache = c
                    else:
                        c = dict(c_cache, reused_from_threads=threads[0])
                cv = None
                if cv_version:
                    cv, other = measure(lambda: run_worker("opencv", cfg, weights, input_path, t, args, tmp), args)
                    if other is not None and other > args.max_contention:
                        busy.append("opencv")
                    if not cv.get("ok"):
                        cv["unsupported"] = True  # the importer refused (or failed on) this cfg
                    else:
                        cv_version = cv.get("version", cv_version)
                # correctness
                ref = py["output"]
                tops = {"pydarknet": top5(ref)}
                diffs = {}
                for label, r in (("darknet", c), ("opencv", cv)):
                    if r and r.get("ok"):
                        o = r["output"]
                        if o.shape != ref.shape:
                            diffs[label] = None
                            tops[label] = None
                            r["note"] = f"output shape {o.shape} != {ref.shape}"
                            continue
                        tops[label] = top5(o)
                        diffs[label] = float(np.abs(o - ref).max())
                same = all(v == tops["pydarknet"] for v in tops.values())
                row.update(pydarknet=py, darknet=c, opencv=cv, top5=tops, top5_same=same, max_abs_diff=diffs,
                           busy_machine=busy)
                results.append(row)
                print(f"[{time.perf_counter() - t_start:6.0f}s] {name} t={t}: pydarknet {fmt_ms(py)} ms, "
                      f"darknet {fmt_ms(c)} ms, opencv "
                      + (f"{fmt_ms(cv)} ({cv['error']})" if cv and not cv.get("ok") else f"{fmt_ms(cv)} ms")
                      + f", top-5 same {'y' if same else 'n'}, diff {diffs} "
                      + (f"[machine busy during: {', '.join(busy)}] " if busy else "")
                      + f"({time.perf_counter() - t_model:.0f}s)", file=sys.stderr, flush=True)
            os.remove(weights)
    elapsed = time.perf_counter() - t_start

    # table
    lines = ["| model | threads | pydarknet ms | darknet ms | opencv ms | vs darknet | vs opencv | top-5 same "
             "| max\\|diff\\| darknet / opencv |",
             "|---|---:|---:|---:|---:|---:|---:|:---:|---|"]
    for r in results:
        d = r["max_abs_diff"]
        dd = " / ".join("-" if d.get(k) is None else f"{d[k]:.1e}" for k in ("darknet", "opencv"))
        lines.append(f"| {r['model']} | {r['threads']} | {fmt_ms(r['pydarknet'])} | {fmt_ms(r['darknet'])} | "
                     f"{fmt_ms(r['opencv'])} | {speedup(r['darknet'], r['pydarknet'])} | "
                     f"{speedup(r['opencv'], r['pydarknet'])} | {'y' if r['top5_same'] else 'n'} | {dd} |")
    print("\n".join(lines))
    unsupported = [(r["model"], r["opencv"]["error"]) for r in results
                   if r["opencv"] and not r["opencv"].get("ok") and r["threads"] == threads[0]]
    for m, e in unsupported:
        print(f"\nopencv unsupported: {m}: {e}")
    busy_rows = [f"{r['model']}/{r['threads']}" for r in results if r["busy_machine"]]
    if busy_rows:
        print(f"\nwarning: other processes kept the CPUs busy during: {', '.join(busy_rows)} (timings suspect; "
              "see contention in the JSON)")

    # JSON
    def clean(r):
        if r is None:
            return None
        return {k: v for k, v in r.items() if k != "output"}
    doc = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "opencv": cv_version, "pydarknet": pydarknet.__version__},
        "libdarknet": lib, "libdarknet_openmp": c_openmp,
        "method": {"batch": 1, "dtype": "float32", "repeat_max": args.repeat, "repeat_min": 3,
                   "budget_s": args.budget, "warmup_s": args.warmup, "weight_seed": WEIGHT_SEED,
                   "input_seed": INPUT_SEED, "target_logit_std": TARGET_LOGIT_STD},
        "elapsed_s": round(elapsed, 1),
        "results": [dict(r, pydarknet=clean(r["pydarknet"]), darknet=clean(r["darknet"]), opencv=clean(r["opencv"]))
                    for r in results],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\n({len(results)} rows in {elapsed:.0f} s; JSON: {os.path.relpath(args.json)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
