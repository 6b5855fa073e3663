"""The NumPy one-shot engine: darknet's golden outputs, and equal to the PyTorch engine on every layer kind
and activation (max abs difference <= 1e-5)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import pydarknet
from conftest import GOLDEN, REFERENCE_CFG, ZOO_CFG, need_shared
from pydarknet.npengine import ACTIVATIONS as NP_ACT
from pydarknet.npengine import NumpyNetwork, load_numpy_network
from pydarknet.layers import ACTIVATION_FUNCTIONS as TORCH_ACT
from test_oracle import KITCHEN_SINK


@need_shared
@pytest.mark.parametrize("model", ["tiny", "darknet", "darknet19", "extraction", "alexnet", "resnet50",
                                   "densenet201"])
def test_numpy_engine_matches_darknet(model, manifest, golden_weights):
    net = load_numpy_network(REFERENCE_CFG / f"{model}.cfg", golden_weights(model))
    for case in (c for c in manifest["cases"] if c["model"] == model):
        for mode in ("predict", "valid"):
            if f"in_{mode}" not in case["files"]:
                continue
            y = net(np.load(GOLDEN / case["files"][f"in_{mode}"])[None])[0]
            assert np.abs(y - np.load(GOLDEN / case["files"][f"out_{mode}"])).max() <= 1e-5
            assert list(np.argsort(-y, kind="stable")[:5]) == [i for i, _ in case[f"top5_{mode}"]]


@pytest.mark.parametrize("name", sorted(NP_ACT))
def test_activations_equal(name):
    x = np.linspace(-30, 30, 2001, dtype=np.float32)
    np.testing.assert_allclose(NP_ACT[name](x), TORCH_ACT[name](torch.from_numpy(x)).numpy(), rtol=1e-5,
                               atol=1e-6)


def _random_net(cfg, seed=0):
    torch.manual_seed(seed)
    net = pydarknet.load_network(cfg, fuse=False)
    with torch.no_grad():
        for layer in net.layers.values():
            if hasattr(layer, "rolling_mean"):
                layer.rolling_mean.normal_(0, 0.05)
                layer.rolling_variance.uniform_(0.5, 1.5)
                layer.scales.uniform_(0.5, 1.5)
    return net


@pytest.mark.parametrize("cfg_name", ["sink", "squeezenet", "resnet18", "resnext50", "vgg-16"])
def test_numpy_equals_torch(cfg_name, tmp_path):
    if cfg_name == "sink":
        cfg = tmp_path / "sink.cfg"
        cfg.write_text(KITCHEN_SINK.replace("layers=-1,-2,-1\n", "layers=-1,-2,-1\n[batchnorm]\n"))
    else:
        cfg = ZOO_CFG / f"{cfg_name}.cfg"
    net = _random_net(cfg)
    x = np.random.default_rng(1).random((2, *net.spec.input_shape), dtype=np.float32)
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).numpy()
    got = NumpyNetwork(net.spec, net.darknet_params())(x)
    assert np.abs(got - want).max() <= 1e-5


def test_cli_one_shot_does_not_import_torch(tmp_path):
    net = _random_net(ZOO_CFG / "tiny.cfg")
    weights = tmp_path / "t.weights"
    net.save_weights(weights)
    from PIL import Image
    img = tmp_path / "i.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(img)
    code = ("import sys, runpy; sys.argv=['pydarknet','classify',%r,%r,%r];"
            "from pydarknet.cli import main; rc=main(); print('torch' in sys.modules); sys.exit(rc)"
            % (str(ZOO_CFG / "tiny.cfg"), str(weights), str(img)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "False"  # PyTorch never imported
    r2 = subprocess.run([sys.executable, "-m", "pydarknet", "classify", str(ZOO_CFG / "tiny.cfg"), str(weights),
                         str(img), "--engine", "torch"], capture_output=True, text=True)
    assert r2.stdout.splitlines() == lines[:-1]
