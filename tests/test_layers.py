"""darknet's numeric rules, each against a direct transcription of the C loop it matches (in NumPy)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pydarknet import specs as S
from pydarknet.cfg import parse_cfg
from pydarknet.engines.network import ACTIVATIONS as ACTIVATION_FUNCTIONS
from pydarknet.engines.network import Network, maxpool_darknet, shortcut_darknet, softmax_darknet
from pydarknet.specs import build_specs


def layer_spec(cls, inp, out, **fields):
    """A layer spec made directly (index 1, the input (c, h, w) ``inp``, the output ``out``)."""
    n_in, n_out = int(np.prod(inp)), int(np.prod(out))
    return cls(index=1, lineno=0, inp=inp, out=out, outputs=n_out, common=S.Common(), inputs=n_in, **fields)


def ref_maxpool(x, size, stride, padding):
    """forward_maxpool_layer, loop for loop."""
    c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = np.empty((c, oh, ow), np.float32)
    for k in range(c):
        for i in range(oh):
            for j in range(ow):
                best = -np.finfo(np.float32).max
                for n in range(size):
                    for m in range(size):
                        y, xx = off + i * stride + n, off + j * stride + m
                        if 0 <= y < h and 0 <= xx < w and x[k, y, xx] > best:
                            best = x[k, y, xx]
                out[k, i, j] = best
    return out


@pytest.mark.parametrize("h,w,size,stride,padding", [
    (7, 9, 2, 2, 1), (8, 8, 2, 2, 1), (13, 13, 3, 2, 2), (5, 6, 3, 1, 2), (11, 7, 3, 2, 0), (6, 6, 2, 1, 1),
    (9, 9, 5, 3, 4), (4, 4, 1, 1, 0), (10, 12, 3, 3, 5)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])  # channels_last: 2x2 path
def test_maxpool_matches_darknet_loop(h, w, size, stride, padding, layout):
    x = np.random.default_rng(h * w).standard_normal((3, h, w)).astype(np.float32)
    t = torch.from_numpy(x)[None].contiguous(memory_format=layout)
    spec = build_specs(parse_cfg(f"[net]\nwidth={w}\nheight={h}\nchannels=3\n[maxpool]\nsize={size}\n"
                                 f"stride={stride}\npadding={padding}\n", "m.cfg")).layers[0]
    got = maxpool_darknet(t, spec)[0].numpy()
    assert np.array_equal(got, ref_maxpool(x, size, stride, padding))


def ref_shortcut(out, add, alpha, beta):
    """shortcut_cpu with (w1,h1,c1) = add's size, (w2,h2,c2) = out's size."""
    out = out.copy()
    c1, h1, w1 = add.shape
    c2, h2, w2 = out.shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    for k in range(min(c1, c2)):
        for j in range(min(h1, h2)):
            for i in range(min(w1, w2)):
                o = out[k, j * sample, i * sample]
                out[k, j * sample, i * sample] = alpha * o + beta * add[k, j * stride, i * stride]
    return out


@pytest.mark.parametrize("out_shape,add_shape,alpha,beta", [
    ((4, 6, 6), (4, 6, 6), 1.0, 1.0), ((8, 4, 4), (4, 8, 8), 1.0, 1.0), ((4, 8, 8), (8, 4, 4), 1.0, 1.0),
    ((6, 5, 5), (3, 10, 10), 0.5, 2.0), ((3, 3, 3), (3, 3, 3), 0.25, -1.0), ((2, 4, 4), (5, 13, 13), 1.0, 1.0)])
def test_shortcut_matches_darknet_loop(out_shape, add_shape, alpha, beta):
    rng = np.random.default_rng(1)
    out = rng.standard_normal(out_shape).astype(np.float32)
    add = rng.standard_normal(add_shape).astype(np.float32)
    spec = layer_spec(S.Shortcut, out_shape, out_shape, from_index=0, from_shape=add_shape, activation="linear",
                      alpha=alpha, beta=beta)
    got = shortcut_darknet(torch.from_numpy(out)[None], torch.from_numpy(add)[None], spec)[0].numpy()
    np.testing.assert_allclose(got, ref_shortcut(out, add, alpha, beta), rtol=0, atol=1e-6)


# activations.h, transcribed (float64); relu6/swish/mish as AlexeyAB's activations.h
def _stair(x):
    n = math.floor(x)
    return math.floor(x / 2.0) if n % 2 == 0 else (x - n) + math.floor(x / 2.0)


def _softplus(x, t=20.0):
    return x if x > t else (math.exp(x) if x < -t else math.log(math.exp(x) + 1))


C_ACTIVATIONS = {
    "linear": lambda x: x,
    "logistic": lambda x: 1.0 / (1.0 + math.exp(-x)),
    "loggy": lambda x: 2.0 / (1.0 + math.exp(-x)) - 1,
    "relu": lambda x: x * (x > 0),
    "elu": lambda x: (x >= 0) * x + (x < 0) * (math.exp(x) - 1),
    "selu": lambda x: (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (math.exp(x) - 1),
    "relie": lambda x: x if x > 0 else 0.01 * x,
    "ramp": lambda x: x * (x > 0) + 0.1 * x,
    "leaky": lambda x: x if x > 0 else 0.1 * x,
    "tanh": lambda x: (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1),
    "plse": lambda x: 0.01 * (x + 4) if x < -4 else (0.01 * (x - 4) + 1 if x > 4 else 0.125 * x + 0.5),
    "hardtan": lambda x: -1.0 if x < -1 else (1.0 if x > 1 else x),
    "lhtan": lambda x: 0.001 * x if x < 0 else (0.001 * (x - 1) + 1 if x > 1 else x),
    "stair": _stair,
    "relu6": lambda x: min(max(x, 0.0), 6.0),
    "swish": lambda x: x / (1.0 + math.exp(-x)),
    "mish": lambda x: x * math.tanh(_softplus(x)),
}


@pytest.mark.parametrize("name", sorted(C_ACTIVATIONS))
def test_activation_matches_darknet_formula(name):
    xs = np.concatenate([np.linspace(-9, 9, 721), [-4.0, 4.0, -1.0, 1.0, 0.0, 2.5, -2.5, 3.0, -3.0, 6.0, 7.5]])
    xs = xs.astype(np.float32)
    got = ACTIVATION_FUNCTIONS[name](torch.from_numpy(xs)).numpy()
    want = np.array([C_ACTIVATIONS[name](float(v)) for v in xs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_groups_and_temperature():
    x = np.random.default_rng(2).standard_normal(12).astype(np.float32)
    spec = layer_spec(S.Softmax, (12, 1, 1), (0, 0, 0), groups=3, temperature=0.5)
    got = softmax_darknet(torch.from_numpy(x).view(1, 12, 1, 1), spec).reshape(-1).numpy()
    want = []
    for g in range(3):
        part = x[g * 4:(g + 1) * 4].astype(np.float64) / 0.5
        e = np.exp(part - part.max())
        want += list(e / e.sum())
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


NET = "[net]\nwidth=5\nheight=4\nchannels=3\n"


def test_batchnorm_layer_is_darknets_formula():
    net = Network(build_specs(parse_cfg(NET + "[batchnorm]\n", "b.cfg"))).eval()
    layer = net.layers["0_batchnorm"]
    with torch.no_grad():
        layer.scales.copy_(torch.tensor([0.5, 2.0, 1.5]))
        layer.rolling_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        layer.rolling_variance.copy_(torch.tensor([0.25, 4.0, 1e-8]))
    x = torch.randn(1, 3, 4, 5)
    want = (x - layer.rolling_mean.view(1, 3, 1, 1)) / (layer.rolling_variance.sqrt().view(1, 3, 1, 1) + 1e-6)
    want = want * layer.scales.view(1, 3, 1, 1)
    assert torch.allclose(net(x).view(1, 3, 4, 5), want, atol=1e-5, rtol=1e-6)


def test_crop_layer_is_centred_and_rescaled():
    spec = build_specs(parse_cfg(NET + "[crop]\ncrop_height=2\ncrop_width=3\n", "c.cfg"))
    net = Network(spec).eval()
    x = torch.rand(1, 3, 4, 5)
    assert torch.equal(net(x).view(1, 3, 2, 3), x[:, :, 1:3, 1:4] * 2 - 1)
    spec = build_specs(parse_cfg(NET + "[crop]\ncrop_height=2\ncrop_width=3\nnoadjust=1\n", "c.cfg"))
    assert torch.equal(Network(spec).eval()(x).view(1, 3, 2, 3), x[:, :, 1:3, 1:4])


def test_network_rejects_wrong_input_shape():
    spec = build_specs(parse_cfg(NET + "[connected]\noutput=2\n", "c.cfg"))
    net = Network(spec).eval()
    with pytest.raises(ValueError, match=r"c\.cfg expects input \(N, 3, 4, 5\), got \(1, 3, 5, 5\)"):
        net(torch.rand(1, 3, 5, 5))
    conv = Network(build_specs(parse_cfg(NET + "[convolutional]\nfilters=2\n[avgpool]\n", "v.cfg"))).eval()
    assert conv(torch.rand(2, 3, 9, 7)).shape == (2, 2)  # fully convolutional: any size
    with pytest.raises(ValueError, match="expects input"):
        conv(torch.rand(2, 1, 9, 7))


FAST_PATH_CFG = """[net]
width=30
height=30
channels=3
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
[convolutional]
filters=8
size=3
stride=2
pad=1
groups=8
batch_normalize=1
activation=relu6
[convolutional]
filters=12
size=1
stride=1
activation=logistic
[convolutional]
filters=12
size=3
stride=1
pad=1
activation=mish
[shortcut]
from=-2
activation=linear
[convolutional]
filters=12
size=1
stride=1
activation=linear
[shortcut]
from=-2
activation=leaky
[convolutional]
filters=12
size=3
stride=1
pad=1
activation=linear
[shortcut]
from=-4
activation=relu
[convolutional]
filters=8
size=1
stride=1
activation=swish
[route]
layers=-1,-2
[convolutional]
filters=10
size=1
stride=1
activation=linear
[avgpool]
[softmax]
"""


def test_cpu_fast_path_agrees_with_plain_operators():
    """The torch engine on the CPU runs oneDNN's prepacked convolutions with fused activations (and the
    residual additions) on channels_last maps, from the folded network: it must give the same folded
    network's plain operators' numbers (to float rounding) for every batch size it sees, and the trainable
    network's (batchnorm unfolded) within 1e-5; the network itself keeps gradients working."""
    from pydarknet.engines.torch_infer import HAVE_ONEDNN, TorchEngine
    torch.manual_seed(3)
    net = Network(build_specs(parse_cfg(FAST_PATH_CFG, "fast.cfg")))
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "rolling_variance"):
                m.rolling_mean.uniform_(-0.5, 0.5)
                m.rolling_variance.uniform_(0.2, 2.0)
                m.scales.uniform_(0.5, 1.5)
            if hasattr(m, "biases") and isinstance(m.biases, torch.nn.Parameter):
                m.biases.uniform_(-0.5, 0.5)
    net.eval()
    assert net.spec.residual_pairs == {6: 7, 8: 9}  # linear conv + shortcut pairs computed in one oneDNN call
    engine = TorchEngine.from_network(net)
    plain = TorchEngine.from_network(net)
    plain._fast = False
    assert engine._fast == HAVE_ONEDNN
    xs = [torch.rand(n, 3, 30, 30) for n in (1, 3, 1, 2)]
    with torch.no_grad():
        for x in xs:
            fast, ref, unfolded = engine.infer(x.numpy()), plain.infer(x.numpy()), net(x).numpy()
            assert np.abs(fast - ref).max() <= 1e-6
            assert np.abs(fast - unfolded).max() <= 1e-5
        in_double = net.double()(xs[0].double()).float()
        assert torch.allclose(in_double, net.float()(xs[0]), atol=1e-5, rtol=0)
    x = xs[1].clone().requires_grad_()
    net(x).sum().backward()  # a saliency map in eval mode: the network is plain and differentiable
    assert x.grad is not None and x.grad.shape == x.shape


def test_inference_reuses_freed_feature_maps():
    """pydarknet.tune_process() (what the pydarknet command calls) tunes glibc's malloc so a batch-1 forward
    does not fault in fresh pages for every feature map (tuning.keep_freed_memory); counted with getrusage
    in a fresh process, not timed."""
    import subprocess
    import sys
    code = """
import resource, sys, torch, numpy, pydarknet
torch.set_num_threads(1)
pydarknet.tune_process()
engine = pydarknet.open_engine(pydarknet.zoo_cfg("tiny"))
x = numpy.random.default_rng(0).random((1, 3, 224, 224), dtype=numpy.float32)
for _ in range(3): engine.infer(x)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10): engine.infer(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10)
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc tuning is Linux-only")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) < 100  # glibc's defaults give ~800-1000 per forward here
