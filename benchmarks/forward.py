"""Forward-pass benchmark: pydarknet vs C darknet (libdarknet.so), OpenCV's Darknet importer and ONNX Runtime.

Batch 1, fp32, at 1 and 2 threads, on every zoo model (or ``--models tiny,darknet19``)::

    python benchmarks/forward.py                      # the 16 darknet zoo models and EfficientNet-Lite0
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
    all the implementations (OpenCV and ONNX Runtime get it as a (1, C, H, W) array: no scaling, no mean,
    no RB swap).
  * Timing: ``time.perf_counter`` around one forward call. Warm-up: at least one call and at least
    ``--warmup`` seconds; then ``repeats = clamp(budget / first_time, 3, --repeat)`` timed calls; the median
    is reported (min and all samples are in the JSON).
  * Shared machines: each measurement waits (up to ``--quiet-wait`` s) for the CPUs to be >= 90% idle, and
    is repeated (up to ``--retries`` times) if other processes used more than ``--max-contention`` cores
    on average while it ran (machine busy time from /proc/stat minus our own and our children's CPU
    time). The JSON records ``contention`` per measurement; rows still disturbed are listed at the end.
  * pydarknet runs in this process: ``engine.infer(x)`` on the engine the command picks for a long job
    (``choose_engine("auto", ...)``: the faster of its ONNX Runtime engine and its torch engine, by the timings
    cached with the network's export in a scratch ``$PYDARKNET_CACHE``; the table names it), after
    ``pydarknet.tune_process()``, with ``torch.set_num_threads(t)`` and ``t`` ONNX Runtime threads. The bf16
    column is the torch engine at ``precision="bf16"``; its top-5 is compared with pydarknet's fp32. C darknet,
    OpenCV and ONNX Runtime each run in a fresh subprocess per thread count (``OMP_NUM_THREADS=t`` set before
    the library is loaded; ``cv2.setNumThreads(t)``; ``SessionOptions.intra_op_num_threads = t``,
    ``inter_op_num_threads = 1``), which also keeps libdarknet's OpenCV 4.6 away from the cv2 wheel and
    keeps the thread pools from competing.
  * ONNX Runtime: the network (the same cfg and weights file, loaded by ``load_network``) is exported once
    per model in this process by pydarknet's own exporter, ``pydarknet.onnx.export_onnx(net, path,
    batch=1)`` (static batch 1, opset 17; it checks the file against ONNX Runtime itself before writing
    it, and its report is in the JSON as ``onnx_export``); the worker times ``session.run`` on
    ``CPUExecutionProvider`` with the default graph optimisations (``ORT_ENABLE_ALL``).
  * C darknet (pjreddie's, Debian's libdarknet) does not know AlexeyAB's activations (relu6, swish, mish):
    its parser warns and uses relu instead (and EfficientNet-Lite0's forward pass then crashes), so a cfg
    using one is recorded as ``unsupported`` without running it.
  * If libdarknet.so was built without OpenMP (Debian's is: it imports no ``GOMP_*``/``omp_*`` symbol) its
    thread count cannot change anything, so the 1-thread measurement is reused for the other thread counts
    (marked in the JSON as ``"reused_from_threads": 1``); ``--c-every-thread-count`` measures anyway.
  * Correctness: top-5 indices (in order) of the output vector must be identical across the
    implementations that ran; ``max|diff|`` is the largest absolute difference of the (softmax) outputs of
    pydarknet vs darknet, vs OpenCV and vs ONNX Runtime.

OpenCV (``pip install "opencv-python-headless<5"``; 5.x dropped the Darknet importer) is optional: without
cv2 its column is skipped with a note. Models OpenCV's importer refuses are recorded as ``unsupported``.
ONNX Runtime (``pip install onnx onnxruntime``, pydarknet's ``onnx`` extra) is optional too: without it, or
with ``--no-onnxruntime``, its column is skipped with a note; an export that fails is recorded as ``error``
with the exporter's message. The shared machinery (quiet-machine waits, contention snapshots, machine
info, JSON writing) is in ``benchmarks/common.py``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
import common as C  # noqa: E402

ZOO = ("alexnet", "darknet", "tiny", "squeezenet", "vgg-16", "extraction", "darknet19", "darknet19_448",
       "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50", "darknet53", "densenet201",
       "efficientnet-lite0")
IMPLS = ("darknet", "opencv", "onnxruntime")  # the baselines, each timed in a subprocess worker
TARGET_LOGIT_STD = 3.0
WEIGHT_SEED = 0
INPUT_SEED = 1
ONNX_OPSET = 17
#: AlexeyAB's activations (pydarknet.specs.ACTIVATIONS), unknown to pjreddie's darknet (Debian's libdarknet).
NOT_IN_LIBDARKNET = ("relu6", "swish", "mish")


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


def measure(run, args) -> tuple[dict, float | None]:
    """``run()`` on a quiet machine: wait for quiet, run, and re-run (up to ``--retries`` times) where other
    processes took more than ``--max-contention`` cores on average meanwhile. Returns (result, contention)."""
    for attempt in range(args.retries + 1):
        C.wait_quiet(args.quiet_wait, dt=0.3)
        t0, s0 = time.perf_counter(), C.cpu_snapshot()
        res = run()
        t1, s1 = time.perf_counter(), C.cpu_snapshot()
        if s0 is None or s1 is None:
            return res, None
        other = max(0.0, ((s1[0] - s0[0]) - (s1[1] - s0[1])) / max(t1 - t0, 1e-9))
        if other <= args.max_contention:
            break
    res["contention"] = round(other, 3)
    res["attempts"] = attempt + 1
    return res, other


# ---------------------------------------------------------------------------------------------------------
# subprocess workers: C darknet, OpenCV, ONNX Runtime


def _worker_fn(kind: str, args, x: np.ndarray):
    """(the call to time, the library's version) for one worker kind; ``args.weights`` is the model file."""
    if kind == "darknet":
        from cdarknet import CDarknet
        net = CDarknet(args.cfg, args.weights)
        return (lambda: net.predict(x)), None
    blob = np.ascontiguousarray(x[None])
    if kind == "opencv":
        import cv2
        cv2.setNumThreads(args.threads)
        cvnet = cv2.dnn.readNetFromDarknet(args.cfg, args.weights)

        def fn():
            cvnet.setInput(blob)
            return cvnet.forward()
        return fn, cv2.__version__
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.weights, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: blob}
    return (lambda: session.run(None, feed)[0]), ort.__version__


