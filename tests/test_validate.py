"""`classifier valid` and its family: darknet's lines on the golden list, the live C darknet on PNG data
(including real Fashion-MNIST images), labels by folder or ground truth, reports, bad data."""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pydarknet
from conftest import GOLDEN, MKWEIGHTS, REFERENCE_CFG, REFERENCE_DATA, need_reference
from cdarknet import find_binary
from pydarknet.cli import main
from pydarknet.validate import SubstringLabeler, ambiguity_warnings

LABELS = REFERENCE_DATA / "imagenet.labels.list"
need_darknet = pytest.mark.skipif(find_binary() is None, reason="C darknet (darknet command) not installed")
FASHION = Path("/usr/share/datasets/fashion-mnist")
need_fashion = pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
                                  reason="Debian's dataset-fashion-mnist not installed")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_substring_rule_is_darknets():
    labels = ["n01", "n0211", "n02119789", "cat", "bobcat"]
    lab = SubstringLabeler(labels)
    assert lab("x/n02119789/a.jpg") == 1  # "n0211" (listed 2nd) and "n02119789" (3rd) both occur
    labels = ["n02119789", "n0211", "cat", "bobcat"]
    lab = SubstringLabeler(labels)
    assert lab("x/n02119789/a.jpg") == 0
    assert lab("x/bobcat/a.jpg") == 2  # "cat" is listed first: darknet's trap
    assert lab("x/dog/a.jpg") == -1
    warns = ambiguity_warnings(labels, ["d/bobcat/1.jpg", "d/n02119789/2.jpg"], lab)
    assert any("inside another label" in w for w in warns)
    assert any("more than one label" in w for w in warns)
    warns = ambiguity_warnings(["cat", "dog"], ["/data/cats/dog/1.jpg", "/data/cats/cat/2.jpg"],
                               SubstringLabeler(["cat", "dog"]))
    assert any("every image shares" in w for w in warns)


def _golden_hits(lines):
    """Per-image top-1/top-K hits recovered from darknet's running averages."""
    running = [l for l in lines if ": top 1: " in l]
    hits, prev1, prev5 = [], 0, 0
    for i, l in enumerate(running):
        a1 = round(float(l.split("top 1: ")[1].split(",")[0]) * (i + 1))
        a5 = round(float(l.rsplit(": ", 1)[1]) * (i + 1))
        hits.append((a1 - prev1, a5 - prev5))
        prev1, prev5 = a1, a5
    return hits


@need_reference
def test_golden_valid_list(tmp_path, golden_weights, capsys, monkeypatch):
    """The entries of cli_results.json's list whose images we hold (stb-decoded PNGs, linked under the
    list's labelled names): darknet's per-image lines verbatim, running lines from darknet's hits."""
    s = json.loads((GOLDEN / "cli" / "cli_results.json").read_text())
    lines = s["valid"]["stdout"].splitlines()
    per_image = [l for l in lines if ": top 1: " not in l]
    hits = _golden_hits(lines)
    monkeypatch.chdir(tmp_path)
    kept, expected = [], []
    n1 = n5 = 0
    for i, (listed, source) in enumerate(s["valid_list"]):
        stem = os.path.basename(source).replace(".", "_")
        png = GOLDEN / "decoded" / f"{stem}.png"
        if not source.startswith("data/") or not png.is_file():
            continue
        Path(listed).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(png, listed)
        kept.append(listed)
        n1 += hits[i][0]
        n5 += hits[i][1]
        r = len(kept)
        expected += [per_image[i], f"{r - 1}: top 1: {np.float32(n1) / np.float32(r):f}, "
                                   f"top 5: {np.float32(n5) / np.float32(r):f}"]
    assert len(kept) >= 10
    Path("valid.list").write_text("\n".join(kept) + "\n")
    Path("valid.data").write_text(f"classes=1000\nvalid=valid.list\nlabels={LABELS}\ntop=5\n")
    code, out, err = run(capsys, "classifier", "valid", "valid.data", REFERENCE_CFG / "tiny.cfg",
                         golden_weights("tiny"), "-q", "--workers", "0", "--batch", "3")
    assert code == 0, err
    assert out.splitlines() == expected


