"""End-to-end prediction benchmark: the ``pydarknet`` command vs C darknet's, timed as whole processes.

Three measurements per model (``--models tiny,darknet19`` by default), all on the same PNG images and the
same weights file::

    python benchmarks/predict.py                          # tiny and darknet19, ~8 minutes on 2 cores
    python benchmarks/predict.py --models tiny --repeat 3 --images 100

(a) one-shot: wall time of one ``pydarknet classify CFG WEIGHTS IMAGE`` process (NumPy engine, the default
    for one image), the same with ``--engine torch``, and ``darknet classify``; the median of ``--repeat``
    runs. For context, ``python -c pass``, ``python -c "import numpy, PIL.Image"`` and
    ``python -c "import torch"``, and a breakdown of pydarknet's one-shot time (``python -X importtime``
    for the imports; the CLI's own functions timed in-process by wrapping them).
(b) interactive: ``classifier predict DATA CFG WEIGHTS`` with image paths on stdin. Per-image time is taken
    from the arrival times of the ``Enter Image Path: `` prompts (both programs flush the prompt), so model
    loading is excluded: ``(t[prompt M+1] - t[prompt 1]) / M``. The top-5 lines are compared per image.
(c) batch: ``pydarknet classifier predict imagenet1k CFG WEIGHTS --list FILE --out x.csv --batch B
    --workers W -q`` on ``--images`` images. Steady-state images/s = ``(N - 1) / (wall(N) - wall(1))``, the
    start-up (``wall(1)``, a one-image list with the same workers) being the median of ``--repeat`` runs;
    end-to-end images/s = ``N / wall(N)``. C darknet has no batch mode: its throughput is its interactive
    per-image rate from (b). The CSV's top-1 is checked against darknet's interactive top-1.

Method
  * Images: PNG (lossless, so C darknet, which decodes through OpenCV, and pydarknet, through Pillow, see
    the same pixels), made deterministically from darknet's sample photos (/usr/share/darknet/data/*.jpg):
    random crops (35-100 % of the area, aspect 3:4-4:3), random mirroring, the longer side resized to
    300-520 px (ImageNet-like). Every ``FASHION_EVERY``-th image is a 28x28 grey Fashion-MNIST image
    (/usr/share/datasets/fashion-mnist) where that is installed.
  * Weights: darknet's random initialisation (``torch.manual_seed(--seed)``, ``load_network``), written by
    ``Network.save_weights``. Random weights give an almost flat softmax, where top-5 order would be
    decided by rounding noise, so the last convolutional layer (linear, no batchnorm) is multiplied by a
    power of two chosen to bring the logits' std to about 3 (exact in float32; reported as ``logit_scale``).
  * Threads: ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` = ``--threads`` (2) in every
    child. Debian's darknet is single-threaded (no OpenMP in libdarknet), so it uses one core whatever the
    setting; pydarknet uses both.
  * Python bytecode: this sandbox sets ``PYTHONDONTWRITEBYTECODE=1`` and the editable checkout has no
    ``__pycache__``, so every pydarknet process would recompile pydarknet's modules. The pydarknet children
    get ``PYTHONPYCACHEPREFIX`` (a temporary directory, warmed by untimed runs) as an installed package
    would have its .pyc files; the one-shot table also shows the NumPy-engine time without it.
  * The entry point is the installed ``pydarknet`` console script run directly (not the pyenv shim on PATH).
  * Before each measurement the script waits (up to ``--quiet-wait`` s) for the CPUs to be >= 90 % idle;
    measurements that started on a busy machine are flagged in the output and the JSON.

Writes ``benchmarks/results/predict.json`` (git-ignored) and prints markdown tables. The images, weights,
process timing and quiet-machine machinery are in ``benchmarks/common.py`` (shared with validate.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
from common import (ROOT, SHORTNAMES, Quiet, add_process_options, child_env, darknet_exe, finish,  # noqa: E402
                    int_list, loadavg, log, machine_info, make_images, make_weights, median, predicted_in,
                    pydarknet_exe, report_tail, run_proc, scratch_dir, zoo_models)

PROMPT = b"Enter Image Path: "


# ---------------------------------------------------------------------------------------------------------
# inputs: data files


def darknet_predict_data(tmp: str) -> str:
    path = os.path.join(tmp, "imagenet1k_predict.data")
    with open(path, "w") as f:
        f.write(f"classes=1000\nnames={SHORTNAMES}\ntop=5\n")
    return path


def top5_blocks(stdout: str) -> list[str]:
    """Interactive stdout -> one block of top-5 lines per image (text between prompts)."""
    parts = stdout.split(PROMPT.decode())
    return [p for p in parts[1:] if p.strip()]


# ---------------------------------------------------------------------------------------------------------
# (a) one-shot


BREAKDOWN_DRIVER = r'''
import sys, time, json
T0 = time.perf_counter()
import numpy, PIL.Image, PIL.PngImagePlugin
T1 = time.perf_counter()
import pydarknet, pydarknet.cli, pydarknet.api, pydarknet.engines, pydarknet.engines.numpy_infer, \
    pydarknet.datacfg, pydarknet.image, pydarknet.predict, pydarknet.preprocess, pydarknet.specs, pydarknet.weights
T2 = time.perf_counter()
from pydarknet import cli, engines, image, preprocess, predict, specs, datacfg, weights
from pydarknet.engines import numpy_infer
acc, net_box = {}, []
def wrap(owner, name, key, keep=False):
    f = getattr(owner, name)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            r = f(*a, **k)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t
        if keep:
            net_box.append(r)
        return r
    setattr(owner, name, g)
wrap(engines, "open_engine", "open_engine", keep=True)
wrap(specs, "load_specs", "load_specs")
wrap(weights, "read_weights", "read_weights")
wrap(numpy_infer.NumpyEngine, "__init__", "fold_batchnorm")
wrap(datacfg.DataConfig, "load_names", "load_names")
wrap(specs.NetSpec, "layer_table", "layer_table")
wrap(image, "decode_rgb8", "decode_rgb8")
wrap(preprocess, "letterbox_image", "letterbox_image")
wrap(numpy_infer.NumpyEngine, "infer", "forward")
wrap(predict, "rank", "rank")
T3 = time.perf_counter()
rc = cli.main(sys.argv[1:])
T4 = time.perf_counter()
sys.stdout.flush()
net = net_box[0]
x = preprocess.letterbox_image(image.load_image(sys.argv[-1]), net.spec.input_shape[2], net.spec.input_shape[1])[None]
warm = []
for _ in range(3):
    t = time.perf_counter(); net.infer(x); warm.append(time.perf_counter() - t)
print("@@" + json.dumps({"import_numpy_pil": T1 - T0, "import_pydarknet": T2 - T1, "main": T4 - T3,
                          "phases": acc, "forward_warm": sorted(warm)[1], "rc": rc}), file=sys.stderr)
'''

PHASES = [  # (key, label, depth)
    ("open_engine", "open the NumPy engine", 1),
    ("load_specs", "read the cfg, layer specs", 2),
    ("read_weights", "read the weights file", 2),
    ("fold_batchnorm", "fold batchnorm into the kernels", 2),
    ("load_names", "read the 1000 class names", 1),
    ("layer_table", "format the layer table (stderr)", 1),
    ("decode_rgb8", "decode the image (Pillow)", 1),
    ("letterbox_image", "letterbox to the network size (from the uint8 pixels)", 1),
    ("forward", "forward pass (first call)", 1),
    ("rank", "top-5", 1),
]


def importtime_top(stderr: str, n: int = 10) -> tuple[list[tuple[str, float]], float]:
    """Top-level imports (not nested in another) by cumulative time, and their sum, from -X importtime."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) == 1:
            rows.append((m.group(4), int(m.group(2)) / 1e6))
    total = sum(t for _, t in rows)
    return sorted(rows, key=lambda r: -r[1])[:n], total