def _worker(args) -> None:
    # Keep a private handle on stdout for the JSON line; route fd 1 (darknet prints there and to stderr) to
    # stderr, which the parent shows only on failure.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    x = np.load(args.input)
    res: dict
    try:
        fn, version = _worker_fn(args._worker, args, x)
        r = time_calls(fn, repeat=args.repeat, budget=args.budget, warmup=args.warmup)
        np.save(args.output, np.asarray(r.pop("output"), dtype=np.float32).reshape(-1))
        res = {"ok": True, **r}
        if version is not None:
            res["version"] = version
    except Exception as e:  # noqa: BLE001 - reported to the parent as 'unsupported' / 'error'
        res = {"ok": False, "error": error_text(e)}
    with os.fdopen(out_fd, "w") as f:
        f.write(json.dumps(res) + "\n")


def error_text(e: BaseException) -> str:
    """``module.Type: last line of the message``."""
    name = f"{type(e).__module__}.{type(e).__name__}".replace("builtins.", "")
    return f"{name}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"


def run_worker(kind: str, cfg: str, weights: str, input_path: str, threads: int, args, tmp: str) -> dict:
    output = os.path.join(tmp, f"{kind}_{threads}.npy")
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", kind, "--cfg", cfg, "--weights", weights,
           "--input", input_path, "--output", output, "--threads", str(threads), "--repeat", str(args.repeat),
           "--budget", str(args.budget), "--warmup", str(args.warmup)]
    p = subprocess.run(cmd, env=C.thread_env(threads), capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"ok": False, "error": f"worker exited {p.returncode}: {tail}"}
    res = json.loads(lines[-1])
    if res.get("ok"):
        res["output"] = np.load(output)
    return res


def libdarknet_refusal(spec) -> str | None:
    """Why libdarknet cannot run this net (an activation it does not know), or None.

    pjreddie's get_activation() warns and falls back to relu for an unknown name, so the net would run and
    give other numbers (EfficientNet-Lite0's then crashes): better not to run it at all."""
    acts = sorted({getattr(s, "activation", None) for s in spec.layers} & set(NOT_IN_LIBDARKNET))
    if not acts:
        return None
    return (f"pjreddie's darknet (libdarknet) has no {'/'.join(acts)} activation (AlexeyAB's; its parser would "
            "silently use relu)")


