"""int8 post-training quantization (pydarknet.quantize, `pydarknet quantize`): the bundled `fashion` model
calibrated on real Fashion-MNIST PNGs (Debian's dataset-fashion-mnist), its artifact loaded in ONNX Runtime
and compared with pydarknet's own fp32 engine, its metadata, the weights check, the report, and the
command's errors (one line, exit 2)."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pydarknet.errors import DarknetError

FASHION = Path("/usr/share/datasets/fashion-mnist")
LABELS = ["top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankleboot"]
HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
pytestmark = [
    pytest.mark.skipif(not HAVE_ORT, reason="onnx / onnxruntime not installed (pip install '.[onnx]')"),
    pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
                       reason="Debian's dataset-fashion-mnist not installed"),
]
ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "pydarknet" / "models" / "fashion.weights"


def read_idx(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(FASHION / f"{split}-images-idx3-ubyte.gz") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        n = min(n, count)
        pixels = np.frombuffer(f.read(n * rows * cols), np.uint8).reshape(n, rows, cols)
    with gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = np.frombuffer(f.read(n), np.uint8)
    return pixels, labels


def write_pngs(split: str, n: int, out: Path) -> list[str]:
    from PIL import Image

    pixels, labels = read_idx(split, n)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (p, lab) in enumerate(zip(pixels, labels)):
        path = out / f"{i:05d}_{LABELS[lab]}.png"
        Image.fromarray(p).save(path)
        paths.append(str(path))
    return paths


def write_list(path: Path, paths: list[str]) -> str:
    path.write_text("\n".join(paths) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def fm(tmp_path_factory):
    """400 Fashion-MNIST test images as PNGs, their list, and a copy of the bundled weights (so the artifact
    beside them lands in the scratch directory, not in the package)."""
    tmp = tmp_path_factory.mktemp("fm")
    paths = write_pngs("t10k", 400, tmp / "png")
    weights = tmp / "fashion.weights"
    shutil.copyfile(BUNDLED, weights)
    return {"dir": tmp, "paths": paths, "list": write_list(tmp / "fm.list", paths), "weights": str(weights)}


@pytest.fixture(scope="module")
def quantized(fm):
    """One quantize_model run: 100 calibration images, the other 300 held out."""
    from pydarknet.datacfg import read_data_cfg
    from pydarknet.model import resolve_model
    from pydarknet.quantize import plan_quantization, quantize_model
    from pydarknet.specs import load_specs

    model = resolve_model("fashion", fm["weights"])
    plan = plan_quantization(model, load_specs(model.cfg), read_data_cfg("fashion"), fm["list"])
    report = quantize_model(model, plan, images=100, progress=False)
    return model, plan, report


def test_artifact_beside_the_weights_loads_and_agrees_with_pydarknet(fm, quantized):
    """The int8 model, run here by ONNX Runtime on the held-out images, against pydarknet's own fp32 engine
    (not the report's figures): top-1 agreement >= 97%, and it really is quantized."""
    import onnx

    import pydarknet
    from pydarknet.pipeline import prepared_images
    from pydarknet.quantize import _views, int8_artifact_path, ort_session

    model, plan, report = quantized
    assert report.artifact == int8_artifact_path(fm["weights"]) == fm["weights"] + ".int8.onnx"
    assert os.path.isfile(report.artifact)
    proto = onnx.load(report.artifact)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {t.name: t for t in proto.graph.initializer}
    int8_weights = [t for t in inits.values() if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 6  # every convolution's weights, per output channel (one scale per filter)
    for t in int8_weights:
        assert list(inits[t.name.replace("_quantized", "_scale")].dims) == [t.dims[0]]

    held = [p for p in fm["paths"] if p not in set(_calibration(plan, 100))]
    assert len(held) == report.holdout_images == 300
    views = _views(pydarknet.load_specs(model.cfg), plan.resolved)
    x = np.stack([a[0] for _, _, a, _ in prepared_images(held, views)])
    int8 = ort_session(report.artifact).run(None, {"input": x})[0]
    fp32 = pydarknet.open_engine(model.cfg, fm["weights"]).infer(x)
    assert int8.shape == fp32.shape == (300, 10)
    agree = np.mean(int8.argmax(1) == fp32.argmax(1))
    assert agree >= 0.97, agree
    assert abs(agree - report.top1_agreement) <= 1 / 300  # the report's own figure is the same measurement
    assert np.abs(int8.sum(1) - 1).max() < 1e-4  # the softmax stays in float: probabilities still sum to 1


def _calibration(plan, images: int) -> list[str]:
    from pydarknet.quantize import split_list

    return split_list(plan.paths, images, None).calibration


def test_metadata_holds_the_models_facts_and_the_calibration(fm, quantized):
    import hashlib

    from pydarknet.quantize import int8_metadata

    model, _, report = quantized
    meta = int8_metadata(report.artifact)
    facts = json.loads(meta["pydarknet_model_facts"])
    assert facts["classes"] == {"builtin": "fashion"} and facts["preprocess"]["resize"] == "letterbox"
    assert facts["input_size"] == [28, 28] and facts["provenance"]["zoo"] == "fashion"
    assert meta["darknet_cfg"] == Path(model.cfg).read_text()  # the cfg text, as the fp32 export writes it
    assert meta["darknet_cfg_name"] == "fashion.cfg" and meta["input_shape"] == "3,28,28"
    assert meta["outputs"] == "10"
    assert meta["pydarknet_precision"] == "int8"
    assert meta["pydarknet_calibration_list"] == os.path.abspath(fm["list"])
    assert meta["pydarknet_calibration_images"] == "100" and meta["pydarknet_calibration_method"] == "minmax"
    data = Path(fm["weights"]).read_bytes()
    assert meta["pydarknet_weights_bytes"] == str(len(data))
    assert meta["pydarknet_weights_sha256"] == hashlib.sha256(data).hexdigest()


def test_report_json_and_lines(quantized):
    _, _, report = quantized
    doc = json.loads(Path(report.report).read_text())
    assert report.report == report.artifact + ".report.json"
    for key in ("top1_agreement", "top5_agreement", "max_prob_diff", "fp32_top1", "fp32_top5", "int8_top1",
                "int8_top5", "fp32_images_per_second", "int8_images_per_second", "calibration_images",
                "holdout_images", "method", "poor", "unreadable", "artifact", "weights"):
        assert key in doc, key
    assert doc["calibration_images"] == 100 and doc["holdout_images"] == 300 and doc["unreadable"] == []
    assert doc["top1_agreement"] >= 0.97 and doc["poor"] is False
    assert 0.8 <= doc["fp32_top1"] <= 0.95 and abs(doc["int8_top1"] - doc["fp32_top1"]) <= 0.02
    assert doc["fp32_top5"] >= 0.98 and 0 < doc["max_prob_diff"] < 0.5
    assert doc["int8_images_per_second"] > 0 and doc["fp32_images_per_second"] > 0
    lines = report.lines()
    assert f"top 1 agreement: {doc['top1_agreement']:f}" in lines
    assert f"fp32 top 1: {doc['fp32_top1']:f}" in lines and f"int8 top 5: {doc['int8_top5']:f}" in lines
    assert any(line.startswith("int8 images/s: ") for line in lines)
    assert report.warning() is None


def test_poor_agreement_warns_and_suggests_bf16():
    from pydarknet.quantize import MIN_TOP1_AGREEMENT, QuantizeReport

    r = QuantizeReport("a.onnx", "a.onnx.report.json", "w", "l", 10, 5, 5, "minmax", "q", top1_agreement=0.9)
    assert r.poor and MIN_TOP1_AGREEMENT == 0.97
    assert "poor" in r.warning() and "--precision bf16" in r.warning() and "90.00%" in r.warning()
    assert not QuantizeReport("a", "b", "w", "l", 10, 5, 5, "minmax", "q", top1_agreement=0.97).poor


def test_check_refuses_other_weights_and_other_files(fm, quantized, tmp_path):
    from pydarknet.quantize import check_int8_artifact

    _, _, report = quantized
    check_int8_artifact(report.artifact, fm["weights"])  # its own weights: fine
    same_size = bytearray(Path(fm["weights"]).read_bytes())
    same_size[-1] ^= 1
    (tmp_path / "flipped.weights").write_bytes(same_size)
    with pytest.raises(DarknetError, match=r"made from other weights: it records sha256 [0-9a-f]{16}"):
        check_int8_artifact(report.artifact, tmp_path / "flipped.weights")
    (tmp_path / "short.weights").write_bytes(same_size[:-4])
    with pytest.raises(DarknetError, match=r"records a 711612-byte weights file, .* has 711608 bytes"):
        check_int8_artifact(report.artifact, tmp_path / "short.weights")
    fp32 = tmp_path / "fp32.onnx"
    from pydarknet.engines.network import load_network
    from pydarknet.onnx import export_onnx

    export_onnx(load_network(str(ROOT / "pydarknet/cfgs/fashion.cfg"), fm["weights"]), fp32, check=False)
    with pytest.raises(DarknetError, match="not a pydarknet int8 model"):
        check_int8_artifact(fp32, fm["weights"])
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DarknetError, match="not an ONNX model"):
        check_int8_artifact(tmp_path / "junk.onnx", fm["weights"])
    with pytest.raises(DarknetError, match="no such weights file"):
        check_int8_artifact(report.artifact, tmp_path / "absent.weights")


def test_split_is_seeded_disjoint_and_in_list_order():
    from pydarknet.quantize import DEFAULT_HOLDOUT, split_list

    paths = [f"img{i:04d}_x.png" for i in range(1500)]
    a, b = split_list(paths, 256, None), split_list(paths, 256, None)
    assert a == b and len(a.calibration) == 256 and len(a.holdout) == DEFAULT_HOLDOUT
    assert not set(a.calibration) & set(a.holdout)
    assert a.calibration == sorted(a.calibration) and a.holdout == sorted(a.holdout)
    assert a.calibration != paths[:256]  # a shuffle, not the head of a list that may be sorted by class
    assert split_list(paths, 256, None, seed=1).calibration != a.calibration
    assert len(split_list(paths, 256, 10).holdout) == 10 and split_list(paths, 256, 0).holdout == []
    assert len(split_list(paths[:300], 256, None).holdout) == 44
    with pytest.raises(DarknetError, match=r"^l: 100 images found, 256 needed for calibration \(--images 256\)"):
        split_list(paths[:100], 256, None, where="l")
    with pytest.raises(DarknetError, match="none is left to hold out"):
        split_list(paths[:256], 256, None)
    with pytest.raises(DarknetError, match="leave 44 to hold out, not --holdout 45"):
        split_list(paths[:300], 256, 45)


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    from pydarknet.cli import main

    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_too_few_calibration_images_is_one_line_exit_2(fm, capsys, tmp_path):
    small = write_list(tmp_path / "small.list", fm["paths"][:50])
    rc, out, err = run_main(["quantize", "fashion", "fashion", fm["weights"], "--calibrate", small, "-q"], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"pydarknet: error: {small}: 50 images found, 256 needed for calibration (--images 256)")
    assert not (tmp_path / "fashion.weights.int8.onnx").exists()


@pytest.mark.parametrize("case", ["missing list", "no directory", "a directory", "unreadable images", "budget"])
def test_bad_input_is_one_line_exit_2(fm, capsys, tmp_path, case):
    args = ["quantize", "fashion", "fashion", fm["weights"], "--calibrate", fm["list"], "--images", "20", "-q"]
    if case == "missing list":
        args[5] = str(tmp_path / "absent.list")
        expect = "no such image list file"
    elif case == "no directory":
        args += ["--out", str(tmp_path / "nowhere" / "x.onnx")]
        expect = "the directory does not exist"
    elif case == "a directory":
        args += ["--out", str(tmp_path)]
        expect = "is a directory"
    elif case == "budget":
        args[7] = "200"
        args += ["--max-memory", "2M"]  # the network needs 1 MiB; 200 prepared 3x28x28 inputs 1.8 MiB
        expect = "--images 200 needs 1.8 MiB for the prepared calibration inputs, over half the memory budget of 2.0"
    else:
        junk = []
        for i in range(30):
            (tmp_path / f"junk{i}.png").write_bytes(b"not a png")
            junk.append(str(tmp_path / f"junk{i}.png"))
        args[5] = write_list(tmp_path / "junk.list", junk)
        expect = "over 10 of its 20 images could not be read (the first: "
    rc, out, err = run_main(args, capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("pydarknet: error: ") and expect in err


def test_a_few_unreadable_images_are_skipped_and_a_poor_model_says_so(fm, capsys, tmp_path):
    """Two broken files in the list: reported, skipped, exit 3. The model: the trained weights with one
    outlier channel (layer 6's channel 0 at about 1000, which layer 7 ignores: fp32 predicts exactly as
    before), int8's classic failure: the per-tensor activation scale crushes the other channels. Given as a
    cfg path with a names-only .data file, no labels are known: no accuracy lines."""
    import torch

    from pydarknet.engines.network import load_network

    cfg = tmp_path / "fm.cfg"
    shutil.copyfile(ROOT / "pydarknet/cfgs/fashion.cfg", cfg)
    net = load_network(str(cfg), fm["weights"])
    with torch.no_grad():
        net.layers["6_convolutional"].biases[0] = 1000.0
        net.layers["7_convolutional"].weights[:, 0] = 0.0
    net.save_weights(tmp_path / "outlier.weights")
    (tmp_path / "names.txt").write_text("\n".join(LABELS) + "\n")
    data = tmp_path / "names.data"
    data.write_text(f"classes=10\nnames={tmp_path / 'names.txt'}\n")
    for i in range(2):
        (tmp_path / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    listed = write_list(tmp_path / "l.list", fm["paths"][:200] + [str(tmp_path / f"broken{i}.png") for i in range(2)])
    rc, out, err = run_main(["quantize", str(data), str(cfg), str(tmp_path / "outlier.weights"), "--calibrate",
                             listed, "--images", "60", "-q"], capsys)
    assert rc == 3, err
    assert err.count("broken") == 2 and "pydarknet: error: " in err
    assert "pydarknet: 2 images could not be read, skipped" in err
    assert "held-out images: " in out and "top 1 agreement: " in out
    assert "fp32 top 1" not in out  # no labels known: no accuracy
    doc = json.loads((tmp_path / "outlier.weights.int8.onnx.report.json").read_text())
    assert doc["fp32_top1"] is None and len(doc["unreadable"]) == 2
    assert doc["calibration_images"] + doc["holdout_images"] == 200
    assert doc["poor"] and doc["top1_agreement"] < 0.97
    assert "the int8 model is poor; try --precision bf16" in err


def test_no_accuracy_when_no_image_has_a_label(fm, capsys, tmp_path):
    """Labels known (the fashion set) but found in no path: no accuracy lines, not an accuracy of 0."""
    plain = []
    for i, p in enumerate(fm["paths"][:90]):
        plain.append(str(tmp_path / f"img{i:03d}.png"))
        shutil.copyfile(p, plain[-1])
    rc, out, err = run_main(["quantize", "fashion", "fashion", fm["weights"], "--calibrate",
                             write_list(tmp_path / "plain.list", plain), "--images", "40", "--out",
                             str(tmp_path / "plain.onnx"), "-q"], capsys)
    assert rc == 0, err
    assert "held-out images: 50" in out and "top 1 agreement: " in out and "fp32 top 1" not in out
    doc = json.loads((tmp_path / "plain.onnx.report.json").read_text())
    assert doc["fp32_top1"] is None and doc["unlabelled"] == 0 and doc["holdout_images"] == 50


def test_cli_end_to_end(fm, tmp_path):
    out = tmp_path / "custom.int8.onnx"
    r = subprocess.run([sys.executable, "-m", "pydarknet", "quantize", "fashion", "fashion", fm["weights"],
                        "--calibrate", fm["list"], "--images", "64", "--holdout", "100", "--out", str(out), "-q"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"int8 model: {out}"
    assert lines[1] == f"calibration: 64 images of {fm['list']}, minmax" and lines[2] == "held-out images: 100"
    figures = dict(line.split(": ", 1) for line in lines[3:])
    assert set(figures) == {"top 1 agreement", "top 5 agreement", "max |prob diff|", "fp32 top 1", "int8 top 1",
                            "fp32 top 5", "int8 top 5", "fp32 images/s", "int8 images/s"}
    assert float(figures["top 1 agreement"]) >= 0.97
    assert r.stderr.strip() == f"pydarknet: wrote {out} and {out}.report.json"
    assert json.loads(Path(f"{out}.report.json").read_text())["holdout_images"] == 100


@pytest.mark.slow
def test_fashion_top1_over_the_10k_test_images_within_half_a_point(tmp_path):
    """The issue's goal: calibrated on 256 training images, int8 top-1 over the 10,000 test images within 0.5
    point of fp32 (measured: 87.77% both)."""
    from pydarknet.datacfg import read_data_cfg
    from pydarknet.engines.network import load_network
    from pydarknet.model import resolve_model
    from pydarknet.onnx import export_onnx
    from pydarknet.quantize import _views, ort_session, plan_quantization, quantize_model
    from pydarknet.specs import load_specs

    weights = tmp_path / "fashion.weights"
    shutil.copyfile(BUNDLED, weights)
    train = write_list(tmp_path / "train.list", write_pngs("train", 300, tmp_path / "train"))
    model = resolve_model("fashion", str(weights))
    spec = load_specs(model.cfg)
    plan = plan_quantization(model, spec, read_data_cfg("fashion"), train)
    report = quantize_model(model, plan, images=256, progress=False)
    pixels, labels = read_idx("t10k", 10000)
    views = _views(spec, plan.resolved)
    x = np.stack([views(np.repeat(p[:, :, None], 3, axis=2))[0] for p in pixels])  # as decode_rgb8 gives a PNG
    # fp32: pydarknet's export (checked against pydarknet within 1e-5 as it is written): 87.77%, the zoo's figure
    export_onnx(load_network(model.cfg, str(weights)), tmp_path / "fp32.onnx", batch="dynamic")
    fp32, int8 = (np.concatenate([s.run(None, {"input": x[i:i + 1000]})[0] for i in range(0, 10000, 1000)])
                  for s in (ort_session(str(tmp_path / "fp32.onnx")), ort_session(report.artifact)))
    top1_fp32, top1_int8 = np.mean(fp32.argmax(1) == labels), np.mean(int8.argmax(1) == labels)
    assert top1_fp32 == pytest.approx(0.8777, abs=1e-4)
    assert abs(top1_int8 - top1_fp32) <= 0.005, (top1_fp32, top1_int8)
    assert np.mean(int8.argmax(1) == fp32.argmax(1)) >= 0.98


def test_precision_int8_runs_the_artifact_in_valid_predict_and_the_api(fm, quantized, capsys, tmp_path):
    """--precision int8 (and load(precision="int8")) run the artifact beside the weights: the same top-1 as
    fp32 on >= 97% of images; without an artifact, or for other weights, one line, exit 2."""
    from pydarknet.cli import main

    import pydarknet

    listing = write_list(tmp_path / "v.list", fm["paths"][100:160])
    results = {}
    for precision in ("fp32", "int8"):
        code = main(["classifier", "predict", "fashion", "fashion", fm["weights"], "--list", listing,
                     "--precision", precision, "-q"])
        out, err = capsys.readouterr()
        assert code == 0, err
        results[precision] = [line.split(",")[:2] for line in out.splitlines()]
    agree = sum(a == b for a, b in zip(results["fp32"], results["int8"]))
    assert len(results["int8"]) >= 60 and agree >= 0.97 * len(results["int8"]), results
    clf = pydarknet.load("fashion", fm["weights"], precision="int8")
    assert clf.engine.kind == "onnxruntime" and clf.engine.precision == "int8"
    want = pydarknet.load("fashion", fm["weights"]).predict(fm["paths"][100:110], top=1)
    got = clf.predict(fm["paths"][100:110], top=1)
    assert sum(a[0].index == b[0].index for a, b in zip(want, got)) >= 9
    # other weights: no artifact beside them
    other = tmp_path / "other.weights"
    shutil.copyfile(fm["weights"], other)
    code = main(["classify", "fashion", str(other), fm["paths"][0], "--precision", "int8", "-q"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "other.weights.int8.onnx" in err, err


def test_bundled_weights_get_their_artifact_in_the_cache_not_the_package(monkeypatch, tmp_path):
    from pydarknet.quantize import int8_artifact_path

    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    assert int8_artifact_path(BUNDLED) == str(tmp_path / "cache" / "int8" / "fashion.weights.int8.onnx")
    assert int8_artifact_path(tmp_path / "my.weights") == str(tmp_path / "my.weights.int8.onnx")