def bench_one_shot(models, weights, images, args, env, env_nocache, quiet, tmp) -> dict:
    py = pydarknet_exe()
    dk = darknet_exe()
    image = images[0]
    res: dict = {"image": image, "context": {}, "models": {}}
    # context: interpreter, the NumPy engine's imports, torch's
    ctx = {"python -c pass": [sys.executable, "-c", "pass"],
           "python -c 'import numpy, PIL.Image'": [sys.executable, "-c", "import numpy, PIL.Image"],
           "python -c 'import torch'": [sys.executable, "-c", "import torch"]}
    for label, cmd in ctx.items():
        run_proc(cmd, env=env)  # warm the page cache and the bytecode cache
        quiet(f"context {label}")
        walls = [run_proc(cmd, env=env)["wall"] for _ in range(args.repeat)]
        res["context"][label] = {"median_s": median(walls), "samples_s": walls}
        log(f"{label}: {median(walls):.3f} s")
    for name in models:
        cfg, w = weights[name]["cfg"], weights[name]["path"]
        variants = {
            "pydarknet numpy": (py + ["classify", cfg, w, image], env),
            "pydarknet numpy, no .pyc": (py + ["classify", cfg, w, image], env_nocache),
            "pydarknet torch": (py + ["classify", cfg, w, image, "--engine", "torch"], env),
        }
        if dk:
            variants["darknet"] = ([dk, "classify", cfg, w, image], env)
        row: dict = {}
        for label, (cmd, e) in variants.items():
            first = run_proc(cmd, env=e, cwd=tmp)  # warm-up (page cache, bytecode cache)
            quiet(f"one-shot {name} {label}")
            runs = [run_proc(cmd, env=e, cwd=tmp) for _ in range(args.repeat)]
            walls = [r["wall"] for r in runs]
            fwd = [x for r in runs for x in predicted_in(r["stderr"])]
            row[label] = {"median_s": median(walls), "min_s": min(walls), "samples_s": walls,
                          "cpu_median_s": median([r["cpu"] for r in runs]),
                          "forward_median_s": median(fwd), "stdout": first["stdout"]}
            log(f"one-shot {name} {label}: {median(walls):.3f} s (forward {median(fwd) or 0:.3f} s)")
        if "darknet" in row:
            for label, r in row.items():
                r["same_stdout_as_darknet"] = r["stdout"] == row["darknet"]["stdout"]
        res["models"][name] = row
    # breakdown of the NumPy one-shot, first model
    name = models[0]
    cfg, w = weights[name]["cfg"], weights[name]["path"]
    argv = ["classify", cfg, w, image]
    imp = run_proc([sys.executable, "-X", "importtime"] + pydarknet_exe()[1:] + argv, env=env, cwd=tmp)
    top, total = importtime_top(imp["stderr"])
    drv = os.path.join(tmp, "breakdown_driver.py")
    with open(drv, "w") as f:
        f.write(BREAKDOWN_DRIVER)
    run_proc([sys.executable, drv] + argv, env=env, cwd=tmp)
    quiet("one-shot breakdown")
    docs = []
    for _ in range(args.repeat):
        r = run_proc([sys.executable, drv] + argv, env=env, cwd=tmp)
        line = [ln for ln in r["stderr"].splitlines() if ln.startswith("@@")][-1]
        docs.append(dict(json.loads(line[2:]), wall=r["wall"]))
    agg = {k: median([d[k] for d in docs]) for k in ("import_numpy_pil", "import_pydarknet", "main",
                                                       "forward_warm", "wall")}
    agg["phases"] = {k: median([d["phases"].get(k, 0.0) for d in docs]) for k, _, _ in PHASES}
    res["breakdown"] = {"model": name, "importtime_top": top, "importtime_total_s": total, **agg}
    return res


