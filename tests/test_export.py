"""ONNX export and PyTorch state dicts (pydarknet.onnx, pydarknet.statedict).

ONNX: every zoo cfg exports, passes onnx.checker, and ONNX Runtime reproduces pydarknet within 1e-5 (max abs,
on softmax outputs) with identical top-5, on darknet's golden input tensors where the model has them (else a
fixed random batch). Weights: mkweights (tests/data/golden) on darknet's reference cfg (the golden manifest's
seed and peak; seed 7 and a peak from PEAKS for the others), or, for cfgs without a reference, pydarknet's own
initialisation under torch.manual_seed with random batchnorm statistics. Darknet's odd corners (maxpool padding, shortcuts
between maps of different size and depth, crop, batchnorm layers, grouped softmax, every activation) are
checked on small synthetic cfgs.

State dicts: names are net.state_dict()'s; cfg -> .safetensors/.pt -> a fresh net gives identical outputs and
a byte-identical darknet weights file; mismatches fail with a DarknetError naming the first one."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pydarknet
from conftest import GOLDEN, MKWEIGHTS, REFERENCE_CFG, ZOO_CFG, golden_array
from pydarknet.errors import DarknetError
from pydarknet.onnx import export_onnx
from pydarknet.statedict import export_state_dict, load_state_dict_into, read_state_dict
from pydarknet.specs import ACTIVATIONS

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
HAVE_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx / onnxruntime not installed (pip install '.[onnx]')")
needs_safetensors = pytest.mark.skipif(not HAVE_SAFETENSORS, reason="safetensors not installed")

TOL = 1e-5
BIG = {"vgg-16", "resnet152", "resnet101", "darknet53", "alexnet", "darknet19_448"}
ZOO_MODELS = sorted(p.stem for p in ZOO_CFG.glob("*.cfg"))
#: mkweights --peak (seed 7) for reference cfgs the golden manifest has no weights for: the last layer scaled
#: so that the logits' std is about 10 on random inputs (a softmax with clear gaps between the top 6).
PEAKS = {"vgg-16": 3.7, "resnet18": 0.4, "resnet34": 0.0076, "resnet101": 1.4e-7, "resnet152": 1.8e-11,
         "resnext50": 0.006, "darknet53": 6e-5, "darknet19_448": 2.8}
#: every operator an exported zoo model may use
ZOO_OPS = {"Conv", "Relu", "LeakyRelu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm", "Softmax", "Concat",
           "Add", "Slice", "Pad", "Mul", "Sub", "Constant", "Clip"}


def _manifest() -> dict | None:
    path = GOLDEN / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _top5(y: np.ndarray) -> np.ndarray:
    return np.argsort(-y, axis=1, kind="stable")[:, :5]


def _randomize_bn(net: pydarknet.Network, seed: int) -> pydarknet.Network:
    """Seeded biases and batchnorm statistics (darknet's init leaves them 0/1, which folds trivially)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.layers.values():
            if isinstance(getattr(m, "biases", None), torch.nn.Parameter):
                m.biases.copy_(torch.randn(m.biases.shape, generator=gen) * 0.1)
            if hasattr(m, "rolling_mean"):
                n = m.rolling_mean.numel()
                m.scales.copy_(torch.rand(n, generator=gen) + 0.5)
                m.rolling_mean.copy_(torch.randn(n, generator=gen) * 0.05)
                m.rolling_variance.copy_(torch.rand(n, generator=gen) + 0.5)
    return net


def seeded_net(cfg, seed: int = 0) -> pydarknet.Network:
    """pydarknet's own (darknet) initialisation under torch.manual_seed, plus random batchnorm statistics."""
    torch.manual_seed(seed)
    return _randomize_bn(pydarknet.load_network(cfg), seed)


@pytest.fixture(scope="session")
def zoo_net(request, tmp_path_factory):
    """model name -> (Network of the zoo cfg with its test weights, how they were made)."""
    cache = Path(os.environ.get("PYDARKNET_TEST_CACHE") or tmp_path_factory.mktemp("export_weights"))
    cache.mkdir(parents=True, exist_ok=True)
    manifest = _manifest()

    def make(model: str):
        cfg = ZOO_CFG / f"{model}.cfg"
        if manifest is not None and model in manifest["models"] and (REFERENCE_CFG / f"{model}.cfg").is_file():
            weights = request.getfixturevalue("golden_weights")(model)  # sha256-checked
            mk = manifest["models"][model]["mkweights"]
            return pydarknet.load_network(cfg, weights), f"mkweights seed {mk['seed']} peak {mk['peak']}"
        if model in PEAKS and (REFERENCE_CFG / f"{model}.cfg").is_file() and MKWEIGHTS.is_file():
            weights = cache / f"{model}.export-s7-p{PEAKS[model]}.weights"
            if not weights.is_file():
                tmp = weights.with_name(weights.name + f".{os.getpid()}.tmp")
                subprocess.run([sys.executable, str(MKWEIGHTS), str(REFERENCE_CFG / f"{model}.cfg"), str(tmp),
                                "--seed", "7", "--peak", str(PEAKS[model])], check=True, capture_output=True)
                os.replace(tmp, weights)
            return pydarknet.load_network(cfg, weights), f"mkweights seed 7 peak {PEAKS[model]}"
        return seeded_net(cfg, 0), "pydarknet init, torch.manual_seed(0)"

    return make


def check_inputs(model: str, shape) -> tuple[torch.Tensor, str]:
    """darknet's golden input tensors for the model (predict and valid paths), else a fixed random batch."""
    manifest = _manifest()
    xs, cases = [], []
    for case in (manifest or {}).get("cases", []):
        if case["model"] != model:
            continue
        for mode in ("predict", "valid"):
            f = case["files"].get(f"in_{mode}")
            if f:
                x = golden_array(f)
                if tuple(x.shape) == tuple(shape):
                    xs.append(x)
                    cases.append((case, mode))
    if xs:
        return torch.from_numpy(np.stack(xs)), cases
    return torch.rand((2,) + tuple(shape), generator=torch.Generator().manual_seed(1234)), []


def ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(2, torch.get_num_threads()))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------------
# ONNX: the zoo


