#!/usr/bin/env python3
"""Image preparation per photo: decoding, and each preprocessing the commands use, on pydarknet's uint8 path
(after) against the float path it replaced (before) and the C darknet's own functions, same photos, same run.

    python benchmarks/image.py                     # darknet's 7 sample photos, 21 rounds (~1 minute)
    python benchmarks/image.py --repeat 41 --size 224 --big

Inputs: darknet's sample photos (``/usr/share/darknet/data/*.jpg``: dog, eagle, giraffe, horses, kite, person,
scream; 352x448 to 1352x900 JPEGs); with ``--big`` also dog.jpg upscaled (bicubic) to 4000x3000, saved as a
JPEG (quality 90) in a scratch directory.

What is timed, per photo:

  decode        pydarknet: ``image.decode_rgb8`` (Pillow's libjpeg, stb_image's rules, the structure checks)
                to (H, W, 3) uint8. darknet: libdarknet's ``load_image_color`` (OpenCV's imread in Debian's
                build, then its float copy)
  prepare       the decoded image to the network's input, for each preprocessing (``--size``, 224):
                  letterbox    letterbox_image (``classify``, ``classifier predict``)
                  center_crop  center_crop_image (``classifier valid``)
                  resize_min   resize_min to the size (``classifier validfull``)
                  resize       resize_image to size x size (squash: ``validcrop``, the ``resize`` models)
                before: ``to_float_chw`` (the full-size float32 copy) then the function on it (the float
                path: today's code for float inputs). after: the function on the uint8 image (only the
                pixels its resize reads are converted). darknet: its C function on its loaded image.

glibc's allocator is first set to keep freed memory (``steady_allocator``; ``--fresh-allocator`` leaves it), as
it is in a long batch run. Each round runs every variant once, in turn, so that the load of other work on the
machine falls on all of them alike; the table gives the median over ``--repeat`` rounds after one warm-up round, and the ratios of
medians (before / after: above 1x the uint8 path is faster). The after and before outputs are checked bit for
bit equal. With ``--peak``, the peak resident growth of one decode + prepare of each path, in a fresh process.
Results: a markdown table on stdout and benchmarks/results/image.json (``--json``).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/common.py
import common as C  # noqa: E402

MODES = ("letterbox", "center_crop", "resize_min", "resize")


def pydarknet_fns(size: int) -> dict:
    from pydarknet import preprocess as P

    return {"letterbox": lambda im: P.letterbox_image(im, size, size),
            "center_crop": lambda im: P.center_crop_image(im, size, size),
            "resize_min": lambda im: P.resize_min(im, size),
            "resize": lambda im: P.resize_image(im, size, size)}


class _Image(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float))]


class LibDarknet:
    """The few image functions of libdarknet.so, called on darknet's own image structs (no copies to NumPy:
    what the C darknet does, and nothing else)."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        lib.load_image_color.restype = _Image
        lib.load_image_color.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.free_image.argtypes = [_Image]
        for name in ("letterbox_image", "center_crop_image", "resize_image"):
            getattr(lib, name).restype = _Image
            getattr(lib, name).argtypes = [_Image, ctypes.c_int, ctypes.c_int]
        lib.resize_min.restype = _Image
        lib.resize_min.argtypes = [_Image, ctypes.c_int]
        self.lib = lib

    def decode(self, path: str):
        im = self.lib.load_image_color(path.encode(), 0, 0)
        self.lib.free_image(im)

    def load(self, path: str) -> _Image:
        return self.lib.load_image_color(path.encode(), 0, 0)

    def prepare(self, mode: str, im: _Image, size: int):
        lib = self.lib
        out = lib.resize_min(im, size) if mode == "resize_min" else getattr(lib, f"{mode}_image")(im, size, size)
        if ctypes.addressof(out.data.contents) != ctypes.addressof(im.data.contents):  # resize_min may return im
            lib.free_image(out)

    def as_array(self, im: _Image) -> np.ndarray:
        return np.ctypeslib.as_array(im.data, shape=(im.c, im.h, im.w)).copy()


def steady_allocator() -> bool:
    """Keep freed memory in the process (glibc: mallopt), as a long batch run does by itself once glibc's
    dynamic thresholds have grown: a fresh process maps, faults in and unmaps every large temporary again
    (measured: 760 page faults and 1.6 ms of system time per letterbox of a 640x424 photo, twice its
    arithmetic), which would time the allocator's state rather than the code. Both paths get the same
    allocator. True where it was set (glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    return all(libc.mallopt(k, v) == 1 for k, v in ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 256 << 20),
                                                     (M_TOP_PAD, 64 << 20)))


def rounds(variants: dict, repeat: int) -> dict:
    """{name: [seconds per round]}: every variant once per round, in turn, after one warm-up round."""
    for fn in variants.values():
        fn()
    samples: dict = {k: [] for k in variants}
    for _ in range(repeat):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
    return samples


#: one path's decode + prepare in a fresh process: its peak resident growth (KiB) on stdout. A fresh process,
#: because in this one the allocator keeps what earlier runs freed and a later peak hides in it.
PEAK_CHILD = """
import sys
sys.path[:0] = [{root!r}, {tests!r}, {here!r}]
from peakrss import peak_growth
from pydarknet.image import decode_rgb8, to_float_chw
from image import pydarknet_fns, LibDarknet
mode, path, who, n, lib = {mode!r}, {path!r}, {who!r}, {n}, {lib!r}
fn = pydarknet_fns(n)[mode]
dk = LibDarknet(lib) if who == "darknet" else None
def run():
    if who == "after":
        fn(decode_rgb8(path))
    elif who == "before":
        fn(to_float_chw(decode_rgb8(path)))
    else:
        im = dk.load(path)
        dk.prepare(mode, im, n)
        dk.lib.free_image(im)