def export_onnx_for_ort(cfg: str, weights: str, path: str) -> dict:
    """The same network as an ONNX file at ``path``, by pydarknet's exporter (static batch 1); its report."""
    import pydarknet
    from pydarknet.onnx import export_onnx

    t = time.perf_counter()
    try:
        net = pydarknet.load_network(cfg, weights)
        rep = export_onnx(net, path, opset=ONNX_OPSET, batch=1)  # checks the file against ONNX Runtime itself
    except Exception as e:  # noqa: BLE001 - DarknetError, or the exporter's own errors: the column says 'error'
        return {"ok": False, "error": f"export_onnx: {error_text(e)}", "seconds": round(time.perf_counter() - t, 2)}
    keep = ("opset", "batch", "file_bytes", "nodes", "ops", "checked", "images_checked", "max_abs_diff",
            "top5_same", "allowed_diff")
    return {"ok": True, **{k: rep[k] for k in keep}, "seconds": round(time.perf_counter() - t, 2)}


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
    net = pydarknet.load_network(pydarknet.zoo_cfg(name))
    spec = net.spec
    with torch.inference_mode():
        outs = net.forward_all(torch.from_numpy(x)[None])
    soft = spec.softmax_index
    logits = outs[soft - 1] if 0 < soft <= spec.output_index else outs[spec.output_index]
    std = float(logits.std())
    k = 1.0
    if not TARGET_LOGIT_STD / 2 <= std <= TARGET_LOGIT_STD * 2:
        k = 2.0 ** round(math.log2(TARGET_LOGIT_STD / max(std, 1e-30)))
        last = [s for s in spec.layers if s.units and s.index < spec.output_index][-1]
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


def bench_pydarknet(cfg: str, weights: str, x: np.ndarray, threads: int, args, precision: str = "fp32") -> dict:
    """pydarknet as the command runs it: the engine ``choose_engine("auto", ...)`` picks for a long job at
    ``precision`` (fp32: the faster of ONNX Runtime and PyTorch by the timings cached with the export, which
    the first call makes), with ``threads`` threads."""
    import torch

    import pydarknet
    from pydarknet.engines import choose_engine

    torch.set_num_threads(threads)
    pydarknet.tune_process()  # as the pydarknet command does
    spec = pydarknet.load_specs(cfg)
    kind = choose_engine("auto", device="cpu", images=None, has_weights=True, precision=precision, spec=spec,
                         cfg=cfg, weights=weights)
    engine = pydarknet.open_engine(cfg, weights, engine=kind, precision=precision, threads=threads)
    batch = x[None]
    r = time_calls(lambda: engine.infer(batch), repeat=args.repeat, budget=args.budget, warmup=args.warmup)
    engine.close()
    r["output"] = r["output"].reshape(-1).copy()
    r["ok"] = True
    r["engine"] = kind
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


def progress_cell(label: str, r: dict | None) -> str:
    """``label 12.3 ms``, ``label -`` (not run), or ``label unsupported (message)`` for the progress line."""
    if r is None:
        return f"{label} -"
    if not r.get("ok"):
        return f"{label} {fmt_ms(r)} ({r.get('error', '')})"
    return f"{label} {fmt_ms(r)} ms"


def speedup(base: dict | None, ours: dict) -> str:
    if not base or not base.get("ok"):
        return "-"
    return f"{base['median_ms'] / ours['median_ms']:.1f}x"


def compare(py: dict, others: dict) -> tuple[dict, dict, bool]:
    """Top-5 of every implementation that ran and its max abs difference from pydarknet; all top-5 equal?"""
    ref = py["output"]
    tops = {"pydarknet": top5(ref)}
    diffs = {}
    for label, r in others.items():
        if r and r.get("ok"):
            o = r["output"]
            if o.shape != ref.shape:
                diffs[label] = None
                tops[label] = None
                r["note"] = f"output shape {o.shape} != {ref.shape}"
                continue
            tops[label] = top5(o)
            diffs[label] = float(np.abs(o - ref).max())
    return tops, diffs, all(v == tops["pydarknet"] for v in tops.values())


