#!/usr/bin/env python3
"""Training throughput: `pydarknet classifier train` against `darknet classifier train`, same cfg and data,
same run.

    python benchmarks/train.py [--data DIR] [--batches 60] [--cfg pydarknet/cfgs/fashion.cfg]

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "pydarknet-fashion")
    ap.add_argument("--cfg", type=Path, default=ROOT / "pydarknet" / "cfgs" / "fashion.cfg")
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--skip", type=int, default=5, help="batches excluded from the rate (warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
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
        lines = timed_lines(cmd, env)
        results[who] = {"images_per_s": rate(lines, args.skip), "batches": len(lines)}
    print(f"| trainer | images/s ({args.threads} threads) | batches |")
    print("|---|---|---|")
    for who in ("pydarknet", "darknet"):
        if who in results:
            print(f"| {who} | {results[who]['images_per_s']:.1f} | {results[who]['batches']} |")
    if "darknet" in results:
        results["speedup"] = results["pydarknet"]["images_per_s"] / results["darknet"]["images_per_s"]
        print(f"\npydarknet / darknet: {results['speedup']:.2f}x")
    C.write_json(results, args.json)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