run()
with peak_growth() as p:
    run()
print(p.kib)
"""


def peak_kib(mode: str, path: str, who: str, n: int, lib: str | None) -> int | None:
    import subprocess

    code = PEAK_CHILD.format(root=C.ROOT, tests=C.TESTS, here=C.HERE, mode=mode, path=path, who=who, n=n, lib=lib)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=C.thread_env(1))
    return int(r.stdout.split()[-1]) if r.returncode == 0 and r.stdout.split() else None


def bench_photo(label: str, path: str, args, dk: LibDarknet | None, quiet) -> dict:
    from pydarknet.image import decode_rgb8, to_float_chw

    n = args.size
    fns = pydarknet_fns(n)
    im8 = decode_rgb8(path)
    h, w = im8.shape[:2]
    row: dict = {"image": label, "path": path, "width": w, "height": h, "file_bytes": os.path.getsize(path)}
    variants = {"decode": lambda: decode_rgb8(path)}
    dk_im = None
    if dk is not None:
        variants["darknet decode"] = lambda: dk.decode(path)
        dk_im = dk.load(path)
    for mode, fn in fns.items():
        variants[f"{mode} after"] = lambda fn=fn: fn(im8)
        variants[f"{mode} before"] = lambda fn=fn: fn(to_float_chw(im8))
        if dk_im is not None:
            variants[f"{mode} darknet"] = lambda mode=mode: dk.prepare(mode, dk_im, n)
    quiet(label)
    samples = rounds(variants, args.repeat)
    med = {k: C.median(v) for k, v in samples.items()}
    row["decode"] = {"pydarknet_s": med["decode"], "darknet_s": med.get("darknet decode"),
                     "samples_s": samples["decode"]}
    f = to_float_chw(im8)
    row["modes"] = {}
    for mode, fn in fns.items():
        after, before = fn(im8), fn(f)
        m = {"after_s": med[f"{mode} after"], "before_s": med[f"{mode} before"],
             "darknet_s": med.get(f"{mode} darknet"),
             "bit_exact": bool(after.shape == before.shape and np.array_equal(after.view(np.uint32),
                                                                                 before.view(np.uint32))),
             "shape": list(after.shape)}
        m["before_over_after"] = m["before_s"] / m["after_s"]
        if m["darknet_s"]:
            m["darknet_over_after"] = m["darknet_s"] / m["after_s"]
        if args.peak:
            m["peak_kib"] = {who: peak_kib(mode, path, who, n, args.libdarknet if dk else None)
                             for who in ("after", "before") + (("darknet",) if dk else ())}
        row["modes"][mode] = m
        C.log(f"{label} {mode}: after {m['after_s'] * 1e3:.2f} ms, before {m['before_s'] * 1e3:.2f} ms "
              f"({m['before_over_after']:.2f}x), darknet "
              + (f"{m['darknet_s'] * 1e3:.2f} ms" if m["darknet_s"] else "-") + f", bit-exact {m['bit_exact']}")
    if dk_im is not None:
        dk.lib.free_image(dk_im)
    C.log(f"{label} decode: {med['decode'] * 1e3:.2f} ms"
          + (f", darknet {med['darknet decode'] * 1e3:.2f} ms" if dk else ""))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21, help="timed rounds (median; default 21)")
    ap.add_argument("--size", type=int, default=224, help="network input size (default 224)")
    ap.add_argument("--photos", default=os.path.join(C.PHOTOS, "*.jpg"), help="glob of the photos")
    ap.add_argument("--big", action="store_true", help="also dog.jpg upscaled to a 4000x3000 JPEG")
    ap.add_argument("--peak", action="store_true", help="also peak memory per path (a fresh process each)")
    ap.add_argument("--fresh-allocator", action="store_true",
                    help="leave glibc's allocator as a fresh process has it (see steady_allocator)")
    ap.add_argument("--libdarknet", default=None, help="libdarknet.so (default: tests/cdarknet.find_library())")
    C.add_quiet_wait(ap)
    C.add_json(ap, "image")
    args = ap.parse_args(argv)

    import glob

    from PIL import Image

    photos = sorted(glob.glob(args.photos))
    if not photos:
        raise SystemExit(f"no photos match {args.photos} (Debian's darknet package)")
    dk = None
    try:
        from cdarknet import find_library

        args.libdarknet = args.libdarknet or find_library()
        if args.libdarknet:
            dk = LibDarknet(args.libdarknet)
    except OSError as e:
        C.log(f"libdarknet unavailable: {e}")
    quiet = C.Quiet(args.quiet_wait)
    doc = {"machine": C.machine_info(processor=True), "repeat": args.repeat, "size": args.size,
           "libdarknet": args.libdarknet if dk else None, "loadavg_start": C.loadavg(), "rows": [],
           "steady_allocator": False if args.fresh_allocator else steady_allocator()}
    with C.scratch_dir() as tmp:
        inputs = [(os.path.basename(p), p) for p in photos]
        if args.big:
            big = os.path.join(tmp, "big.jpg")
            with Image.open(os.path.join(C.PHOTOS, "dog.jpg")) as im:
                im.convert("RGB").resize((4000, 3000), Image.BICUBIC).save(big, quality=90)
            inputs.append(("dog.jpg at 4000x3000", big))
        for label, path in inputs:
            doc["rows"].append(bench_photo(label, path, args, dk, quiet))
    doc["busy"] = quiet.busy
    doc["loadavg_end"] = C.loadavg()
    doc["summary"] = summary(doc)
    print(report(doc))
    print(f"(JSON: {C.write_json(doc, args.json)})")
    return 0 if all(m["bit_exact"] for r in doc["rows"] for m in r["modes"].values()) else 1


def summary(doc: dict) -> dict:
    """Per preprocessing over the sample photos: the range and geometric mean of before / after, all bit-exact."""
    out = {}
    rows = [r for r in doc["rows"] if r["path"].startswith(C.PHOTOS)] or doc["rows"]
    for mode in MODES:
        ratios = [r["modes"][mode]["before_over_after"] for r in rows]
        total = [(r["decode"]["pydarknet_s"] + r["modes"][mode]["before_s"])
                 / (r["decode"]["pydarknet_s"] + r["modes"][mode]["after_s"]) for r in rows]
        out[mode] = {"min": min(ratios), "max": max(ratios), "geomean": float(np.exp(np.mean(np.log(ratios)))),
                     "decode_plus_prepare_geomean": float(np.exp(np.mean(np.log(total)))),
                     "bit_exact": all(r["modes"][mode]["bit_exact"] for r in rows)}
    return out


def report(doc: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v * 1e3:.2f}"

    L = [f"Image preparation to {doc['size']}x{doc['size']}, median of {doc['repeat']} rounds "
         f"({doc['machine']['cpu_count']} CPUs); ms per photo:", "",
         "| photo | size | decode | darknet decode | preprocessing | before (float) | after (uint8) | before / after "
         "| darknet | darknet / after | bit-exact |",
         "|---|---|---:|---:|---|---:|---:|---:|---:|---:|:---:|"]
    for r in doc["rows"]:
        for i, (mode, m) in enumerate(r["modes"].items()):
            head = (f"| {r['image']} | {r['width']}x{r['height']} | {ms(r['decode']['pydarknet_s'])} | "
                    f"{ms(r['decode']['darknet_s'])} " if i == 0 else "| | | | ")
            dk = f"{m['darknet_over_after']:.1f}x" if m.get("darknet_over_after") else "-"
            L.append(head + f"| {mode} | {ms(m['before_s'])} | {ms(m['after_s'])} | **{m['before_over_after']:.1f}x** "
                     f"| {ms(m['darknet_s'])} | {dk} | {'y' if m['bit_exact'] else 'NO'} |")
    L += ["", "| preprocessing | before / after, min - max (geomean) | decode + prepare, before / after (geomean) "
          "| bit-exact |", "|---|---|---:|:---:|"]
    for mode, s in doc["summary"].items():
        L.append(f"| {mode} | {s['min']:.1f}x - {s['max']:.1f}x ({s['geomean']:.1f}x) | "
                 f"{s['decode_plus_prepare_geomean']:.2f}x | {'y' if s['bit_exact'] else 'NO'} |")
    if any("peak_kib" in m for r in doc["rows"] for m in r["modes"].values()):
        L += ["", "Peak resident growth of one decode + prepare, MiB (after / before / darknet):", ""]
        for r in doc["rows"]:
            parts = []
            for mode, m in r["modes"].items():
                p = m.get("peak_kib", {})
                parts.append(f"{mode} " + " / ".join("-" if p.get(k) is None else f"{p[k] / 1024:.0f}"
                                                      for k in ("after", "before", "darknet")))
            L.append(f"- {r['image']}: " + "; ".join(parts))
    if doc.get("busy"):
        L += ["", f"warning: the machine was busy before: {', '.join(doc['busy'])} (those timings are suspect)"]
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
