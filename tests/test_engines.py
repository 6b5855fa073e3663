"""The engines behind one interface (``spec``, ``infer``, ``close``): every kernel table complete against the
spec registry, the engines equal to each other on every layer kind and activation (max abs difference
<= 1e-5), the trainable network always computing from its current parameters, an engine built from a network
knowing when it is stale, and the one-shot CLI never importing PyTorch."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest
import torch

import pydarknet
from conftest import ENGINE_KINDS, ZOO_CFG, engine_from_network
from pydarknet import specs as S
from pydarknet.engines.network import ACTIVATIONS as TORCH_ACT
from pydarknet.engines.network import MODULES
from pydarknet.engines.numpy_infer import ACTIVATIONS as NP_ACT
from pydarknet.engines.numpy_infer import KERNELS
from pydarknet.engines.torch_infer import TorchEngine
from test_oracle import KITCHEN_SINK

ENGINE_TABLES = {"torch network (MODULES)": MODULES, "numpy engine (KERNELS)": KERNELS}


@pytest.mark.parametrize("name", sorted(ENGINE_TABLES))
def test_every_kernel_table_covers_every_spec_kind(name):
    S.check_table(ENGINE_TABLES[name], name)
    assert set(ENGINE_TABLES[name]) == set(S.REGISTRY.values())


def test_a_kind_missing_from_a_table_is_caught(monkeypatch):
    """A kind registered in the specs without a kernel fails the table check, naming the table and the kind."""
    @dataclasses.dataclass(frozen=True)
    class Phantom(S.LayerSpec):
        kind: ClassVar[str] = "phantom"
        names: ClassVar[tuple[str, ...]] = ("phantom",)

    monkeypatch.setitem(S.REGISTRY, "phantom", Phantom)
    for name, table in ENGINE_TABLES.items():
        with pytest.raises(AssertionError, match=r"no entry for phantom"):
            S.check_table(table, name)
    assert S.section_aliases()["phantom"] == "phantom"  # the cfg reader knows it from the registry alone


def test_cfg_section_names_come_from_the_registry():
    aliases = S.section_aliases()
    for kind, cls in S.REGISTRY.items():
        assert all(aliases[name] == kind for name in cls.names)
    assert aliases["network"] == aliases["net"] == "net"


@pytest.mark.parametrize("name", sorted(NP_ACT))
def test_activations_equal(name):
    x = np.linspace(-30, 30, 2001, dtype=np.float32)
    np.testing.assert_allclose(NP_ACT[name](x), TORCH_ACT[name](torch.from_numpy(x)).numpy(), rtol=1e-5,
                               atol=1e-6)


def random_net(cfg, seed=0):
    """darknet's initialisation with random batchnorm statistics, the layer before the softmax scaled by a power
    of two so that the logits' std is about 3 on random inputs (random residual networks otherwise saturate
    their softmax to one-hot, where float rounding decides the outputs; see benchmarks/forward.py)."""
    torch.manual_seed(seed)
    net = pydarknet.load_network(cfg)
    with torch.no_grad():
        for layer in net.layers.values():
            if hasattr(layer, "rolling_mean"):
                layer.rolling_mean.normal_(0, 0.05)
                layer.rolling_variance.uniform_(0.5, 1.5)
                layer.scales.uniform_(0.5, 1.5)
        spec = net.spec
        x = torch.rand(2, *spec.input_shape, generator=torch.Generator().manual_seed(seed))
        std = float(net.forward_logits(x).std())
        last = [s for s in spec.layers if s.units and s.index < spec.softmax_index][-1]
        layer = net.layers[f"{last.index}_{last.kind}"]
        k = 2.0 ** round(np.log2(3.0 / max(std, 1e-30)))
        for name in (("scales", "biases") if last.has_batchnorm else ("weights", "biases")):
            getattr(layer, name).mul_(k)
    return net


@pytest.mark.parametrize("cfg_name", ["sink", "squeezenet", "resnet18", "resnext50", "vgg-16"])
def test_engines_equal_each_other(cfg_name, tmp_path):
    if cfg_name == "sink":
        cfg = tmp_path / "sink.cfg"
        cfg.write_text(KITCHEN_SINK.replace("layers=-1,-2,-1\n", "layers=-1,-2,-1\n[batchnorm]\n"))
    else:
        cfg = ZOO_CFG / f"{cfg_name}.cfg"
    net = random_net(cfg)
    x = np.random.default_rng(1).random((2, *net.spec.input_shape), dtype=np.float32)
    want = engine_from_network("numpy", net).infer(x)  # folded, in plain NumPy float32
    for kind in ENGINE_KINDS:
        engine = engine_from_network(kind, net)
        assert engine.spec is net.spec
        assert np.abs(engine.infer(x) - want).max() <= 1e-5, kind
        engine.close()


def test_resized_fully_convolutional_network_on_every_engine():
    """Another input size runs that size's specs (darknet's resize_network), folded or not."""
    net = random_net(ZOO_CFG / "darknet.cfg")
    x = np.random.default_rng(2).random((1, 3, 160, 192), dtype=np.float32)
    want = net.infer(x)
    for kind in ("torch", "numpy"):
        assert np.abs(engine_from_network(kind, net).infer(x) - want).max() <= 1e-5, kind


def test_network_computes_from_its_current_parameters():
    """load_state_dict, in-place edits and .to() take effect at once (the first version kept folded kernels
    from load time: 'every key matched', but the output did not move)."""
    torch.manual_seed(0)
    cfg = ZOO_CFG / "fashion.cfg"
    net = pydarknet.load_network(cfg)
    other = random_net(cfg, seed=5)
    x = torch.rand(2, *net.spec.input_shape)
    with torch.no_grad():
        before = net(x)
        net.load_state_dict(other.state_dict())
        after = net(x)
        assert (after - before).abs().max() > 1e-3
        assert torch.equal(after, other(x))
        layer = net.layers["0_convolutional"]
        layer.weights.mul_(0.5)
        assert (net(x) - after).abs().max() > 1e-4
        layer.weights.mul_(2.0)
        assert torch.allclose(net(x), after)
        assert torch.allclose(net.double()(x.double()).float(), after, atol=1e-6)
    net.float()


def test_engine_from_network_is_a_snapshot_that_knows_when_it_is_stale():
    net = random_net(ZOO_CFG / "fashion.cfg")
    engine = TorchEngine.from_network(net)
    x = np.random.default_rng(3).random((2, *net.spec.input_shape), dtype=np.float32)
    first = engine.infer(x)
    assert not engine.is_stale()
    with torch.no_grad():
        net.layers["0_convolutional"].biases.add_(1.0)
    assert engine.is_stale()
    assert np.array_equal(engine.infer(x), first)  # the engine itself never changes
    assert np.abs(TorchEngine.from_network(net).infer(x) - net.infer(x)).max() <= 1e-5
    net.load_state_dict(random_net(ZOO_CFG / "fashion.cfg", seed=9).state_dict())
    assert TorchEngine.from_network(net).is_stale() is False


def test_classifier_follows_its_model(tmp_path):
    """pydarknet.load(...).model is the trainable network; editing it changes what predict answers."""
    clf = pydarknet.load("fashion")
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    before = clf.probabilities(images)
    other = random_net(ZOO_CFG / "fashion.cfg", seed=11)
    clf.model.load_state_dict(other.state_dict())
    after = clf.probabilities(images)
    assert np.abs(after - before).max() > 1e-3
    assert np.abs(after - engine_from_network("torch", other).infer(np.stack([clf.prepare(i) for i in images]))
                  ).max() <= 1e-6


def test_opening_an_engine_leaves_the_process_alone():
    """Process tuning (flush-denormal, the allocator) is pydarknet.tune_process(), called by the command."""
    code = ("import torch, pydarknet; torch.set_flush_denormal(False); "
            "e = pydarknet.open_engine(pydarknet.zoo_cfg('tiny')); "
            "import pydarknet.tuning as t; print(t._ALLOCATOR_TUNED, (torch.tensor([1e-30]) * 1e-10).item() != 0.0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_cli_one_shot_does_not_import_torch(tmp_path):
    net = random_net(ZOO_CFG / "tiny.cfg")
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
