#!/usr/bin/env python3
"""Training throughput: `pydarknet classifier train` against `darknet classifier train`, same cfg and data,
same run.

    python benchmarks/train.py [--data DIR] [--batches 60] [--cfg pydarknet/cfgs/fashion.cfg]
    python benchmarks/train.py --batches 2000 --validate     # the full comparison: accuracy too

With ``--validate``, each trainer's final weights are then validated on the data file's ``valid`` list (the
10k Fashion-MNIST test images) by both programs' ``classifier valid``: the accuracy of the two training runs
is compared, and so is the top-1 the C darknet and pydarknet find for the same weights.

Data: Fashion-MNIST in darknet's list layout (written by scripts/fashion_mnist.py into DIR if absent).
Both trainers run for the same number of batches from scratch; images/s is measured over the batches after
the first few (start-up, worker spawn and the first allocation are excluded), from wall-clock timestamps of
each batch line on stdout, so it includes data loading that does not overlap compute.
Results: a table on stdout and benchmarks/results/train.json (``--json``).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
import common as C  # noqa: E402

ROOT = Path(C.ROOT)
LINE = re.compile(r"^(\d+), [\d.]+: [\d.naif-]+, [\d.naif-]+ avg, [\d.naif-]+ rate, [\d.]+ seconds, (\d+) images")


def timed_lines(cmd: list[str], env: dict) -> list[tuple[float, int, int]]:
    """(wall time, batch, images) for each darknet-style batch line the command prints."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, bufsize=1)
    out = []
    for line in proc.stdout:
        m = LINE.match(line)
        if m:
            out.append((time.perf_counter(), int(m.group(1)), int(m.group(2))))
    proc.wait()
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode})")
    return out


def rate(lines, skip: int) -> float:
    (t0, _, i0), (t1, _, i1) = lines[skip], lines[-1]
    return (i1 - i0) / (t1 - t0)


def validate(cmd: list[str], env: dict) -> dict:
    """Run a `classifier valid` command; its last running line as {images, top1, topk, k, seconds}."""
    r = C.run_proc(cmd, env=env, check=False)
    if r["rc"] not in (0, 3):  # pydarknet's 3: some images skipped (then counted in its summary)
        raise SystemExit(f"{' '.join(cmd)} failed ({r['rc']})")
    finals = [m for m in (C.RUNNING_LINE.match(l.strip()) for l in r["stdout"].splitlines()) if m]
    if not finals:
        raise SystemExit(f"{' '.join(cmd)} printed no 'N: top 1: ...' line")
    m = finals[-1]
    return {"images": int(m.group(1)) + 1, "top1": float(m.group(2)), "k": int(m.group(3)),
            "topk": float(m.group(4)), "seconds": r["wall"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "pydarknet-fashion")
    ap.add_argument("--cfg", type=Path, default=ROOT / "pydarknet" / "cfgs" / "fashion.cfg")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--skip", type=int, default=5, help="batches excluded from the rate (warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--validate", action="store_true",
                    help="validate each trainer's final weights with both programs on the valid list")
    C.add_json(ap, "train")
    args = ap.parse_args()
    if not (args.data / "fashion.data").is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fashion_mnist.py"), "write", str(args.data)], check=True)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    cfg = work / args.cfg.name
    text = args.cfg.read_text()
    cfg.write_text(re.sub(r"(?m)^max_batches=\d+", f"max_batches={args.batches}", text))
    results = {"cfg": str(args.cfg), "batches": args.batches, "threads": args.threads, "workers": args.workers}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for who in ("pydarknet", "darknet"):
        data = work / f"{who}.data"
        data.write_text(re.sub(r"(?m)^backup=.*$", f"backup={work / who}", (args.data / "fashion.data").read_text()))
        if who == "pydarknet":
            cmd = [sys.executable, "-m", "pydarknet", "classifier", "train", str(data), str(cfg), "-q", "--seed", "1",
                   "--threads", str(args.threads), "--workers", str(args.workers), "--chart-every", "0"]
        else:
            darknet = C.darknet_exe()
            if not darknet:
                print("darknet not installed: baseline skipped")
                continue
            (work / who).mkdir(exist_ok=True)
            # line-buffered, so each batch line is timestamped when darknet prints it
            cmd = C.line_buffered() + [darknet, "classifier", "train", str(data), str(cfg)]
        t0 = time.perf_counter()
        lines = timed_lines(cmd, env)
        results[who] = {"images_per_s": rate(lines, args.skip), "batches": len(lines),
                        "wall_s": time.perf_counter() - t0, "weights": str(work / who / f"{cfg.stem}.weights")}
        C.log(f"{who}: {len(lines)} batches, {results[who]['images_per_s']:.1f} images/s")
    print(f"| trainer | images/s ({args.threads} threads) | batches |")
    print("|---|---|---|")
    for who in ("pydarknet", "darknet"):
        if who in results:
            print(f"| {who} | {results[who]['images_per_s']:.1f} | {results[who]['batches']} |")
    if "darknet" in results:
        results["speedup"] = results["pydarknet"]["images_per_s"] / results["darknet"]["images_per_s"]
        print(f"\npydarknet / darknet: {results['speedup']:.2f}x")
    if args.validate:
        darknet = C.darknet_exe()
        data = args.data / "fashion.data"
        table = []
        for trained in ("pydarknet", "darknet"):
            if trained not in results:
                continue
            weights = results[trained]["weights"]
            scores = {"pydarknet": validate([sys.executable, "-m", "pydarknet", "classifier", "valid", str(data),
                                             str(cfg), weights, "-q"], env)}
            if darknet:
                scores["darknet"] = validate([darknet, "classifier", "valid", str(data), str(cfg), weights], env)
            results[trained]["valid"] = scores
            for validator, v in scores.items():
                C.log(f"weights trained by {trained}, validated by {validator}: top 1 {v['top1']:.4f}")
                table.append((trained, validator, v))
        print(f"\n| weights trained by | validated by | images | top-1 | top-{table[0][2]['k']} | seconds |")
        print("|---|---|---:|---:|---:|---:|")
        for trained, validator, v in table:
            print(f"| {trained} | {validator} | {v['images']} | {100 * v['top1']:.2f}% | {100 * v['topk']:.2f}% "
                  f"| {v['seconds']:.1f} |")
        if "darknet" in results and darknet:
            ours, theirs = results["pydarknet"]["valid"], results["darknet"]["valid"]
            gap = 100 * (ours["pydarknet"]["top1"] - theirs["darknet"]["top1"])
            same = ours["pydarknet"]["top1"] == ours["darknet"]["top1"]
            results["goals"] = {"top1_points_vs_darknet": gap, "darknet_reads_same_top1": same}
            print(f"\ntop-1 of pydarknet's model minus darknet's: {gap:+.2f} points (goal: >= -1, "
                  f"{'met' if gap >= -1 else 'NOT met'}); the C darknet's top-1 of pydarknet's weights equals "
                  f"pydarknet's own: {'yes' if same else 'NO'}")
    C.write_json(results, args.json)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