# ---------------------------------------------------------------------------------------------------------
# (b) interactive


def interactive_count(darknet_per_image: float | None, args) -> int:
    if args.interactive_images:
        return args.interactive_images
    if not darknet_per_image:
        return 30
    return int(max(10, min(100, args.darknet_seconds / darknet_per_image)))


def bench_interactive(models, weights, images, one_shot, args, env, quiet, tmp) -> dict:
    py = pydarknet_exe()
    dk = darknet_exe()
    data = darknet_predict_data(tmp)
    res: dict = {}
    for name in models:
        cfg, w = weights[name]["cfg"], weights[name]["path"]
        est = None
        d = one_shot["models"].get(name, {}).get("darknet")
        if d:
            est = (d["forward_median_s"] or 0) + 0.02
        m = interactive_count(est, args)
        paths = images[:m]
        stdin = ("\n".join(paths) + "\n").encode()
        progs = {"pydarknet": (py + ["classifier", "predict", "imagenet1k", cfg, w], env)}
        if dk:
            progs["darknet"] = ([dk, "classifier", "predict", data, cfg, w], env)
        row: dict = {"images": m}
        for label, (cmd, e) in progs.items():
            run_proc(cmd, env=e, stdin=(paths[0] + "\n").encode(), cwd=tmp)  # warm-up (page, bytecode caches)
            warm = run_proc(cmd, env=e, stdin=(paths[0] + "\n").encode(), cwd=tmp)  # CPU time of 1 image
            quiet(f"interactive {name} {label}")
            r = run_proc(cmd, env=e, stdin=stdin, marker=PROMPT, cwd=tmp)
            marks = r["marks"]
            if len(marks) < m + 1:
                raise RuntimeError(f"{label}: expected {m + 1} prompts, saw {len(marks)}")
            per = (marks[m] - marks[0]) / m
            fwd = predicted_in(r["stderr"])
            row[label] = {"startup_s": marks[0], "per_image_s": per, "images_per_s": 1 / per,
                          "forward_median_s": median(fwd), "wall_s": r["wall"],
                          "cpu_per_image_s": (r["cpu"] - warm["cpu"]) / (m - 1) if m > 1 else None,
                          "blocks": top5_blocks(r["stdout"])}
            log(f"interactive {name} {label}: start-up {marks[0]:.2f} s, {1e3 * per:.1f} ms/image "
                f"(forward {1e3 * (median(fwd) or 0):.1f} ms), {m} images")
        if "darknet" in row:
            a, b = row["pydarknet"]["blocks"], row["darknet"]["blocks"]
            row["top5_identical"] = sum(x == y for x, y in zip(a, b))
            row["top1_identical"] = sum(x.splitlines()[0] == y.splitlines()[0] for x, y in zip(a, b))
            row["differences"] = [{"image": paths[i], "pydarknet": x, "darknet": y}
                                  for i, (x, y) in enumerate(zip(a, b)) if x != y][:10]
        res[name] = row
    return res