# -- a small darknet model on real labelled data ---------------------------------------------------------

SMALL_CFG = """[net]
batch=1
width=28
height=28
channels=3
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=10
size=1
stride=1
activation=linear
[avgpool]
[softmax]
"""
FASHION_LABELS = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankleboot"]


def fashion_images(n: int, out: Path) -> list[str]:
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        pixels = np.frombuffer(f.read(n * rows * cols), np.uint8).reshape(n, rows, cols)
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = np.frombuffer(f.read(n), np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out / f"{i:05d}_{FASHION_LABELS[labels[i]]}.png"
        Image.fromarray(pixels[i]).save(p)
        paths.append(str(p))
    return paths


def make_fashion_setup(tmp_path, n=600, size=28):
    cfg = tmp_path / "fm.cfg"
    cfg.write_text(SMALL_CFG.replace("width=28\nheight=28", f"width={size}\nheight={size}"))
    weights = tmp_path / "fm.weights"
    subprocess.run(["python3", str(MKWEIGHTS), str(cfg), str(weights), "--seed", "3", "--peak", "3"], check=True,
                   capture_output=True)
    paths = fashion_images(n, tmp_path / "fm")
    (tmp_path / "fm.list").write_text("\n".join(paths) + "\n")
    (tmp_path / "fm.labels").write_text("\n".join(FASHION_LABELS) + "\n")
    data = tmp_path / "fm.data"
    data.write_text(f"classes=10\nvalid={tmp_path / 'fm.list'}\nlabels={tmp_path / 'fm.labels'}\n"
                    f"names={tmp_path / 'fm.labels'}\ntop=2\n")
    return cfg, weights, data


@pytest.fixture
def fashion_setup(tmp_path):
    return make_fashion_setup(tmp_path)


# validfull at the images' own size would crash darknet (resize_min hands back the image itself and both are
# freed), so it runs a 32x32 network; validmulti runs ten passes up to 384x384, so on fewer images.
@need_fashion
@need_darknet
@pytest.mark.parametrize("mode,n,size", [("valid", 600, 28), ("valid10", 600, 28), ("validfull", 300, 32),
                                         ("validmulti", 40, 28)])
def test_fashion_mnist_same_as_live_darknet(tmp_path, capsys, mode, n, size):
    cfg, weights, data = make_fashion_setup(tmp_path, n, size)
    theirs = subprocess.run([find_binary(), "classifier", mode, str(data), str(cfg), str(weights)],
                            capture_output=True, text=True, timeout=600)
    assert theirs.returncode == 0, theirs.stderr[-500:]
    code, out, err = run(capsys, "classifier", mode, data, cfg, weights, "-q", "--batch", "64")
    assert code == 0, err
    ours_lines, their_lines = out.splitlines(), theirs.stdout.splitlines()
    assert len(ours_lines) == len(their_lines) == (2 * n if mode == "valid" else n)
    for a, b in zip(ours_lines, their_lines):
        if ": top 1: " in b:
            assert a == b  # every running top-1/top-2 line identical
        else:  # "path, label, pred[0], pred[1], ": same path and label, probabilities to float rounding
            pa, pb = a.split(", "), b.split(", ")
            assert pa[:2] == pb[:2]
            assert abs(float(pa[2]) - float(pb[2])) <= 1.5e-6 and abs(float(pa[3]) - float(pb[3])) <= 1.5e-6


@need_fashion
def test_batched_equals_one_at_a_time_and_reports(fashion_setup, capsys, tmp_path):
    cfg, weights, data = fashion_setup
    code, one, _ = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--batch", "1", "--workers", "0")
    code2, many, err = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--batch", "50",
                           "--workers", "2", "--out", tmp_path / "rep")
    assert code == code2 == 0
    # identical accuracy lines; pred[0]/pred[1] may differ in the 6th decimal (float sums in another order)
    assert [l for l in one.splitlines() if ": top 1: " in l] == [l for l in many.splitlines() if ": top 1: " in l]
    for a, b in zip(one.splitlines(), many.splitlines()):
        if ": top 1: " not in a:
            pa, pb = a.split(", "), b.split(", ")
            assert pa[:2] == pb[:2] and abs(float(pa[3]) - float(pb[3])) <= 1.5e-6
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["images_read"] == 600 and summary["skipped"] == 0
    final = many.splitlines()[-1]
    assert f"top 1: {summary['top1']:f}" in final
    rows = (tmp_path / "rep" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 601
    per_class = (tmp_path / "rep" / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 11
    assert (tmp_path / "rep" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    matrix = (tmp_path / "rep" / "confusion.csv").read_text().splitlines()
    assert len(matrix) == 11 and sum(int(v) for row in matrix[1:] for v in row.split(",")[1:]) == 600


def _tiny_model(tmp_path):
    cfg = tmp_path / "m.cfg"
    cfg.write_text(SMALL_CFG)
    torch.manual_seed(0)
    weights = tmp_path / "m.weights"
    pydarknet.load_network(cfg).save_weights(weights)
    return cfg, weights


def _write_images(root: Path, layout: dict[str, int]) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for rel, n in layout.items():
        for i in range(n):
            p = root / rel / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(p)
            paths.append(str(p))
    return paths


def test_bad_data_is_reported_skipped_counted_exit_3(tmp_path, capsys):
    cfg, weights = _tiny_model(tmp_path)
    paths = _write_images(tmp_path / "imgs", {"top": 3, "bag": 2})
    broken = tmp_path / "imgs" / "bag" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    listing = tmp_path / "v.list"
    listing.write_bytes(("\r\n".join(paths[:2] + ["", str(broken)] + paths[2:]) + "\r\n").encode())
    labels = tmp_path / "l.list"
    labels.write_bytes(b"top\r\nbag\r\n")
    data = tmp_path / "v.data"
    data.write_text(f"classes=2\nvalid={listing}\nlabels={labels}\ntop=1\n")
    code, out, err = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--out", tmp_path / "r")
    assert code == 3
    assert f"{listing}:3: empty line, skipped" in err
    assert f"pydarknet: error: {broken}: truncated PNG" in err
    assert out.splitlines()[-1].startswith("4: top 1: ")  # accuracy over the 5 images read
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["images_read"], summary["skipped"]) == (5, 2)
    assert "5 images read, 2 skipped" in err


def test_labels_from_folder_and_ground_truth(tmp_path, capsys):
    cfg, weights = _tiny_model(tmp_path)
    # directory names that darknet's substring rule gets wrong: "cat" is inside "bobcat"
    names = ["cat", "bobcat"] + [f"class{i}" for i in range(2, 10)]
    paths = _write_images(tmp_path / "set", {"cat": 2, "bobcat": 3})
    listing = tmp_path / "v.list"
    listing.write_text("\n".join(paths) + "\n")
    labels = tmp_path / "labels.list"
    labels.write_text("\n".join(names) + "\n")
    data = tmp_path / "v.data"
    data.write_text(f"classes=10\nvalid={listing}\nlabels={labels}\ntop=2\n")
    out_dirs = {}
    for how, extra in (("substring", []), ("folder", ["--labels-from", "folder"])):
        code, out, err = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--out", tmp_path / how, *extra)
        assert code == 0
        out_dirs[how] = [l.split(",")[1] for l in (tmp_path / how / "predictions.csv").read_text().splitlines()[1:]]
        if how == "substring":
            assert "occur inside another label" in err
    assert out_dirs["substring"] == ["0"] * 5  # darknet's rule: every bobcat image is a "cat"
    assert out_dirs["folder"] == ["0", "0", "1", "1", "1"]
    truth = tmp_path / "truth.txt"
    truth.write_text("".join(f"{p} {'bobcat' if 'bobcat' in p else 1}\n" for p in paths))
    code, _, _ = run(capsys, "classifier", "valid", data, cfg, weights, "-q", "--ground-truth", truth,
                     "--out", tmp_path / "gt")
    gt = [l.split(",")[1] for l in (tmp_path / "gt" / "predictions.csv").read_text().splitlines()[1:]]
    assert gt == ["1", "1", "1", "1", "1"]