@needs_onnx
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in BIG else m for m in ZOO_MODELS])
def test_onnx_parity_on_zoo(model, zoo_net, tmp_path, record_property):
    import onnx

    net, made = zoo_net(model)
    x, cases = check_inputs(model, net.spec.input_shape)
    path = tmp_path / f"{model}.onnx"
    report = export_onnx(net, path, inputs=x)
    assert report["checked"] and report["images_checked"] == x.shape[0] + 2
    assert report["max_abs_diff"] <= TOL and report["top5_same"] and report["top5_tie_swaps"] == 0
    assert report["file_bytes"] == path.stat().st_size

    # and independently of export_onnx's own check
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert ops <= ZOO_OPS, ops - ZOO_OPS
    producers = {o: n for n in graph.node for o in n.output}
    for n in graph.node:  # darknet's maxpool padding lives in MaxPool's pads, not in a Pad before it
        if n.op_type == "MaxPool":
            assert getattr(producers.get(n.input[0]), "op_type", None) != "Pad"
    y = ort_session(path).run(["output"], {"input": x.numpy()})[0]
    with torch.inference_mode():
        ours = net(x).numpy()
    diff = float(np.abs(y - ours).max())
    assert y.shape == (x.shape[0], net.spec.outputs)
    assert diff <= TOL
    assert (_top5(y) == _top5(ours)).all()
    for (case, mode), row in zip(cases, y):  # the ONNX model ranks as darknet itself did
        assert _top5(row[None])[0].tolist() == [i for i, _ in case[f"top5_{mode}"]], (case["image"], mode)
    top6 = np.sort(ours, axis=1)[:, ::-1][:, :6]
    gap = float((-np.diff(top6, axis=1) / top6[:, 1:]).min())  # relative gap between neighbours in the top 6
    for key, value in {"weights": made, "inputs": "golden" if cases else "random", "images": x.shape[0],
                       "max_abs_diff": diff, "min_top6_rel_gap": gap, "file_bytes": report["file_bytes"],
                       "nodes": report["nodes"], "export_s": round(report["seconds"], 2)}.items():
        record_property(key, value)
    print(f"\nONNX {model}: {made}; {'golden' if cases else 'random'} inputs x{x.shape[0]}; max abs diff {diff:.3g}; "
          f"top-5 same; min relative top-6 gap {gap:.3g}; {report['nodes']} nodes {sorted(report['ops'])}; "
          f"{report['file_bytes'] / 2**20:.1f} MiB; export+check {report['seconds']:.1f}s")


