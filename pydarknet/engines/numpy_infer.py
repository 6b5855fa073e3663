"""A NumPy-only inference engine for one-shot use: the same network as ``engines.network`` without importing
PyTorch (which takes seconds to import, longer than a small model takes to run).

One kernel per layer kind in ``KERNELS`` (checked complete against the spec registry at import), each
mirroring the PyTorch module of the same kind and the darknet C function cited there, and reading its sizes
from the layer spec; batchnorm is folded once at load time (``NetSpec.folded``, i.e.
``numerics.fold_batchnorm``). ``tests/test_engines.py`` holds the engines (and darknet's goldens) to 1e-5 of
each other.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .. import specs as S
from ..errors import DarknetError
from . import first_nonfinite_row, nonfinite_error
from ..numerics import batchnorm_affine
from ..specs import NetSpec, Params
from ..weights import read_weights

F32 = np.float32


def _sigmoid(x):
    return F32(1) / (F32(1) + np.exp(-x))


def _stair(x):
    n = np.floor(x)
    half = np.floor(x / F32(2))
    return np.where(np.remainder(n, 2) == 0, half, (x - n) + half)


def _softplus(x):  # AlexeyAB's softplus_activate with threshold 20
    return np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log1p(np.exp(np.minimum(x, 20)))))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "logistic": _sigmoid,
    "loggy": lambda x: F32(2) * _sigmoid(x) - F32(1),
    "relu": lambda x: np.maximum(x, F32(0)),
    "elu": lambda x: np.where(x >= 0, x, np.expm1(x)),
    "selu": lambda x: np.where(x >= 0, F32(1.0507) * x, F32(1.0507 * 1.6732) * np.expm1(x)),
    "relie": lambda x: np.where(x > 0, x, F32(0.01) * x),
    "ramp": lambda x: np.maximum(x, F32(0)) + F32(0.1) * x,
    "leaky": lambda x: np.maximum(x, F32(0.1) * x),  # leaky_activate: x > 0 ? x : .1*x
    "tanh": np.tanh,
    "plse": lambda x: np.where(x < -4, F32(0.01) * (x + 4), np.where(x > 4, F32(0.01) * (x - 4) + 1, F32(0.125) * x + F32(0.5))),
    "hardtan": lambda x: np.clip(x, F32(-1), F32(1)),
    "lhtan": lambda x: np.where(x < 0, F32(0.001) * x, np.where(x > 1, F32(0.001) * (x - 1) + 1, x)),
    "stair": _stair,
    "relu6": lambda x: np.clip(x, F32(0), F32(6)),
    "swish": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
}
assert set(ACTIVATIONS) == set(S.ACTIVATIONS)


def _im2col(x: np.ndarray, k: int, stride: int, pad: int, oh: int, ow: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C*k*k, oh*ow) in im2col_cpu's row order (channel, kernel row, kernel column)."""
    n, c = x.shape[:2]
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    if k == 1:
        return np.ascontiguousarray(x[:, :, : (oh - 1) * stride + 1: stride, : (ow - 1) * stride + 1: stride]
                                    ).reshape(n, c, oh * ow)
    cols = np.empty((n, c, k, k, oh, ow), F32)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i: i + (oh - 1) * stride + 1: stride, j: j + (ow - 1) * stride + 1: stride]
    return cols.reshape(n, c * k * k, oh * ow)


