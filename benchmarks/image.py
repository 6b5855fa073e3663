#!/usr/bin/env python3
"""Decoding + preprocessing one image: pydarknet's uint8 path against the float path it replaced (and C
darknet's own load_image_color + letterbox/crop), same images, same run.

    python benchmarks/image.py                       # a 4000x3000 JPEG and a 768x576 photo, 7 runs each
    python benchmarks/image.py --repeat 15 --size 224

Inputs: darknet's dog.jpg (768x576, /usr/share/darknet/data) and the same photo upscaled (bicubic) to
4000x3000, saved as a JPEG (quality 90) in a scratch directory.
Paths timed, each as ``preprocess(decode(path), size, size)`` for preprocess = letterbox_image (what
``classify``/``classifier predict`` feed the network) and center_crop_image (``classifier valid``):

  uint8     ``image.decode_rgb8`` (H, W, 3) uint8, then the preprocessing from it: only the pixels the resize
            reads are converted to float (what pydarknet runs now)
  float     ``image.load_image``: the full-size (3, H, W) float32 copy, then the preprocessing on it (the old
            path)
  darknet   libdarknet's ``load_image_color`` (OpenCV's imread in Debian's build) then its own
            ``letterbox_image`` / ``center_crop_image`` through ctypes (tests/cdarknet.py); skipped where
            libdarknet is not installed

Median wall time of ``--repeat`` runs after one warm-up; the ratio is float / uint8 (above 1x the uint8 path
is faster). The peak resident-memory growth of one run of each path is measured too, in a fresh process
after one untimed run (VmHWM reset through /proc/self/clear_refs; tests/peakrss.py). The uint8 and float outputs are checked bit for bit equal.
Results: a table on stdout and benchmarks/results/image.json (``--json``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
import common as C  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, list[float], object]:
    out = fn()  # warm-up (and the result)
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return C.median(samples), samples, out


#: one path's run in a fresh process: its peak resident growth over the run (KiB) on stdout. A fresh process,
#: because in this one the allocator keeps what earlier runs freed and a later peak hides in it.
PEAK_CHILD = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
from peakrss import peak_growth
from pydarknet.image import decode_rgb8, load_image
from pydarknet.preprocess import center_crop_image, letterbox_image
from cdarknet import CDarknet
fn, path, who, n = {fn}, {path!r}, {who!r}, {n}
darknet = CDarknet({cfg!r}, None) if who == "darknet" else None
run = {{"uint8": lambda: fn(decode_rgb8(path), n, n), "float": lambda: fn(load_image(path), n, n),
        "darknet": lambda: darknet and darknet.image_op(fn.__name__, darknet.load_image_color(path), n, n)}}[who]
run()
with peak_growth() as p:
    run()
print(p.kib)
"""


def peak_kib(fn_name: str, path: str, who: str, n: int, cfg: str) -> int | None:
    import subprocess

    code = PEAK_CHILD.format(root=C.ROOT, tests=C.TESTS, fn=fn_name, path=path, who=who, n=n, cfg=cfg)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=C.thread_env(2))
    return int(r.stdout.split()[-1]) if r.returncode == 0 and r.stdout.split() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per path (median; default 7)")
    ap.add_argument("--size", type=int, default=224, help="network input size (default 224)")
    C.add_quiet_wait(ap)
    C.add_json(ap, "image")
    args = ap.parse_args()

    from PIL import Image

    import pydarknet
    from pydarknet.image import decode_rgb8, load_image
    from pydarknet.preprocess import center_crop_image, letterbox_image

    photo = os.path.join(C.PHOTOS, "dog.jpg")
    if not os.path.isfile(photo):
        raise SystemExit(f"{photo} not found (Debian's darknet package)")
    darknet = None
    try:
        from cdarknet import CDarknet, find_library

        if find_library():
            darknet = CDarknet(str(pydarknet.zoo_cfg("tiny")), None)
    except (ImportError, OSError, RuntimeError) as e:
        C.log(f"libdarknet unavailable: {e}")
    quiet = C.Quiet(args.quiet_wait)
    doc = {"machine": C.machine_info(processor=True), "repeat": args.repeat, "size": args.size, "rows": []}
    n = args.size
    with C.scratch_dir() as tmp:
        big = os.path.join(tmp, "big.jpg")
        with Image.open(photo) as im:
            im.convert("RGB").resize((4000, 3000), Image.BICUBIC).save(big, quality=90)
        for label, path in (("4000x3000 JPEG", big), ("768x576 JPEG (dog.jpg)", photo)):
            for mode, fn, cname in (("letterbox", letterbox_image, "letterbox_image"),
                                    ("center_crop", center_crop_image, "center_crop_image")):
                paths = {"uint8": lambda: fn(decode_rgb8(path), n, n), "float": lambda: fn(load_image(path), n, n)}
                if darknet is not None:
                    paths["darknet"] = lambda: darknet.image_op(cname, darknet.load_image_color(path), n, n)
                row = {"image": label, "file_bytes": os.path.getsize(path), "mode": mode}
                outs = {}
                for who, f in paths.items():
                    quiet(f"{label} {mode} {who}")
                    med, samples, outs[who] = timed(f, args.repeat)
                    peak = peak_kib(fn.__name__, path, who, n, str(pydarknet.zoo_cfg("tiny")))
                    row[who] = {"median_s": med, "samples_s": samples, "peak_kib": peak}
                    C.log(f"{label} {mode} {who}: {med * 1e3:.1f} ms, peak +{(peak or 0) / 1024:.0f} MiB")
                row["bit_exact"] = bool(np.array_equal(outs["uint8"], outs["float"]))
                row["float_over_uint8"] = row["float"]["median_s"] / row["uint8"]["median_s"]
                if "darknet" in row:
                    row["darknet_over_uint8"] = row["darknet"]["median_s"] / row["uint8"]["median_s"]
                doc["rows"].append(row)
    if darknet is not None:
        darknet.close()
    doc["busy"] = quiet.busy
    print(report(doc))
    rel = C.write_json(doc, args.json)
    print(f"(JSON: {rel})")
    return 0 if all(r["bit_exact"] for r in doc["rows"]) else 1


def report(doc: dict) -> str:
    def ms(row, who):
        return f"{row[who]['median_s'] * 1e3:.1f}" if who in row else "-"

    def mib(row, who):
        return f"{row[who]['peak_kib'] / 1024:.0f}" if who in row and row[who]["peak_kib"] is not None else "-"

    L = [f"Decode + preprocess to {doc['size']}x{doc['size']}, median of {doc['repeat']} runs "
         f"({doc['machine']['cpu_count']} CPUs):", "",
         "| image | preprocess | uint8 ms | float ms | darknet ms | float / uint8 | darknet / uint8 "
         "| peak MiB uint8 / float / darknet | bit-exact |",
         "|---|---|---:|---:|---:|---:|---:|---|:---:|"]
    for r in doc["rows"]:
        dk = f"{r['darknet_over_uint8']:.2f}x" if "darknet_over_uint8" in r else "-"
        L.append(f"| {r['image']} | {r['mode']} | {ms(r, 'uint8')} | {ms(r, 'float')} | {ms(r, 'darknet')} "
                 f"| {r['float_over_uint8']:.2f}x | {dk} | {mib(r, 'uint8')} / {mib(r, 'float')} / "
                 f"{mib(r, 'darknet')} | {'y' if r['bit_exact'] else 'NO'} |")
    if doc.get("busy"):
        L += ["", f"warning: the machine was busy before: {', '.join(doc['busy'])} (those timings are suspect)"]
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