def table(results: list[dict]) -> list[str]:
    lines = ["| model | threads | pydarknet ms (engine) | darknet ms | opencv ms | onnxruntime ms | vs darknet | vs opencv "
             "| vs onnxruntime | top-5 same | max\\|diff\\| darknet / opencv / onnxruntime | bf16 ms | bf16 vs fp32 "
             "| bf16 top-5 same |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|---:|---:|:---:|"]
    for r in results:
        d = r["max_abs_diff"]
        dd = " / ".join("-" if d.get(k) is None else f"{d[k]:.1e}" for k in IMPLS)
        b = r.get("bf16")
        b_same = "-" if not b or not b.get("ok") else ("y" if top5(b["output"]) == top5(r["pydarknet"]["output"]) else "n")
        lines.append(f"| {r['model']} | {r['threads']} | {fmt_ms(r['pydarknet'])} ({r['pydarknet'].get('engine', '?')}) | "
                     + " | ".join(fmt_ms(r[k]) for k in IMPLS) + " | "
                     + " | ".join(speedup(r[k], r["pydarknet"]) for k in IMPLS)
                     + f" | {'y' if r['top5_same'] else 'n'} | {dd} | {fmt_ms(b)} | "
                     + (speedup(r["pydarknet"], b) if b and b.get("ok") else "-") + f" | {b_same} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(ZOO),
                    help=f"comma-separated zoo names (default: all {len(ZOO)}: the darknet zoo and efficientnet-lite0)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: 1,2)")
    ap.add_argument("--repeat", type=int, default=30, help="max timed repeats per measurement (min is 3)")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls aimed at per measurement")
    ap.add_argument("--warmup", type=float, default=0.3, help="minimum seconds of warm-up calls")
    ap.add_argument("--no-darknet", action="store_true", help="skip the C darknet baseline")
    ap.add_argument("--no-opencv", action="store_true", help="skip the OpenCV baseline")
    ap.add_argument("--no-onnxruntime", action="store_true", help="skip the ONNX Runtime baseline")
    ap.add_argument("--no-bf16", action="store_true", help="skip pydarknet's bf16 column")
    ap.add_argument("--c-every-thread-count", action="store_true",
                    help="time C darknet at every thread count even if libdarknet has no OpenMP")
    C.add_quiet_wait(ap)
    ap.add_argument("--max-contention", type=float, default=0.25,
                    help="re-measure when other processes used more than this many cores meanwhile")
    ap.add_argument("--retries", type=int, default=2, help="re-measurements allowed per measurement")
    C.add_json(ap, "forward")
    # internal: subprocess workers
    ap.add_argument("--_worker", choices=IMPLS, help=argparse.SUPPRESS)
    for a in ("--cfg", "--weights", "--input", "--output"):
        ap.add_argument(a, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        args.threads = int(args.threads)
        _worker(args)
        return 0

    import torch

    import pydarknet
    from cdarknet import find_library

    models = C.zoo_models(args.models)  # fails early on a bad name
    threads = C.int_list(args.threads)

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
    ort_versions = None
    if not args.no_onnxruntime:
        try:
            import onnx
            import onnxruntime
            ort_versions = {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}
        except ImportError as e:
            print(f"note: {e.name} not installed (pip install onnx onnxruntime); skipping the ONNX Runtime column",
                  file=sys.stderr)

    results = []
    exports: dict = {}
    t_start = time.perf_counter()
    with C.scratch_dir() as tmp:
        os.environ["PYDARKNET_CACHE"] = os.path.join(tmp, "cache")  # the engines' exports: this run's own
        for name in models:
            cfg = pydarknet.zoo_cfg(name)
            spec = pydarknet.load_specs(cfg)
            x = make_input(spec.input_shape)
            weights = os.path.join(tmp, f"{name}.weights")
            k = make_weights(name, x, weights)
            input_path = os.path.join(tmp, f"{name}_input.npy")
            np.save(input_path, x)
            c_refusal = libdarknet_refusal(spec) if lib else None
            onnx_path = os.path.join(tmp, f"{name}.onnx")
            if ort_versions:
                exports[name] = export_onnx_for_ort(cfg, weights, onnx_path)
                e = exports[name]
                print(f"[{time.perf_counter() - t_start:6.0f}s] {name}: "
                      + (f"ONNX export, {e['nodes']} nodes, {e['file_bytes'] / 1e6:.1f} MB" if e["ok"] else e["error"])
                      + f" ({e['seconds']:.0f}s)", file=sys.stderr, flush=True)
            c_cache: dict | None = None
            for t in threads:
                t_model = time.perf_counter()
                row: dict = {"model": name, "threads": t, "logit_scale": k, "bflops": round(spec.bflops, 3)}
                busy = []

                def timed(label, run):
                    r, other = measure(run, args)
                    if other is not None and other > args.max_contention:
                        busy.append(label)
                    return r

                def worker(kind, model_file):
                    return timed(kind, lambda: run_worker(kind, cfg, model_file, input_path, t, args, tmp))

                py = timed("pydarknet", lambda: bench_pydarknet(cfg, weights, x, t, args))
                bf16 = None
                if not args.no_bf16:
                    try:
                        bf16 = timed("bf16", lambda: bench_pydarknet(cfg, weights, x, t, args, precision="bf16"))
                    except pydarknet.DarknetError as e:  # no native bf16 on this CPU
                        bf16 = {"ok": False, "unsupported": True, "error": e.problem}
                c = None
                if c_refusal:
                    c = {"ok": False, "unsupported": True, "error": c_refusal}
                elif lib:
                    if c_openmp or args.c_every_thread_count or c_cache is None:
                        c = c_cache = worker("darknet", weights)
                    else:
                        c = dict(c_cache, reused_from_threads=threads[0])
                cv = None
                if cv_version:
                    cv = worker("opencv", weights)
                    if not cv.get("ok"):
                        cv["unsupported"] = True  # the importer refused (or failed on) this cfg
                    else:
                        cv_version = cv.get("version", cv_version)
                ort = None
                if ort_versions:
                    e = exports[name]
                    ort = worker("onnxruntime", onnx_path) if e["ok"] else {"ok": False, "error": e["error"]}
                # correctness
                others = {"darknet": c, "opencv": cv, "onnxruntime": ort}
                tops, diffs, same = compare(py, others)
                row.update(pydarknet=py, bf16=bf16, **others, top5=tops, top5_same=same, max_abs_diff=diffs, busy_machine=busy)
                results.append(row)
                print(f"[{time.perf_counter() - t_start:6.0f}s] {name} t={t}: "
                      + ", ".join(progress_cell(label, r) for label, r in (("pydarknet", py), *others.items()))
                      + f", top-5 same {'y' if same else 'n'}, diff {diffs} "
                      + (f"[machine busy during: {', '.join(busy)}] " if busy else "")
                      + f"({time.perf_counter() - t_model:.0f}s)", file=sys.stderr, flush=True)
            for path in (weights, onnx_path):
                if os.path.exists(path):
                    os.remove(path)
    elapsed = time.perf_counter() - t_start

    print("\n".join(table(results)))
    for impl in IMPLS:
        for r in results:
            cell = r[impl]
            if cell and not cell.get("ok") and r["threads"] == threads[0]:
                print(f"\n{impl} {'unsupported' if cell.get('unsupported') else 'error'}: {r['model']}: "
                      f"{cell['error']}")
    busy_rows = [f"{r['model']}/{r['threads']}" for r in results if r["busy_machine"]]
    if busy_rows:
        print(f"\nwarning: other processes kept the CPUs busy during: {', '.join(busy_rows)} (timings suspect; "
              "see contention in the JSON)")

    def clean(r):
        if r is None:
            return None
        return {k: v for k, v in r.items() if k != "output"}
    doc = {
        "machine": C.machine_info(processor=True),
        "versions": {"torch": torch.__version__, "opencv": cv_version, "pydarknet": pydarknet.__version__,
                     **(ort_versions or {"onnxruntime": None})},
        "libdarknet": lib, "libdarknet_openmp": c_openmp,
        "method": {"batch": 1, "dtype": "float32", "repeat_max": args.repeat, "repeat_min": 3,
                   "budget_s": args.budget, "warmup_s": args.warmup, "weight_seed": WEIGHT_SEED,
                   "input_seed": INPUT_SEED, "target_logit_std": TARGET_LOGIT_STD,
                   "onnxruntime": {"export": f"pydarknet.onnx.export_onnx(batch=1, opset={ONNX_OPSET})",
                                   "providers": ["CPUExecutionProvider"], "intra_op_num_threads": "threads",
                                   "inter_op_num_threads": 1, "graph_optimization_level": "default (ORT_ENABLE_ALL)"}},
        "elapsed_s": round(elapsed, 1),
        "onnx_export": exports,
        "results": [dict(r, **{k: clean(r[k]) for k in ("pydarknet", "bf16") + IMPLS}) for r in results],
    }
    rel = C.write_json(doc, args.json)
    print(f"\n({len(results)} rows in {elapsed:.0f} s; JSON: {rel})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