# ---------------------------------------------------------------------------------------------------------
# (c) batch


def bench_batch(models, weights, images, interactive, args, env, quiet, tmp) -> list[dict]:
    py = pydarknet_exe()
    rows = []
    n = len(images)
    full = os.path.join(tmp, "batch.list")
    one = os.path.join(tmp, "one.list")
    with open(full, "w") as f:
        f.write("\n".join(images) + "\n")
    with open(one, "w") as f:
        f.write(images[0] + "\n")
    for name in models:
        cfg, w = weights[name]["cfg"], weights[name]["path"]
        dk = interactive.get(name, {}).get("darknet")
        dk_rate = dk["images_per_s"] if dk else None
        dk_top1 = [b.splitlines()[0].split("%: ", 1)[-1] for b in dk["blocks"]] if dk else []
        for workers in args.workers:
            base = py + ["classifier", "predict", "imagenet1k", cfg, w, "--workers", str(workers), "-q"]
            out1 = os.path.join(tmp, "one.csv")
            # the start-up run must use the engine of the full run: a one-image list would pick the NumPy
            # engine (no torch import), and the steady rate would then be charged with torch's import
            cmd1 = base + ["--list", one, "--out", out1, "--batch", str(args.batch[0]), "--engine", "torch"]
            run_proc(cmd1, env=env, cwd=tmp)  # warm-up
            quiet(f"batch start-up {name} workers={workers}")
            sr = [run_proc(cmd1, env=env, cwd=tmp) for _ in range(max(3, args.repeat))]
            starts = [x["wall"] for x in sr]
            startup, startup_cpu = median(starts), median([x["cpu"] for x in sr])
            for b in args.batch:
                out = os.path.join(tmp, f"batch_{name}_{b}_{workers}.csv")
                quiet(f"batch {name} b={b} w={workers}")
                r = run_proc(base + ["--list", full, "--out", out, "--batch", str(b)], env=env, cwd=tmp)
                steady = (n - 1) / max(r["wall"] - startup, 1e-9)
                with open(out, newline="") as f:
                    got = list(csv.DictReader(f))
                ours = [g["top1_name"] for g in got[: len(dk_top1)]]
                agree = sum(a == b_ for a, b_ in zip(ours, dk_top1))
                row = {"model": name, "batch": b, "workers": workers, "images": n, "wall_s": r["wall"],
                       "startup_s": startup, "startup_samples_s": starts, "end_to_end_img_s": n / r["wall"],
                       "steady_img_s": steady, "darknet_img_s": dk_rate,
                       "cpu_per_image_s": (r["cpu"] - startup_cpu) / (n - 1),
                       "darknet_cpu_per_image_s": dk["cpu_per_image_s"] if dk else None,
                       "ratio_steady": steady / dk_rate if dk_rate else None,
                       "ratio_end_to_end": (n / r["wall"]) / dk_rate if dk_rate else None,
                       "rows": len(got), "errors": sum(1 for g in got if g["error"]),
                       "top1_vs_darknet": f"{agree}/{len(dk_top1)}" if dk_top1 else None}
                rows.append(row)
                log(f"batch {name} b={b} w={workers}: {r['wall']:.2f} s for {n} (start-up {startup:.2f} s): "
                    f"{steady:.1f} img/s steady, {n / r['wall']:.1f} end-to-end"
                    + (f", {steady / dk_rate:.1f}x darknet" if dk_rate else ""))
    return rows


