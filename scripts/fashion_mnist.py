#!/usr/bin/env python3
"""Fashion-MNIST in darknet's list layout, and the recipe that trained pydarknet's `fashion` zoo model.

    python scripts/fashion_mnist.py write DIR          # DIR/{train,test}/NNNNN_<label>.png, lists, labels, .data
    python scripts/fashion_mnist.py train DIR          # pydarknet classifier train with pydarknet/cfgs/fashion.cfg
    python scripts/fashion_mnist.py darknet DIR        # the same with the C darknet (for comparison)
    python scripts/fashion_mnist.py package DIR        # copy the trained weights into pydarknet/models/

Source: Debian's `dataset-fashion-mnist` (Zalando Research, MIT licence), /usr/share/datasets/fashion-mnist.
Labels are written into the file names, so darknet's substring rule finds them; the label words are chosen
so none occurs inside another (T-shirt/top is "top", Ankle boot is "ankleboot").
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

SOURCE = Path("/usr/share/datasets/fashion-mnist")
LABELS = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankleboot"]
NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "pydarknet" / "cfgs" / "fashion.cfg"
MODELS = ROOT / "pydarknet" / "models"


def read_idx(split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(SOURCE / f"{split}-images-idx3-ubyte.gz") as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        n = min(n, limit or n)
        pixels = np.frombuffer(f.read(n * rows * cols), np.uint8).reshape(n, rows, cols)
    with gzip.open(SOURCE / f"{split}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = np.frombuffer(f.read(n), np.uint8)
    return pixels, labels


def write(out: Path, limit: int | None = None) -> Path:
    """Write the PNGs (skipping those already there), the lists, the labels/names and fashion.data."""
    from PIL import Image

    if not SOURCE.is_dir():
        sys.exit(f"{SOURCE}: not found; apt-get install dataset-fashion-mnist")
    out.mkdir(parents=True, exist_ok=True)
    for split, idx in (("train", "train"), ("test", "t10k")):
        pixels, labels = read_idx(idx, limit)
        folder = out / split
        folder.mkdir(exist_ok=True)
        paths = []
        for i, (px, lab) in enumerate(zip(pixels, labels)):
            p = folder / f"{i:05d}_{LABELS[lab]}.png"
            if not p.exists():
                Image.fromarray(px).save(p)
            paths.append(str(p.resolve()))
        (out / f"{split}.list").write_text("\n".join(paths) + "\n")
    (out / "fashion.labels").write_text("\n".join(LABELS) + "\n")
    (out / "fashion.names").write_text("\n".join(NAMES) + "\n")
    data = out / "fashion.data"
    data.write_text(f"classes=10\ntrain={out.resolve()}/train.list\nvalid={out.resolve()}/test.list\n"
                    f"labels={out.resolve()}/fashion.labels\nnames={out.resolve()}/fashion.names\ntop=2\n"
                    f"backup={out.resolve()}/backup\n")
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("write", "train", "darknet", "package"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--limit", type=int, help="only the first N images of each split")
    ap.add_argument("--max-batches", type=int)
    args = ap.parse_args()
    if args.what == "write":
        print(write(args.dir, args.limit))
        return 0
    data = args.dir / "fashion.data"
    extra = ["--max-batches", str(args.max_batches)] if args.max_batches else []
    if args.what == "train":
        cmd = [sys.executable, "-m", "pydarknet", "classifier", "train", str(data), str(CFG), "--valid-every", "500",
               "--valid-images", "2000", "--backup-every", "500", "--seed", "1", *extra]
    elif args.what == "darknet":
        dk = args.dir / "darknet.data"
        dk.write_text(data.read_text().replace("/backup\n", "/backup-darknet\n"))
        (args.dir / "backup-darknet").mkdir(exist_ok=True)
        cfg = CFG
        if args.max_batches:
            cfg = args.dir / "fashion-darknet.cfg"
            text = CFG.read_text()
            cfg.write_text(text.replace(next(l for l in text.splitlines() if l.startswith("max_batches=")),
                                        f"max_batches={args.max_batches}"))
        cmd = ["darknet", "classifier", "train", str(dk), str(cfg)]
    else:
        MODELS.mkdir(exist_ok=True)
        shutil.copyfile(args.dir / "backup" / "fashion.weights", MODELS / "fashion.weights")
        shutil.copyfile(args.dir / "fashion.names", ROOT / "pydarknet" / "labels" / "fashion.names")
        print(f"copied into {MODELS}")
        return 0
    print(" ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