# ---------------------------------------------------------------------------------------------------------
# ONNX: darknet's corners, on small synthetic cfgs

#: odd maxpool paddings (folded into MaxPool pads; one whose windows lie wholly in the padding), shortcuts
#: between maps of other depth (both ways), size (strided and sampled) and alpha/beta, a crop, a batchnorm
#: layer, connected with batchnorm, dropout, a grouped softmax with a temperature, and a cost layer.
CORNERS_CFG = """[net]
width=15
height=15
channels=3

[crop]
crop_height=13
crop_width=13

[convolutional]
filters=8
size=3
stride=1
pad=1
batch_normalize=1
activation=leaky

[maxpool]
size=2
stride=2

[maxpool]
size=3
stride=1
padding=2

[convolutional]
filters=16
size=1
stride=1
batch_normalize=1
activation=mish

[shortcut]
from=-3
alpha=0.5
beta=2

[convolutional]
filters=4
size=3
stride=2
pad=1
activation=swish

[shortcut]
from=-3
activation=logistic

[convolutional]
filters=6
size=1
activation=tanh

[convolutional]
filters=3
size=1
stride=2
activation=relu6

[route]
layers=-2

[shortcut]
from=-2
alpha=1.5
beta=0.5
activation=elu

[batchnorm]

[route]
layers=-1,-5

[maxpool]
size=2
stride=1
padding=4

[maxpool]
size=3
stride=3
padding=0

[connected]
output=20
batch_normalize=1
activation=leaky

[dropout]
probability=0.3

[connected]
output=12
activation=linear

[softmax]
groups=3
temperature=2

[cost]
"""


@pytest.fixture
def corners_cfg(tmp_path) -> Path:
    p = tmp_path / "corners.cfg"
    p.write_text(CORNERS_CFG)
    return p


