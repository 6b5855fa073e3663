#!/usr/bin/env python3
"""Build tests/data/golden/ (the golden data the tests read) from the ground truth in ../shared.

    python3 scripts/make_test_data.py [--shared DIR]     # DIR defaults to ../shared (or $PYDARKNET_SHARED)

What it copies (only what the tests read) and how:
- golden/manifest.json, golden/cli/cli_results.json, golden/darknet_logs/*.stderr.txt: byte for byte.
- golden/decoded/*.png (stb_image's pixels, lossless): byte for byte.
- golden/outputs/M/*.npy and golden/logits/M/*.npy: into outputs/M.npz and logits/M.npz (one member per
  source file, named after it without .npy; float32, values unchanged).
- golden/layers/tiny/dog_jpg/*.npy (every layer of tiny on dog.jpg, 13.8 MB): into layers/tiny_dog_jpg.npz,
  each layer as every `stride`-th value of its flattened output (at most LAYER_SAMPLES values; the stride
  is stored as member NAME.stride), float32 unchanged.
- golden/inputs/*.npy are not copied: each is letterbox_image / center_crop_image of the decoded PNG, and the
  manifest holds the sha256 of each; the tests rebuild them and check that sha256 (tests/conftest.py).
- tools/mkweights.py (the shared weights generator, not darknet code): byte for byte, as mkweights.py; the
  tests regenerate the golden weights with it (seed and peak from the manifest, sha256-checked).
darknet's reference cfgs and data are not copied (project rule): the tests read Debian's darknet package
(/usr/share/darknet, the same pjreddie commit); PROVENANCE.md records the sha256 of each one the tests
use, checked here against ../shared/reference and, where installed, /usr/share/darknet.

Writes PROVENANCE.md: each file's source and sha256. The output is deterministic (fixed zip timestamps).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "golden"
DEBIAN = Path("/usr/share/darknet")
LAYER_SAMPLES = 8192
#: darknet's files the tests read from the reference (Debian's darknet package or ../shared/reference)
REFERENCE_FILES = [f"cfg/{m}.cfg" for m in (
    "alexnet", "darknet", "darknet19", "darknet19_448", "darknet53", "densenet201", "extraction", "resnet18",
    "resnet34", "resnet50", "resnet101", "resnet152", "resnext50", "tiny", "vgg-16")] + [
    "data/imagenet.shortnames.list", "data/imagenet.labels.list",
    "data/dog.jpg", "data/eagle.jpg", "data/giraffe.jpg", "data/horses.jpg", "data/person.jpg"]


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256(path: Path) -> str:
    return sha256_bytes(path.read_bytes())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed member timestamps (so a rebuild gives the same bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.array(arrays[name], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue(), compresslevel=9)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("PYDARKNET_SHARED", ROOT.parent / "shared")))
    a = ap.parse_args(argv)
    shared = a.shared.resolve()
    golden = shared / "golden"
    manifest = json.loads((golden / "manifest.json").read_text())
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rows: list[tuple[str, str, str]] = []  # (in-repo path, sha256, sources)

    def src_ref(paths: list[Path]) -> str:
        return "; ".join(f"`{p.relative_to(shared)}` {sha256(p)}" for p in paths)

    def copy(rel: str, dest: str | None = None, src_root: Path = golden) -> None:
        src, dst = src_root / rel, OUT / (dest or rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        rows.append((dst.relative_to(OUT).as_posix(), sha256(dst), src_ref([src])))

    copy("manifest.json")
    copy("cli/cli_results.json")
    for log in sorted((golden / "darknet_logs").glob("*.stderr.txt")):
        copy(f"darknet_logs/{log.name}")
    for info in manifest["images"].values():
        copy(info["decoded"])
    copy("tools/mkweights.py", "mkweights.py", src_root=shared)

    for kind in ("outputs", "logits"):
        for model in sorted(manifest["models"]):
            files = sorted({f for c in manifest["cases"] if c["model"] == model for f in c["files"].values()
                            if f.startswith(kind + "/")})
            if not files:
                continue
            arrays = {}
            for f in files:
                x = np.load(golden / f)
                assert x.dtype == np.float32, f
                arrays[Path(f).name[: -len(".npy")]] = x
            dst = OUT / kind / f"{model}.npz"
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_npz(dst, arrays)
            rows.append((dst.relative_to(OUT).as_posix(), sha256(dst), src_ref([golden / f for f in files])))

    for case in manifest["cases"]:
        if not case.get("layers"):
            continue
        arrays, srcs = {}, []
        for layer in case["layers"]:
            x = np.load(golden / layer["file"]).reshape(-1)
            assert x.dtype == np.float32, layer["file"]
            stride = max(1, -(-x.size // LAYER_SAMPLES))
            name = Path(layer["file"]).name[: -len(".npy")]
            arrays[name] = x[::stride].copy()
            arrays[name + ".stride"] = np.array(stride, np.int64)
            srcs.append(golden / layer["file"])
        dst = OUT / "layers" / f"{case['model']}_{case['image']}.npz"
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_npz(dst, arrays)
        rows.append((dst.relative_to(OUT).as_posix(), sha256(dst), src_ref(srcs)))

    # darknet's own files: not copied; their sha256, checked against every copy at hand
    ref_rows = []
    for rel in REFERENCE_FILES:
        digest = sha256(shared / "reference" / rel)
        model = Path(rel).stem if rel.startswith("cfg/") else None
        if model in manifest["models"]:
            assert manifest["models"][model]["cfg_sha256"] == digest, rel
        debian = DEBIAN / rel
        if debian.is_file():
            assert sha256(debian) == digest, f"{debian} differs from {shared / 'reference' / rel}"
        ref_rows.append((rel, digest, "identical" if debian.is_file() else "not installed here"))

    mk = {m: info["mkweights"] for m, info in sorted(manifest["models"].items())}
    d = manifest["darknet"]
    lines = [
        "# Golden test data: provenance",
        "",
        "Built by `scripts/make_test_data.py` (do not edit by hand; rebuild with it) from the project's ground",
        f"truth in `../shared` (here: `{shared}`). Command line: `python3 scripts/make_test_data.py"
        + "".join(f" {x}" for x in (argv if argv is not None else sys.argv[1:])) + "`.",
        "",
        f"The golden outputs were made with {d['repo']} at commit {d['commit']} ({d['build']}), images decoded",
        "by its bundled stb_image 2.19 (see `manifest.json` `conventions`).",
        "",
        "- `manifest.json`, `cli/cli_results.json`, `darknet_logs/*.stderr.txt`, `decoded/*.png`: the shared",
        "  golden files, byte for byte.",
        "- `outputs/M.npz`, `logits/M.npz`: the shared `golden/outputs/M/*.npy` and `golden/logits/M/*.npy`,",
        "  one member per file (`IMG.predict`, `IMG.valid`), float32 values unchanged.",
        "- `layers/tiny_dog_jpg.npz`: every layer of tiny on dog.jpg (`golden/layers/tiny/dog_jpg/`), each",
        f"  as every `stride`-th value of its flattened output, at most {LAYER_SAMPLES} values (member",
        "  `NAME.stride` holds the stride), float32 values unchanged.",
        "- Input tensors (`golden/inputs/`) are not stored: the tests rebuild each from its decoded PNG and check",
        "  the sha256 the manifest gives for it (`in_predict_sha256`, `in_valid_sha256`).",
        "- `mkweights.py`: the shared `tools/mkweights.py` (the project's weights generator, not darknet code),",
        "  byte for byte. Weights are not stored: the tests run it on darknet's cfg with each model's seed and",
        "  peak and check the manifest's `weights_sha256`:",
        "",
        "| model | seed | peak |",
        "|---|---|---|",
        *[f"| {m} | {v['seed']} | {v['peak']} |" for m, v in mk.items()],
        "",
        "## Files (sha256; `tests/test_golden_data.py` checks them)",
        "",
        "| file | sha256 | from (path in ../shared, its sha256) |",
        "|---|---|---|",
        *[f"| `{p}` | {h} | {s} |" for p, h, s in sorted(rows)],
        "",
        "## darknet's files the tests read (not copied)",
        "",
        "darknet's own cfgs, label lists and images stay out of the project: the tests read them from Debian's",
        f"`darknet` package under `{DEBIAN}` (the same pjreddie commit; `PYDARKNET_REFERENCE` overrides the",
        "folder). Their sha256, equal to `../shared/reference/` (and, for the golden models, to the manifest's",
        "`cfg_sha256`); `tests/test_golden_data.py` checks them too:",
        "",
        f"| reference file | sha256 | {DEBIAN} at build time |",
        "|---|---|---|",
        *[f"| `{p}` | {h} | {s} |" for p, h, s in ref_rows],
        "",
    ]
    (OUT / "PROVENANCE.md").write_text("\n".join(lines))
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"make_test_data: {len(rows)} files, {total / 1e6:.2f} MB in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
