"""Engines and precisions: bf16 on the torch engine, the onnxruntime engine and its cache, auto's choice."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import pydarknet
from conftest import ZOO_CFG, golden_array
from pydarknet.cli import main
from pydarknet.engines import TORCH_IMPORT_S, choose_engine, open_engine
from pydarknet.engines.ort_infer import EngineCache, OrtEngine
from pydarknet.errors import DarknetError
from test_engines import random_net

HAVE_BF16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def darknet_files(tmp_path):
    """darknet.cfg (fully convolutional, 1 BFLOPs) with random weights whose logits have a std near 3."""
    net = random_net(ZOO_CFG / "darknet.cfg")
    weights = tmp_path / "darknet.weights"
    net.save_weights(weights)
    return ZOO_CFG / "darknet.cfg", weights, net


def _x(spec, n=2, seed=1):
    return np.random.default_rng(seed).random((n, *spec.input_shape), dtype=np.float32)


# -- bf16 ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_BF16, reason="this CPU has no native bfloat16 (the refusal is tested below)")
@pytest.mark.parametrize("model", ["darknet", "resnet18", "densenet201"])
def test_bf16_keeps_the_top5_and_gives_float32_probabilities(model):
    net = random_net(ZOO_CFG / f"{model}.cfg")
    x = _x(net.spec, 3)
    from pydarknet.engines.torch_infer import TorchEngine

    fp32 = TorchEngine.from_network(net).infer(x)
    bf16 = TorchEngine.from_network(net, precision="bf16").infer(x)
    assert bf16.dtype == np.float32
    assert np.abs(bf16.sum(axis=1) - 1).max() < 1e-5  # the softmax ran in float32
    assert np.abs(bf16 - fp32).max() < 0.02
    assert (np.argmax(bf16, axis=1) == np.argmax(fp32, axis=1)).all()


@pytest.mark.skipif(not HAVE_BF16, reason="this CPU has no native bfloat16")
def test_bf16_on_darknets_golden_inputs(manifest, golden_weights):
    """bf16 against darknet's own outputs on every golden model and image: the same top-5 classes on at least
    99% of them (the issue's goal; their order may change where darknet's probabilities are within about 3% of
    each other, as on 6 of these 30), the top-1 on all, probabilities within 0.02."""
    from conftest import REFERENCE_CFG
    from test_conformance import GOLDEN_MODELS, cases_with_inputs

    same = n = 0
    for model in GOLDEN_MODELS:
        engine = open_engine(REFERENCE_CFG / f"{model}.cfg", golden_weights(model), precision="bf16")
        for case, mode in cases_with_inputs(manifest, model):
            y = engine.infer(golden_array(case["files"][f"in_{mode}"])[None])[0]
            expected = golden_array(case["files"][f"out_{mode}"])
            assert np.abs(y - expected).max() < 0.02, (model, case["image"])
            top5 = [int(i) for i in np.argsort(-y, kind="stable")[:5]]
            assert top5[0] == case[f"top5_{mode}"][0][0], (model, case["image"])
            same += set(top5) == {i for i, _ in case[f"top5_{mode}"]}
            n += 1
    assert n > 0 and same >= 0.99 * n, f"the same top-5 on {same} of {n}"


def test_bf16_is_refused_with_one_line_where_the_cpu_lacks_it(monkeypatch, capsys, darknet_files, tmp_path):
    from pydarknet.engines import torch_infer

    monkeypatch.setattr(torch_infer, "bf16_support", lambda device: "this CPU has no native bfloat16 (test)")
    cfg, weights, _ = darknet_files
    image = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(image)
    code = main(["classify", str(cfg), str(weights), str(image), "--precision", "bf16", "-q"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == "pydarknet: error: --precision bf16: this CPU has no native bfloat16 (test)\n"
    with pytest.raises(DarknetError, match="no native bfloat16"):
        from pydarknet.api import Classifier

        Classifier(pydarknet.load_network(cfg, weights), None, precision="bf16")


def test_precisions_go_to_their_engines():
    kw = dict(device="cpu", images=10, has_weights=True)
    assert choose_engine("auto", precision="bf16", **kw) == "torch"
    assert choose_engine("auto", precision="int8", **kw) == "onnxruntime"
    for engine, precision in (("numpy", "bf16"), ("torch", "int8"), ("onnxruntime", "bf16"), ("numpy", "int8")):
        with pytest.raises(DarknetError, match=f"--precision {precision} runs on the"):
            choose_engine(engine, precision=precision, **kw)
    with pytest.raises(DarknetError, match="unknown precision 'fp16'"):
        choose_engine("auto", precision="fp16", **kw)


# -- the onnxruntime engine ---------------------------------------------------------------------------------


def test_onnxruntime_engine_matches_the_network_and_is_cached(cache, darknet_files):
    cfg, weights, net = darknet_files
    x = _x(net.spec, 3)
    engine = open_engine(cfg, weights, engine="onnxruntime")
    assert isinstance(engine, OrtEngine)
    assert np.abs(engine.infer(x) - net.infer(x)).max() <= 1e-5
    entry = EngineCache.of(engine.spec, weights)
    timings = json.loads(open(entry.timings).read())
    assert timings["onnxruntime_ms"] > 0 and timings["torch_ms"] > 0 and timings["export_max_abs_diff"] <= 1e-5
    assert os.path.getsize(entry.model) > 1000
    # a later process runs it without importing PyTorch and without exporting again
    before = os.stat(entry.model).st_mtime_ns
    code = ("import sys, numpy as np; from pydarknet.engines import open_engine; "
            f"e = open_engine({str(cfg)!r}, {str(weights)!r}, engine='onnxruntime'); "
            f"y = e.infer(np.load({str(cache / 'x.npy')!r})); np.save({str(cache / 'y.npy')!r}, y); "
            "print('torch' in sys.modules)")
    np.save(cache / "x.npy", x)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
    assert np.array_equal(np.load(cache / "y.npy"), engine.infer(x))
    assert os.stat(entry.model).st_mtime_ns == before


def test_onnxruntime_cache_follows_the_weights_and_never_a_link(cache, darknet_files, tmp_path):
    cfg, weights, net = darknet_files
    spec = pydarknet.load_specs(cfg)
    first = EngineCache.of(spec, weights)
    open_engine(cfg, weights, engine="onnxruntime")
    with torch.no_grad():
        net.layers["0_convolutional"].biases.add_(0.5)
    net.save_weights(weights)  # new contents: a new key, a new export with the new numbers
    second = EngineCache.of(spec, weights)
    assert second.key != first.key
    x = _x(spec, 1)
    assert np.abs(open_engine(cfg, weights, engine="onnxruntime").infer(x) - net.infer(x)).max() <= 1e-5
    # a planted link in place of a cached model is not followed: the entry is rebuilt
    os.remove(second.model)
    os.symlink(tmp_path / "elsewhere.onnx", second.model)
    assert second.read_model() is None
    assert np.abs(open_engine(cfg, weights, engine="onnxruntime").infer(x) - net.infer(x)).max() <= 1e-5
    assert not os.path.islink(second.model)


def test_onnxruntime_engine_takes_other_input_sizes_of_a_fully_convolutional_net(cache, darknet_files):
    cfg, weights, net = darknet_files
    engine = open_engine(cfg, weights, engine="onnxruntime")
    x = np.random.default_rng(2).random((1, 3, 160, 192), dtype=np.float32)
    assert np.abs(engine.infer(x) - net.infer(x)).max() <= 1e-5


def test_onnxruntime_threads_make_a_new_session_with_the_same_numbers(cache, darknet_files):
    cfg, weights, net = darknet_files
    x = _x(net.spec, 20)  # more than one chunk
    engine = open_engine(cfg, weights, engine="onnxruntime", threads=2)
    a = engine.infer(x)
    engine.set_threads(1)
    assert engine.threads == 1
    assert np.abs(engine.infer(x) - a).max() <= 1e-6


def test_a_cache_that_cannot_be_written_still_runs(monkeypatch, tmp_path, darknet_files):
    cfg, weights, net = darknet_files
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "afile"))
    (tmp_path / "afile").write_text("not a folder")
    x = _x(net.spec, 1)
    assert np.abs(open_engine(cfg, weights, engine="onnxruntime").infer(x) - net.infer(x)).max() <= 1e-5


# -- auto ------------------------------------------------------------------------------------------------


def _timings(cache_entry: EngineCache, **values) -> None:
    os.makedirs(os.path.dirname(cache_entry.model), exist_ok=True)
    open(cache_entry.model, "wb").write(b"x")
    open(cache_entry.timings, "w").write(json.dumps(values))


def test_auto_picks_the_faster_engine_for_the_job(cache, darknet_files):
    cfg, weights, _ = darknet_files
    spec = pydarknet.load_specs(cfg)
    kw = dict(device="cpu", has_weights=True, spec=spec, cfg=cfg, weights=weights)
    assert choose_engine("auto", images=1, **kw) == "numpy"  # one image, nothing cached: no export for it
    assert not os.path.exists(EngineCache.of(spec, weights).timings)
    entry = EngineCache.of(spec, weights)
    _timings(entry, onnxruntime_ms=5.0, torch_ms=7.0)
    assert choose_engine("auto", images=1, **kw) == "onnxruntime"
    assert choose_engine("auto", images=None, **kw) == "onnxruntime"
    # torch 1 ms faster per image: worth its import only past TORCH_IMPORT_S / 1 ms images
    _timings(entry, onnxruntime_ms=8.0, torch_ms=7.0)
    assert choose_engine("auto", images=int(TORCH_IMPORT_S * 1000) - 100, **kw) == "onnxruntime"
    assert choose_engine("auto", images=int(TORCH_IMPORT_S * 1000) + 100, **kw) == "torch"
    assert choose_engine("auto", images=None, **kw) == "torch"
    _timings(entry, error="torch.onnx.export failed (test)")
    assert choose_engine("auto", images=100, **kw) == "torch"
    with pytest.raises(DarknetError, match="no onnxruntime engine for these weights: torch.onnx.export failed"):
        open_engine(cfg, weights, engine="onnxruntime")
    assert choose_engine("auto", images=100, device="cpu", has_weights=False) == "torch"


def test_auto_builds_the_cache_on_the_first_batch_job(cache, darknet_files):
    cfg, weights, _ = darknet_files
    spec = pydarknet.load_specs(cfg)
    kind = choose_engine("auto", images=50, device="cpu", has_weights=True, spec=spec, cfg=cfg, weights=weights)
    timings = EngineCache.of(spec, weights).read_timings()
    assert timings is not None
    faster = "torch" if (timings["onnxruntime_ms"] - timings["torch_ms"]) * 50 / 1e3 > TORCH_IMPORT_S else "onnxruntime"
    assert kind == faster


def test_cli_engines_print_the_same_predictions(cache, capsys, darknet_files, tmp_path):
    cfg, weights, _ = darknet_files
    rng = np.random.default_rng(5)
    images = []
    for i in range(3):
        images.append(tmp_path / f"i{i}.png")
        Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 50, 3), dtype=np.uint8)).save(images[-1])
    outs = {}
    for engine in ("torch", "onnxruntime", "numpy", "auto"):
        code = main(["classify", str(cfg), str(weights), *map(str, images), "--engine", engine, "-q"])
        out, err = capsys.readouterr()
        assert code == 0, err
        outs[engine] = [line.rsplit(":", 1)[0] for line in out.splitlines()]  # names, not timings
    assert outs["onnxruntime"] == outs["torch"] == outs["numpy"] == outs["auto"]


def test_an_uncached_batch_job_exports_once(monkeypatch, tmp_path, darknet_files):
    """auto's choice builds the export and its timings; opening the engine then reuses them, also where the
    cache cannot be written."""
    from pydarknet.engines import ort_infer

    cfg, weights, _ = darknet_files
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "afile"))
    (tmp_path / "afile").write_text("not a folder")
    built = []
    real = ort_infer.build_cache
    monkeypatch.setattr(ort_infer, "build_cache", lambda *a, **k: built.append(1) or real(*a, **k))
    spec = pydarknet.load_specs(cfg)
    kind = choose_engine("auto", images=10**6, device="cpu", has_weights=True, spec=spec, cfg=cfg, weights=weights)
    if kind == "onnxruntime":
        open_engine(cfg, weights, engine="onnxruntime")
    assert built == [1]