# ---------------------------------------------------------------------------------------------------------
# report


def f3(x, unit=""):
    return "-" if x is None else f"{x:.3f}{unit}"


def report(doc: dict) -> str:
    L = []
    one = doc.get("one_shot")
    if one:
        L += ["### (a) One-shot `classify` of one image (whole process, median of "
              f"{doc['args']['repeat']}, seconds)", "",
              "| model | pydarknet numpy | numpy, no .pyc | pydarknet torch | darknet | numpy vs darknet "
              "| forward numpy / torch / darknet | stdout = darknet's |",
              "|---|---:|---:|---:|---:|---:|---|:---:|"]
        for name, row in one["models"].items():
            g = lambda k, f="median_s": row.get(k, {}).get(f)  # noqa: E731
            dk = g("darknet")
            ratio = f"{dk / g('pydarknet numpy'):.2f}x" if dk else "-"
            fw = " / ".join(f3(g(k, "forward_median_s")) for k in ("pydarknet numpy", "pydarknet torch", "darknet"))
            same = "/".join("y" if row.get(k, {}).get("same_stdout_as_darknet") else "n"
                            for k in ("pydarknet numpy", "pydarknet torch")) if dk else "-"
            L.append(f"| {name} | {f3(g('pydarknet numpy'))} | {f3(g('pydarknet numpy, no .pyc'))} | "
                     f"{f3(g('pydarknet torch'))} | {f3(dk)} | {ratio} | {fw} | {same} |")
        L += ["", "Context (median, seconds): " + ", ".join(f"`{k}` {v['median_s']:.3f}"
                                                         for k, v in one["context"].items()), ""]
        b = one["breakdown"]
        L += [f"Where pydarknet's one-shot time goes ({b['model']}, NumPy engine, median of "
              f"{doc['args']['repeat']}; the timing driver's process, which also runs 3 more forward passes, "
              f"took {b['wall']:.3f} s):", "",
              "| phase | seconds |", "|---|---:|",
              f"| interpreter start-up (`python -c pass`) | {one['context']['python -c pass']['median_s']:.3f} |",
              f"| import numpy + PIL | {b['import_numpy_pil']:.3f} |",
              f"| import pydarknet's modules | {b['import_pydarknet']:.3f} |",
              f"| `cli.main` | {b['main']:.3f} |"]
        for key, label, depth in PHASES:
            L.append(f"| {'&nbsp;' * 4 * depth}{label} | {b['phases'].get(key, 0.0):.3f} |")
        L += [f"| (forward pass, warm: 3rd call in the same process) | {b['forward_warm']:.3f} |", "",
              f"`python -X importtime` top-level imports of the same command (sum {b['importtime_total_s']:.3f} s): "
              + ", ".join(f"{m} {t:.3f}" for m, t in b["importtime_top"][:8]), ""]
    inter = doc.get("interactive")
    if inter:
        L += ["### (b) Interactive `classifier predict` (paths on stdin; per image from prompt times, load "
              "excluded)", "",
              "| model | program | images | start-up s | ms / image | images/s | forward ms | CPU ms / image "
              "| top-5 / top-1 = darknet |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, row in inter.items():
            for prog in ("pydarknet", "darknet"):
                r = row.get(prog)
                if not r:
                    continue
                same = (f"{row['top5_identical']}/{row['images']} / {row['top1_identical']}/{row['images']}"
                        if prog == "pydarknet" and "top5_identical" in row else "")
                L.append(f"| {name} | {prog} | {row['images']} | {r['startup_s']:.2f} | {1e3 * r['per_image_s']:.1f} "
                         f"| {r['images_per_s']:.2f} | {1e3 * (r['forward_median_s'] or 0):.1f} | "
                         f"{'-' if r['cpu_per_image_s'] is None else format(1e3 * r['cpu_per_image_s'], '.1f')} | {same} |")
            if row.get("darknet") and row.get("pydarknet"):
                L.append(f"| {name} | **ratio** | | | | **{row['pydarknet']['images_per_s'] / row['darknet']['images_per_s']:.1f}x** | | | |")
        L.append("")
    batch = doc.get("batch")
    if batch:
        L += [f"### (c) Batch mode `classifier predict --list` ({batch[0]['images']} images, "
              f"{doc['args']['threads']} threads) vs darknet's interactive rate", "",
              "| model | batch | workers | wall s | start-up s | img/s end-to-end | img/s steady | darknet img/s "
              "| steady vs darknet | end-to-end vs darknet | CPU ms/img ours / darknet | top-1 = darknet |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in batch:
            x = lambda v: "-" if v is None else f"{v:.1f}x"  # noqa: E731
            L.append(f"| {r['model']} | {r['batch']} | {r['workers']} | {r['wall_s']:.2f} | {r['startup_s']:.2f} | "
                     f"{r['end_to_end_img_s']:.1f} | {r['steady_img_s']:.1f} | "
                     f"{'-' if r['darknet_img_s'] is None else format(r['darknet_img_s'], '.2f')} | "
                     f"{x(r['ratio_steady'])} | {x(r['ratio_end_to_end'])} | {1e3 * r['cpu_per_image_s']:.1f} / "
                     f"{'-' if r['darknet_cpu_per_image_s'] is None else format(1e3 * r['darknet_cpu_per_image_s'], '.1f')} | "
                     f"{r['top1_vs_darknet'] or '-'} |")
        L.append("")
    L += report_tail(doc)
    return "\n".join(L)


def goals(doc: dict) -> list[str]:
    out = []
    one = doc.get("one_shot")
    if one and "tiny" in one["models"]:
        t = one["models"]["tiny"]["pydarknet numpy"]["median_s"]
        out.append(f"one-shot `classify` tiny <= 1 s: {t:.3f} s -> {'met' if t <= 1 else 'NOT met'}")
    for name in {r["model"] for r in doc.get("batch") or []}:
        rs = [r for r in doc["batch"] if r["model"] == name and r["ratio_steady"]]
        if rs:
            best = max(rs, key=lambda r: r["ratio_steady"])
            e2e = max(r["ratio_end_to_end"] for r in rs)
            out.append(f"batch {name} >= 10x darknet: best {best['ratio_steady']:.1f}x steady (batch {best['batch']}, "
                       f"workers {best['workers']}), {e2e:.1f}x end-to-end -> "
                       f"{'met' if best['ratio_steady'] >= 10 else 'NOT met'}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_process_options(ap, "predict")
    ap.add_argument("--images", type=int, default=200, help="images in the batch-mode list (default: 200)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per one-shot/start-up figure (median; default 5)")
    ap.add_argument("--batch", default="16,32", help="batch sizes for batch mode (default: 16,32)")
    ap.add_argument("--workers", default="0,1,2", help="decoding processes for batch mode; 0: the background thread (default: 0,1,2)")
    ap.add_argument("--interactive-images", type=int, default=0,
                    help="images fed to interactive mode (default: ~--darknet-seconds of darknet work, 10..100)")
    ap.add_argument("--darknet-seconds", type=float, default=30.0,
                    help="seconds of C darknet work aimed at in interactive mode (default 30)")
    ap.add_argument("--sections", default="one-shot,interactive,batch", help="which of one-shot,interactive,batch")
    args = ap.parse_args(argv)
    args.batch = int_list(args.batch)
    args.workers = int_list(args.workers)
    sections = {s.strip() for s in args.sections.split(",")}
    models = zoo_models(args.models)

    import pydarknet

    if darknet_exe() is None:
        log("note: no darknet command on PATH: the C darknet columns are skipped")
    quiet = Quiet(args.quiet_wait)
    with scratch_dir(args.keep) as tmp:
        pycache = os.path.join(tmp, "pycache")
        env = child_env(args.threads, pycache)
        env_nocache = dict(child_env(args.threads), PYTHONDONTWRITEBYTECODE="1")
        n_images = max(args.images, args.interactive_images, 2)
        log(f"making {n_images} PNG images and weights in {tmp}")
        images = make_images(os.path.join(tmp, "images"), n_images)
        weights = {}
        for name in models:
            cfg = pydarknet.zoo_cfg(name)
            path = os.path.join(tmp, f"{name}.weights")
            k = make_weights(cfg, path, args.seed, images[:4])
            weights[name] = {"cfg": cfg, "path": path, "logit_scale": k}
        doc: dict = {"args": vars(args), "machine": machine_info(),
                     "versions": {"pydarknet": pydarknet.__version__, "numpy": np.__version__},
                     "darknet": darknet_exe(), "weights": {m: {"logit_scale": w["logit_scale"]} for m, w in weights.items()},
                     "loadavg_start": loadavg(),
                     "pydarknet_pycache_in_checkout": os.path.isdir(os.path.join(ROOT, "pydarknet", "__pycache__"))}
        one = {"models": {}}
        if "one-shot" in sections:
            one = doc["one_shot"] = bench_one_shot(models, weights, images, args, env, env_nocache, quiet, tmp)
        inter = {}
        if "interactive" in sections:
            inter = bench_interactive(models, weights, images, one, args, env, quiet, tmp)
            doc["interactive"] = inter
        if "batch" in sections:
            doc["batch"] = bench_batch(models, weights, images[: args.images], inter, args, env, quiet, tmp)

        def strip(doc):  # the top-5 blocks were for the comparison only
            for row in (doc.get("interactive") or {}).values():
                for prog in ("pydarknet", "darknet"):
                    if prog in row:
                        row[prog].pop("blocks", None)
        finish(doc, quiet, report, goals, args.json, strip)
    return 0


if __name__ == "__main__":
    sys.exit(main())
