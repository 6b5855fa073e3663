"""Live oracle: the C darknet (Debian's libdarknet.so) reads weights that *we* wrote and must give our
outputs on the same input tensors. Skips where libdarknet is not installed (CI installs it).

Tolerance: max abs difference of the output vectors <= 1e-5 (float32 summation order differs), top-5 same.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pydarknet
from conftest import ZOO_CFG
from pydarknet.cdarknet import CDarknet, find_library

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


def compare(cfg, tmp_path, seed=0, inputs=2):
    torch.manual_seed(seed)
    ours = pydarknet.load_network(cfg, fuse=False)
    with torch.no_grad():  # non-trivial batchnorm statistics
        for layer in ours.layers.values():
            if hasattr(layer, "rolling_mean"):
                layer.rolling_mean.normal_(0, 0.05)
                layer.rolling_variance.uniform_(0.5, 1.5)
                layer.scales.uniform_(0.5, 1.5)
                layer.biases.normal_(0, 0.1)
    weights = tmp_path / "ours.weights"
    ours.save_weights(weights)
    ours = pydarknet.load_network(cfg, weights)  # through our reader, batchnorm folded
    theirs = CDarknet(str(cfg), str(weights))
    worst = 0.0
    try:
        rng = np.random.default_rng(seed)
        for _ in range(inputs):
            x = rng.random(ours.spec.input_shape, dtype=np.float32)
            want = theirs.predict(x)
            with torch.inference_mode():
                got = ours(torch.from_numpy(x)[None])[0].numpy()
            assert got.shape == want.shape
            worst = max(worst, float(np.abs(got - want).max()))
            assert np.array_equal(np.argsort(-got, kind="stable")[:5], np.argsort(-want, kind="stable")[:5])
    finally:
        theirs.close()
    assert worst <= 1e-5, worst
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
    compare(ZOO_CFG / f"{model}.cfg", tmp_path, inputs=1)