@needs_onnx
@pytest.mark.parametrize("batch", ["dynamic", 2])
def test_onnx_darknet_corners(corners_cfg, tmp_path, batch):
    import onnx

    net = seeded_net(corners_cfg, 3)
    x = torch.rand(5, 3, 15, 15, generator=torch.Generator().manual_seed(5))
    report = export_onnx(net, tmp_path / "c.onnx", inputs=x, batch=batch)
    assert report["max_abs_diff"] <= TOL and report["top5_same"]
    graph = onnx.load(str(tmp_path / "c.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    pools = [n for n in graph.node if n.op_type == "MaxPool"]
    pads = [next((list(a.ints) for a in n.attribute if a.name == "pads"), [0, 0, 0, 0]) for n in pools]
    assert pads[:2] == [[0, 0, 1, 1], [1, 1, 1, 1]]  # darknet's -padding/2 offset, as MaxPool pads
    fed_by_pad = [getattr(producers.get(n.input[0]), "op_type", None) == "Pad" for n in pools]
    assert fed_by_pad == [False, False, True, False]  # only where windows lie wholly in the padding
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == (["N", 3, 15, 15] if batch == "dynamic" else [2, 3, 15, 15])
    session = ort_session(tmp_path / "c.onnx")
    for n in ((1, 3, 7) if batch == "dynamic" else (2,)):
        xb = torch.rand(n, 3, 15, 15, generator=torch.Generator().manual_seed(n))
        with torch.inference_mode():
            assert np.abs(session.run(None, {"input": xb.numpy()})[0] - net(xb).numpy()).max() <= TOL


@needs_onnx
def test_onnx_local_layer(tmp_path):
    """darknet's [local] layer exports as plain slices, a batched MatMul and an Add (no per-kind export code:
    the network's own forward is traced)."""
    cfg = tmp_path / "local.cfg"
    cfg.write_text("[net]\nwidth=11\nheight=9\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
                   "batch_normalize=1\nactivation=leaky\n[local]\nfilters=5\nsize=3\nstride=2\npad=1\n"
                   "activation=leaky\n[local]\nfilters=3\nsize=2\nactivation=linear\n[connected]\noutput=8\n"
                   "activation=linear\n[softmax]\n")
    net = seeded_net(cfg, 2)
    with torch.no_grad():
        for name in ("1_local", "2_local"):
            net.layers[name].weights.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
            net.layers[name].biases.normal_(0, 0.1, generator=torch.Generator().manual_seed(4))
    report = export_onnx(net, tmp_path / "l.onnx", inputs=torch.rand(4, 3, 9, 11))
    assert report["checked"] and report["max_abs_diff"] <= TOL and report["top5_same"]
    assert "MatMul" in report["ops"]


@needs_onnx
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_every_activation(activation, tmp_path):
    cfg = tmp_path / "act.cfg"
    cfg.write_text(f"[net]\nwidth=9\nheight=9\nchannels=3\n\n[convolutional]\nfilters=6\nsize=3\npad=1\n"
                   f"batch_normalize=1\nactivation={activation}\n\n[maxpool]\nsize=2\nstride=2\n\n"
                   f"[connected]\noutput=10\nactivation={activation}\n")
    net = seeded_net(cfg, 1)
    x = torch.rand(32, 3, 9, 9, generator=torch.Generator().manual_seed(2)) * 4 - 2
    report = export_onnx(net, tmp_path / "a.onnx", inputs=x)
    # no softmax: the outputs are unbounded, so the allowed difference is 1e-5 of the largest output
    assert report["max_abs_diff"] <= TOL * max(1.0, report["output_scale"])
    assert report["top5_same"] or activation in ("tanh", "hardtan", "lhtan", "relu6", "stair", "plse")  # ties


@needs_onnx
def test_export_leaves_the_network_as_it_was(tmp_path):
    net = seeded_net(ZOO_CFG / "tiny.cfg", 4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        y0 = net(x)
    export_onnx(net, tmp_path / "t.onnx")
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with torch.inference_mode():
        assert torch.equal(net(x), y0)
    net.train()  # a network in training mode is checked in eval mode and left in training mode
    export_onnx(net, tmp_path / "t.onnx")
    assert net.training


@needs_onnx
@pytest.mark.parametrize("opset", [13, 17, 20])
def test_onnx_opsets_and_metadata(opset, tmp_path):
    import onnx

    net = seeded_net(ZOO_CFG / "tiny.cfg", 5)
    images = [np.random.default_rng(0).random((3, 224, 224), dtype=np.float32), torch.rand(1, 3, 224, 224)]
    report = export_onnx(net, tmp_path / "t.onnx", opset=opset, batch=3, inputs=images)  # checked in 3s + padding
    model = onnx.load(str(tmp_path / "t.onnx"))
    assert report["opset"] == opset and report["batch"] == 3 and "dynamo=False" in report["exporter"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == opset
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["darknet_cfg"] == (ZOO_CFG / "tiny.cfg").read_text() and meta["input_shape"] == "3,224,224"
    assert model.producer_name == "pydarknet"
    assert report["max_abs_diff"] <= TOL and report["images_checked"] == 5
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 224, 224]


@needs_onnx
def test_onnx_failures_write_nothing(tmp_path):
    net = seeded_net(ZOO_CFG / "tiny.cfg", 6)
    out = tmp_path / "t.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(DarknetError, match="disagrees.*nothing written"):
        export_onnx(net, out, tolerance=-1.0)
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["t.onnx"]
    with pytest.raises(DarknetError, match="directory does not exist"):
        export_onnx(net, tmp_path / "nowhere" / "t.onnx", check=False)
    with pytest.raises(DarknetError, match="batch"):
        export_onnx(net, out, batch=0)
    with pytest.raises(DarknetError, match="opset"):
        export_onnx(net, out, opset=11)
    with pytest.raises(DarknetError, match=r"\(3, 224, 224\)"):
        export_onnx(net, out, inputs=torch.rand(2, 3, 100, 100))
    with pytest.raises(DarknetError, match="Network"):
        export_onnx(torch.nn.Linear(2, 2), out)
    report = export_onnx(net, out, check=False)  # unchecked: still onnx.checker, no runtime
    assert report["checked"] is False and report["max_abs_diff"] is None and out.stat().st_size > 4_000_000


# ---------------------------------------------------------------------------------------------------------
# state dicts

FORMATS = [pytest.param("safetensors", marks=needs_safetensors), "pt"]


@pytest.fixture(params=["tiny", "corners"])
def source(request, tmp_path, corners_cfg, zoo_net):
    """(cfg, darknet weights file, the network loaded from it)."""
    if request.param == "tiny":
        cfg, (net, _) = ZOO_CFG / "tiny.cfg", zoo_net("tiny")  # mkweights where darknet's cfgs are installed
    else:
        cfg, net = corners_cfg, seeded_net(corners_cfg, 7)
    weights = tmp_path / "src.weights"
    net.save_weights(weights)
    return cfg, weights, pydarknet.load_network(cfg, weights)


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_round_trip(fmt, source, tmp_path):
    cfg, weights, net = source
    path = tmp_path / f"sd.{fmt}"
    report = export_state_dict(net, path)
    assert report["format"] == fmt and report["tensors"] == len(net.state_dict())
    assert report["params"] >= net.spec.num_params and report["file_bytes"] == path.stat().st_size

    tensors, meta = read_state_dict(path)
    first_conv = next(s.index for s in net.spec.layers if s.kind == "convolutional")
    assert sorted(tensors) == sorted(net.state_dict()) and f"layers.{first_conv}_convolutional.weights" in tensors
    for k, v in net.state_dict().items():
        assert tensors[k].dtype == torch.float32 and torch.equal(tensors[k], v), k
    if fmt == "safetensors":
        assert meta["darknet_cfg"] == Path(cfg).read_text() and meta["darknet_cfg_name"] == Path(cfg).name
    else:
        assert meta == {}

    fresh = pydarknet.load_network(cfg)  # random weights
    assert load_state_dict_into(fresh, path) is fresh
    x = torch.rand(3, *net.spec.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(fresh(x), net(x))  # the same weights: the same numbers, at once
    fresh.save_weights(tmp_path / "back.weights")
    assert (tmp_path / "back.weights").read_bytes() == weights.read_bytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict_loads_in_plain_pytorch(fmt, tmp_path):
    """What a PyTorch user without pydarknet's loader does: torch.load / safetensors, then load_state_dict."""
    net = seeded_net(ZOO_CFG / "tiny.cfg", 8)
    path = tmp_path / f"sd.{fmt}"
    export_state_dict(net, path)
    if fmt == "pt":
        sd = torch.load(path, weights_only=True)  # a plain dict of tensors: no pickled classes
        assert type(sd) is dict
    else:
        from safetensors.torch import load_file

        sd = load_file(path)
    other = pydarknet.load_network(ZOO_CFG / "tiny.cfg")
    other.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(other(x), net(x))


@needs_safetensors
def test_safetensors_keeps_the_darknet_header(tmp_path):
    net = seeded_net(ZOO_CFG / "tiny.cfg", 9)
    net.save_weights(tmp_path / "a.weights", seen=1234567)
    src = pydarknet.load_network(ZOO_CFG / "tiny.cfg", tmp_path / "a.weights")
    export_state_dict(src, tmp_path / "a.safetensors")
    fresh = load_state_dict_into(pydarknet.load_network(ZOO_CFG / "tiny.cfg"), tmp_path / "a.safetensors")
    assert fresh.header.seen == 1234567
    fresh.save_weights(tmp_path / "b.weights")
    assert (tmp_path / "b.weights").read_bytes() == (tmp_path / "a.weights").read_bytes()


def _tampered(tmp_path, change) -> tuple[pydarknet.Network, Path]:
    net = pydarknet.load_network(ZOO_CFG / "tiny.cfg")
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    change(sd)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    return pydarknet.load_network(ZOO_CFG / "tiny.cfg"), path


@pytest.mark.parametrize("change, match, layer", [
    (lambda sd: sd.pop("layers.4_convolutional.scales"),
     r"'layers\.4_convolutional\.scales' \(16,\) is missing", 4),
    (lambda sd: sd.__setitem__("layers.2_convolutional.weights", torch.zeros(32, 16, 3, 1)),
     r"'layers\.2_convolutional\.weights' has shape \(32, 16, 3, 1\), tiny\.cfg needs \(32, 16, 3, 3\)", 2),
    (lambda sd: sd.__setitem__("layers.5_convolutional.extra", torch.zeros(3)),
     r"unexpected tensor 'layers\.5_convolutional\.extra' \(3,\): tiny\.cfg has no such parameter", 5),
    (lambda sd: sd["layers.0_convolutional.biases"].__setitem__(3, float("nan")), r"1 NaN/Inf", 0),
    (lambda sd: sd.__setitem__("layers.0_convolutional.biases", torch.zeros(16, dtype=torch.int32)),
     "not floating point", 0),
    (lambda sd: (sd.pop("layers.9_convolutional.biases"), sd.pop("layers.7_convolutional.biases")),
     r"'layers\.7_convolutional\.biases' .* is missing .*\(and 1 more mismatch\)", 7),
])
def test_state_dict_mismatch_names_the_first(tmp_path, change, match, layer):
    net, path = _tampered(tmp_path, change)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(DarknetError, match=match) as e:
        load_state_dict_into(net, path)
    assert e.value.layer == layer and e.value.path == str(path) and f"layer {layer}:" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing loaded


def test_state_dict_of_another_cfg(tmp_path):
    export_state_dict(pydarknet.load_network(ZOO_CFG / "resnet18.cfg"), tmp_path / "r18.pt")
    r34 = pydarknet.load_network(ZOO_CFG / "resnet34.cfg")
    with pytest.raises(DarknetError, match=r"another cfg than resnet34\.cfg") as e:
        load_state_dict_into(r34, tmp_path / "r18.pt")
    a, b = pydarknet.load_network(ZOO_CFG / "resnet18.cfg").state_dict(), r34.state_dict()
    first = next(k for k in b if k not in a or a[k].shape != b[k].shape)  # layers run in order, as darknet's
    assert f"'{first}'" in str(e.value) and "more mismatches" in str(e.value)


def test_state_dict_bad_files(tmp_path):
    net = pydarknet.load_network(ZOO_CFG / "tiny.cfg")
    with pytest.raises(DarknetError, match="no such state dict file"):
        load_state_dict_into(net, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a state dict at all")
    with pytest.raises(DarknetError, match="neither a safetensors file nor a torch.save file"):
        load_state_dict_into(net, tmp_path / "junk.pt")
    torch.save({"layers.0_convolutional.biases": 1.0}, tmp_path / "float.pt")
    with pytest.raises(DarknetError, match="is a float, not a tensor"):
        load_state_dict_into(net, tmp_path / "float.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(DarknetError, match="holds a list"):
        load_state_dict_into(net, tmp_path / "list.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled class: refused, never unpickled
    with pytest.raises(DarknetError, match="weights_only"):
        load_state_dict_into(net, tmp_path / "module.pt")
    with pytest.raises(DarknetError, match="name the file .safetensors or .pt"):
        export_state_dict(net, tmp_path / "sd.bin")
    with pytest.raises(DarknetError, match="directory does not exist"):
        export_state_dict(net, tmp_path / "nowhere" / "sd.pt")
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, buf)  # a training checkpoint: its state_dict
    (tmp_path / "ckpt.pt").write_bytes(buf.getvalue())
    load_state_dict_into(net, tmp_path / "ckpt.pt")


def test_cli_export_and_import(tmp_path, capsys):
    """`pydarknet export CFG WEIGHTS out.onnx --state-dict x.safetensors` and `pydarknet import` back."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("safetensors")
    from pydarknet.cli import main

    weights = tmp_path / "t.weights"
    assert main(["init", "tiny", str(weights), "--seed", "3"]) == 0
    onnx_path, sd = tmp_path / "t.onnx", tmp_path / "t.safetensors"
    assert main(["export", "tiny", str(weights), str(onnx_path), "--state-dict", str(sd)]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime agrees" in out and onnx_path.is_file() and sd.is_file()
    back = tmp_path / "back.weights"
    assert main(["import", "tiny", str(sd), str(back)]) == 0
    assert back.read_bytes() == weights.read_bytes()
    assert main(["export", "fashion", str(tmp_path / "f.onnx")]) == 0  # bundled zoo model, no weights argument
    assert main(["export", "tiny", str(weights)]) == 2  # nothing to write
