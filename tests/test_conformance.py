"""Conformance against the original C darknet's golden outputs (tests/data/golden, from ../shared/golden).

Tolerances: full output vectors within 1e-5 (max abs) on every engine: the trainable network with batchnorm
unfolded as darknet computes it, and the torch and NumPy engines with batchnorm folded into the convolutions
(measured: <= 5e-6 on every golden case); top-5 indices identical. Every layer of tiny within 1e-5 relative to
the layer's scale."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pydarknet
from conftest import (ENGINE_KINDS, REFERENCE_CFG, ZOO_CFG, engine_from_network, golden_array, golden_layer,
                      need_reference, open_engine_kind)

pytestmark = need_reference

GOLDEN_MODELS = ["tiny", "darknet", "darknet19", "extraction", "alexnet", "resnet50", "densenet201"]
TOL = 1e-5


def cases_with_inputs(manifest, model):
    for case in manifest["cases"]:
        if case["model"] != model:
            continue
        for mode in ("predict", "valid"):
            if f"in_{mode}" in case["files"]:
                yield case, mode


def top5(y: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-y, kind="stable")[:5]]


@pytest.mark.parametrize("engine", ENGINE_KINDS)
@pytest.mark.parametrize("model", GOLDEN_MODELS)
@pytest.mark.parametrize("cfg_dir", [REFERENCE_CFG, ZOO_CFG], ids=["darknet-cfg", "our-cfg"])
def test_outputs_match_darknet(manifest, golden_weights, model, engine, cfg_dir):
    """Every engine (the trainable network with batchnorm unfolded, the folded torch engine, the NumPy one)
    on darknet's golden inputs: darknet's outputs within 1e-5 and its top-5."""
    net = open_engine_kind(engine, cfg_dir / f"{model}.cfg", golden_weights(model))
    n = 0
    for case, mode in cases_with_inputs(manifest, model):
        x = golden_array(case["files"][f"in_{mode}"])[None]
        expected = golden_array(case["files"][f"out_{mode}"])
        y = net.infer(x)[0]
        assert y.shape == expected.shape
        assert np.abs(y - expected).max() <= TOL, (case["image"], mode)
        assert top5(y) == [i for i, _ in case[f"top5_{mode}"]], (case["image"], mode)
        n += 1
    assert n > 0


def test_logits_layer_matches(manifest, golden_weights):
    """The layer feeding the softmax, for every golden model with stored inputs."""
    for model in GOLDEN_MODELS:
        net = pydarknet.load_network(REFERENCE_CFG / f"{model}.cfg", golden_weights(model))
        logits_layer = manifest["models"][model]["logits_layer"]
        for case, mode in cases_with_inputs(manifest, model):
            x = torch.from_numpy(golden_array(case["files"][f"in_{mode}"]))[None]
            with torch.inference_mode():
                got = net.forward_all(x)[logits_layer].reshape(-1).numpy()
            want = golden_array(case["files"][f"logits_{mode}"]).reshape(-1)
            scale = max(1.0, float(np.abs(want).max()))
            assert np.abs(got - want).max() <= 1e-5 * scale, (model, case["image"], mode)


def test_every_layer_of_tiny(manifest, golden_weights):
    case = next(c for c in manifest["cases"] if c["model"] == "tiny" and c["image"] == "dog_jpg")
    net = pydarknet.load_network(REFERENCE_CFG / "tiny.cfg", golden_weights("tiny"))
    x = torch.from_numpy(golden_array(case["files"]["in_predict"]))[None]
    with torch.inference_mode():
        outs = net.forward_all(x)
    assert len(outs) == len(case["layers"])
    for layer in case["layers"]:
        want, stride = golden_layer(layer["file"])  # every stride-th value of darknet's layer output
        got = outs[layer["index"]].reshape(-1).numpy()
        assert got.size == int(np.prod(layer["shape"])), layer["index"]
        got = got[::stride]
        assert got.shape == want.shape, layer["index"]
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(got - want).max() <= 1e-5 * scale, (layer["index"], layer["type"])


def test_engines_agree_on_every_zoo_model():
    """Folding batchnorm (the torch and NumPy engines) changes nothing beyond float rounding on any zoo
    architecture: every engine within 1e-5 of the trainable network."""
    torch.manual_seed(0)
    for cfg in sorted(ZOO_CFG.glob("*.cfg")):
        if cfg.stem in ("vgg-16", "resnet152", "resnet101", "alexnet", "darknet53", "darknet19_448"):
            continue  # big ones are covered by the golden models
        net = pydarknet.load_network(cfg)
        x = np.random.default_rng(1).random((1, *net.spec.input_shape), dtype=np.float32)
        want = net.infer(x)
        for kind in ("torch", "numpy"):
            got = engine_from_network(kind, net).infer(x)
            assert np.abs(got - want).max() <= 1e-5, (cfg.stem, kind)
