"""Live oracle: the C darknet (Debian's libdarknet.so) reads weights that *we* wrote and must give our
outputs on the same input tensors. Skips where libdarknet is not installed (CI installs it).

Tolerance: max abs difference of the output vectors <= 1e-5 (float32 summation order differs), top-5 same.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pydarknet
from cdarknet import CDarknet, find_library
from conftest import ENGINE_KINDS, ZOO_CFG, open_engine_kind

pytestmark = pytest.mark.skipif(find_library() is None, reason="C darknet (libdarknet.so) not installed")

# Every layer kind and darknet rule the classifiers use, in one small network: odd sizes through default
# maxpool padding, explicit padding, strided and channel-truncated shortcuts, grouped convolutions, a
# three-way route, each of darknet's own activations, connected with batchnorm, dropout,
# a centred crop, grouped softmax with a temperature and a cost layer.
KITCHEN_SINK = """[net]
width=64
height=48
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=8
size=3
stride=2
pad=1
activation=relu
[shortcut]
from=-2
activation=linear
[convolutional]
batch_normalize=1
filters=16
groups=4
size=3
pad=1
activation=elu
[shortcut]
from=-4
activation=leaky
[maxpool]
size=3
stride=2
padding=1
[convolutional]
filters=6
size=1
activation=logistic
[route]
layers=-1,-2,-1
[convolutional]
filters=12
size=1
activation=ramp
[convolutional]
filters=12
size=1
activation=tanh
[convolutional]
filters=12
size=1
activation=plse
[convolutional]
filters=12
size=1
activation=relie
[convolutional]
filters=12
size=1
activation=hardtan
[convolutional]
filters=12
size=1
activation=lhtan
[convolutional]
filters=12
size=1
activation=loggy
[convolutional]
filters=12
size=1
activation=selu
[convolutional]
filters=12
size=1
activation=stair
[local]
filters=5
size=3
stride=1
pad=1
activation=leaky
[local]
filters=3
size=2
stride=1
activation=linear
[crop]
crop_height=5
crop_width=7
[maxpool]
size=3
stride=1
[connected]
batch_normalize=1
output=40
activation=leaky
[dropout]
probability=0.3
[connected]
output=20
activation=linear
[softmax]
groups=2
temperature=0.7
[cost]
"""


def compare(cfg, tmp_path, seed=0, inputs=2, engines=ENGINE_KINDS):
    """Our weights (darknet's init, random batchnorm statistics and biases) through the C darknet and through
    each of our engines, reading the file we wrote: max abs difference <= 1e-5 and the same top-5."""
    torch.manual_seed(seed)
    ours = pydarknet.load_network(cfg)
    with torch.no_grad():  # non-trivial batchnorm statistics and biases
        for layer in ours.layers.values():
            if hasattr(layer, "rolling_mean"):
                layer.rolling_mean.normal_(0, 0.05)
                layer.rolling_variance.uniform_(0.5, 1.5)
                layer.scales.uniform_(0.5, 1.5)
            if isinstance(getattr(layer, "biases", None), torch.nn.Parameter):
                layer.biases.normal_(0, 0.1)
    weights = tmp_path / "ours.weights"
    ours.save_weights(weights)
    theirs = CDarknet(str(cfg), str(weights))
    worst = 0.0
    try:
        for kind in engines:
            engine = open_engine_kind(kind, cfg, weights)  # through our reader
            rng = np.random.default_rng(seed)
            for _ in range(inputs):
                x = rng.random(engine.spec.input_shape, dtype=np.float32)
                want = theirs.predict(x)
                got = engine.infer(x[None])[0]
                assert got.shape == want.shape
                worst = max(worst, float(np.abs(got - want).max()))
                assert np.array_equal(np.argsort(-got, kind="stable")[:5], np.argsort(-want, kind="stable")[:5]), kind
                assert worst <= 1e-5, (kind, worst)
    finally:
        theirs.close()
    return worst


def test_every_layer_kind_against_darknet(tmp_path):
    cfg = tmp_path / "sink.cfg"
    cfg.write_text(KITCHEN_SINK)
    compare(cfg, tmp_path, inputs=4)


@pytest.mark.parametrize("model", ["tiny", "darknet", "squeezenet", "resnet18", "resnext50", "darknet53"])
def test_zoo_models_against_darknet(model, tmp_path):
    compare(ZOO_CFG / f"{model}.cfg", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["alexnet", "vgg-16", "extraction", "darknet19", "resnet101", "densenet201"])
def test_big_zoo_models_against_darknet(model, tmp_path):
    compare(ZOO_CFG / f"{model}.cfg", tmp_path, inputs=1, engines=("torch",))


# NOTE: pjreddie's make_local_layer states its im2col workspace in floats where parse_network_cfg sizes the
# shared workspace in bytes (a convolution's get_workspace_size), so darknet writes past it unless some
# convolution needs a workspace 4x the local layer's: the 3x3 convolution over 16 channels here does.
LOCAL_NET = """[net]
width={w}
height={h}
channels=3
[convolutional]
filters=16
size=3
pad=1
activation=leaky
[convolutional]
filters=4
size=3
pad=1
activation=leaky
[local]
filters={n}
size={size}
stride={stride}
pad={pad}
activation={act}
[connected]
output=10
activation=linear
[softmax]
"""


@pytest.mark.parametrize("w,h,n,size,stride,pad,act", [
    (9, 7, 5, 3, 1, 1, "leaky"), (12, 10, 3, 3, 2, 0, "linear"), (11, 13, 6, 5, 2, 2, "relu"),
    (8, 8, 2, 1, 1, 0, "logistic"), (10, 9, 4, 2, 3, 0, "tanh")])
def test_local_layer_against_darknet(tmp_path, w, h, n, size, stride, pad, act):
    """pjreddie's locally connected layer (src/local_layer.c): each output position has its own kernel and
    each output value its own bias, in the weights file as biases then locations x filters x (c*size*size)."""
    cfg = tmp_path / "local.cfg"
    cfg.write_text(LOCAL_NET.format(w=w, h=h, n=n, size=size, stride=stride, pad=pad, act=act))
    spec = pydarknet.load_specs(cfg).layers[2]
    assert spec.out[1:] == ((h - (1 if pad else size)) // stride + 1, (w - (1 if pad else size)) // stride + 1)
    compare(cfg, tmp_path, seed=w * h, inputs=2)


def test_local_layer_table_line_is_darknets(tmp_path):
    """The line darknet prints while loading a [local] layer (make_local_layer), from the C library itself."""
    import subprocess
    import sys
    cfg = tmp_path / "local.cfg"
    cfg.write_text(LOCAL_NET.format(w=11, h=9, n=5, size=3, stride=2, pad=1, act="leaky"))
    code = ("import sys; sys.path.insert(0, %r); from cdarknet import CDarknet; CDarknet(%r, None).close()"
            % (str(ZOO_CFG.parent.parent / "tests"), str(cfg)))
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    line = next(ln for ln in err.splitlines() if "Local Layer" in ln)
    assert line == pydarknet.load_specs(cfg).layer_table().splitlines()[3]