def convolutional(s: S.Convolutional, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    """Convolution as im2col + one matrix product per image and group (OpenBLAS sgemm), bias, activation."""
    n = x.shape[0]
    _, oh, ow = s.out
    g = s.groups
    cols = _im2col(x, s.size, s.stride, s.padding, oh, ow)
    w = p["weights"].reshape(s.filters, -1)
    fg, cg = s.filters // g, cols.shape[1] // g
    out = np.empty((n, s.filters, oh * ow), F32)
    for b in range(n):
        for i in range(g):
            np.matmul(w[i * fg:(i + 1) * fg], cols[b, i * cg:(i + 1) * cg], out=out[b, i * fg:(i + 1) * fg])
    return ACTIVATIONS[s.activation](out.reshape(n, s.filters, oh, ow) + p["biases"].reshape(1, -1, 1, 1))


def local(s: S.Local, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    """forward_local_layer (src/local_layer.c): every output position has its own kernel."""
    n = x.shape[0]
    f, oh, ow = s.out
    cols = _im2col(x, s.size, s.stride, s.pad, oh, ow)  # (N, K, L)
    y = np.matmul(p["weights"], cols.transpose(2, 1, 0))  # (L, f, K) @ (L, K, N) -> (L, f, N)
    return ACTIVATIONS[s.activation](y.transpose(2, 1, 0).reshape(n, f, oh, ow) + p["biases"][None])


def connected(s: S.Connected, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    y = x.reshape(x.shape[0], -1) @ p["weights"].T + p["biases"].reshape(1, -1)  # batchnorm folded in
    return ACTIVATIONS[s.activation](y).reshape(x.shape[0], -1, 1, 1)


def batchnorm(s: S.Batchnorm, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    gain, shift = batchnorm_affine(p["scales"], p["rolling_mean"], p["rolling_variance"])
    return x * gain.reshape(1, -1, 1, 1).astype(F32) + shift.reshape(1, -1, 1, 1).astype(F32)


def maxpool(s: S.Maxpool, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    """forward_maxpool_layer: window offset -padding/2, outside cells never win (engines.network.maxpool_darknet)."""
    _, oh, ow = s.out
    lead, right, bottom = s.window_pads
    bottom, right = max(bottom, 0), max(right, 0)
    if lead or bottom or right:
        x = np.pad(x, ((0, 0), (0, 0), (lead, bottom), (lead, right)), constant_values=-np.finfo(F32).max)
    size, stride = s.size, s.stride
    out = None
    for i in range(size):
        for j in range(size):
            part = x[:, :, i: i + (oh - 1) * stride + 1: stride, j: j + (ow - 1) * stride + 1: stride]
            out = part.copy() if out is None else np.maximum(out, part, out=out)
    return out


def avgpool(s: S.Avgpool, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    return x.mean(axis=(2, 3), keepdims=True, dtype=F32)


def identity(s: S.LayerSpec, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    return x  # dropout at test time; cost (the loss is training's)


def softmax(s: S.Softmax, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    """softmax_cpu: per group, with temperature (engines.network.softmax_darknet)."""
    n = x.shape[0]
    z = x.reshape(n, s.groups, -1) / F32(s.temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).reshape(n, -1, 1, 1)


def crop(s: S.Crop, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    dh, dw = s.offset
    y = x[:, :, dh: dh + s.crop_height, dw: dw + s.crop_width]
    return y if s.noadjust else y * F32(2) - F32(1)


def route(s: S.Route, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    parts = [outs[i] for i in s.layers]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def shortcut(s: S.Shortcut, p: dict, x: np.ndarray, outs: dict) -> np.ndarray:
    """shortcut_cpu (engines.network.shortcut_darknet)."""
    add = outs[s.from_index]
    alpha, beta = F32(s.alpha), F32(s.beta)
    if s.from_shape == s.inp:
        y = x + add if (s.alpha, s.beta) == (1.0, 1.0) else alpha * x + beta * add
    else:
        stride, sample, (mc, mh, mw) = s.geometry
        y = x.copy()
        dst = y[:, :mc, : mh * sample: sample, : mw * sample: sample]
        dst[...] = alpha * dst + beta * add[:, :mc, : mh * stride: stride, : mw * stride: stride]
    return ACTIVATIONS[s.activation](y)


#: layer spec class -> kernel(spec, arrays, x, kept outputs)
KERNELS: dict[type[S.LayerSpec], Callable] = {
    S.Convolutional: convolutional,
    S.Local: local,
    S.Connected: connected,
    S.Batchnorm: batchnorm,
    S.Maxpool: maxpool,
    S.Avgpool: avgpool,
    S.Dropout: identity,
    S.Softmax: softmax,
    S.Cost: identity,
    S.Crop: crop,
    S.Route: route,
    S.Shortcut: shortcut,
}
S.check_table(KERNELS, "pydarknet.engines.numpy_infer.KERNELS")


class NumpyEngine:
    """Inference-only darknet network on NumPy: ``infer((N, C, H, W) float32 in [0, 1])`` -> (N, outputs)."""

    kind = "numpy"
    precision = "fp32"
    device = "cpu"

    def __init__(self, spec: NetSpec, params: Params):
        for layer in spec.layers:
            have = params.get(layer.index, {})
            missing = [name for name, _ in layer.layout() if name not in have]
            if missing:
                raise DarknetError(f"no {', '.join(missing)} loaded for this {layer.kind} layer (dontload?)",
                                   spec.path, layer=layer.index)
        self.spec = spec
        self._folded_spec, folded = spec.folded(params)
        self._params = {i: {k: np.ascontiguousarray(v, F32) for k, v in a.items()} for i, a in folded.items()}
        self._sized: dict[tuple[int, int], NetSpec] = {}

    def _spec_for(self, x: np.ndarray) -> NetSpec:
        c, h, w = self.spec.input_shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"{os.path.basename(self.spec.path)} expects input (N, {c}, H, W), got {x.shape}")
        size = tuple(x.shape[2:])
        if size == (h, w):
            return self._folded_spec
        if size not in self._sized:
            self._sized[size] = self._folded_spec.at_size(size[1], size[0])
        return self._sized[size]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 array -> (N, outputs); an output that is not finite is the
        ``nonfinite_error`` of the first layer whose output is not."""
        x = np.ascontiguousarray(batch, F32)
        out = self._run(x, self._spec_for(x))
        if not np.isfinite(out).all():
            one = x[first_nonfinite_row(out)][None]
            self._run(one, self._spec_for(one), check=True)
            raise nonfinite_error(self.spec, None)
        return out

    def _run(self, x: np.ndarray, spec: NetSpec, *, check: bool = False) -> np.ndarray:
        outs: dict[int, np.ndarray] = {}
        kept = spec.kept
        for s in spec.layers[: spec.output_index + 1]:
            with np.errstate(over="ignore", invalid="ignore"):
                x = KERNELS[type(s)](s, self._params.get(s.index, {}), x, outs)
            if check and not np.isfinite(x).all():
                raise nonfinite_error(spec, s)
            if s.index in kept:
                outs[s.index] = x
        return x.reshape(x.shape[0], -1)

    __call__ = infer

    def close(self) -> None:
        self._params = {}


def load_numpy_engine(cfg_path: str | os.PathLike, weights_path: str | os.PathLike) -> NumpyEngine:
    spec = S.load_specs(cfg_path)
    spec.check_memory()
    _, params = read_weights(weights_path, spec)
    return NumpyEngine(spec, params)
