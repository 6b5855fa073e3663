"""A NumPy-only inference engine for one-shot use: the same network as ``pydarknet.network`` without
importing PyTorch (which takes seconds to import, longer than a small model takes to run).

``pydarknet classify CFG WEIGHTS IMAGE`` uses it for a single image on the CPU; batch, interactive, GPU and
training use PyTorch. Each layer mirrors the PyTorch module of the same kind and the darknet C function
cited there; ``tests/test_npengine.py`` holds the two engines (and darknet's goldens) to 1e-5 of each other.
Batchnorm is folded into the convolution kernels at load time (``layers.batchnorm_fold``'s formula).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from . import specs as S
from .weights import Params, read_weights

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


def _fold(arrays: dict[str, np.ndarray], bn: bool, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bias) with darknet's batchnorm folded in (see layers.batchnorm_fold)."""
    w = arrays["weights"].astype(F32)
    b = arrays["biases"].astype(F32)
    if bn:
        inv = arrays["scales"] / (np.sqrt(arrays["rolling_variance"]) + F32(1e-6))
        w = w * inv.reshape((-1,) + (1,) * (w.ndim - 1))
        b = b - arrays["rolling_mean"] * inv
    return np.ascontiguousarray(w, F32), b.astype(F32).reshape(1, n, 1, 1)


def _conv(x: np.ndarray, w: np.ndarray, spec: S.Convolutional) -> np.ndarray:
    """Convolution as im2col + one matrix product per image and group (OpenBLAS sgemm)."""
    n, cin, h, wid = x.shape
    k, s, p, g = spec.size, spec.stride, spec.padding, spec.groups
    if p:
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - k) // s + 1, (wid + 2 * p - k) // s + 1
    if k == 1:
        cols = np.ascontiguousarray(x[:, :, : (oh - 1) * s + 1: s, : (ow - 1) * s + 1: s]).reshape(n, cin, oh * ow)
    else:
        cols = np.empty((n, cin, k, k, oh, ow), F32)
        for i in range(k):
            for j in range(k):
                cols[:, :, i, j] = x[:, :, i: i + (oh - 1) * s + 1: s, j: j + (ow - 1) * s + 1: s]
        cols = cols.reshape(n, cin * k * k, oh * ow)
    filters = w.shape[0]
    fg, cg = filters // g, cin // g * k * k
    wm = w.reshape(filters, -1)
    out = np.empty((n, filters, oh * ow), F32)
    for b in range(n):
        for i in range(g):
            np.matmul(wm[i * fg:(i + 1) * fg], cols[b, i * cg:(i + 1) * cg], out=out[b, i * fg:(i + 1) * fg])
    return out.reshape(n, filters, oh, ow)


def _maxpool(x: np.ndarray, spec: S.Maxpool) -> np.ndarray:
    """forward_maxpool_layer: window offset -padding/2, outside cells never win (see layers.maxpool_darknet)."""
    n, c, h, w = x.shape
    size, stride, pad = spec.size, spec.stride, spec.padding
    oh, ow = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    lead = pad // 2
    bottom = max((oh - 1) * stride + size - h - lead, 0)
    right = max((ow - 1) * stride + size - w - lead, 0)
    lowest = -np.finfo(F32).max
    if lead or bottom or right:
        x = np.pad(x, ((0, 0), (0, 0), (lead, bottom), (lead, right)), constant_values=lowest)
    out = None
    for i in range(size):
        for j in range(size):
            part = x[:, :, i: i + (oh - 1) * stride + 1: stride, j: j + (ow - 1) * stride + 1: stride]
            out = part.copy() if out is None else np.maximum(out, part, out=out)
    return out


def _shortcut(out: np.ndarray, add: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """shortcut_cpu (see layers.shortcut_darknet)."""
    if out.shape == add.shape:
        return out + add if (alpha, beta) == (1.0, 1.0) else F32(alpha) * out + F32(beta) * add
    c2, h2, w2 = out.shape[1:]
    c1, h1, w1 = add.shape[1:]
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    mc, mh, mw = min(c1, c2), min(h1, h2), min(w1, w2)
    out = out.copy()
    dst = out[:, :mc, : mh * sample: sample, : mw * sample: sample]
    dst[...] = F32(alpha) * dst + F32(beta) * add[:, :mc, : mh * stride: stride, : mw * stride: stride]
    return out


def _softmax(x: np.ndarray, spec: S.Softmax) -> np.ndarray:
    """softmax_cpu: per group, with temperature (see layers.softmax_darknet)."""
    n = x.shape[0]
    z = x.reshape(n, spec.groups, -1) / F32(spec.temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).reshape(n, -1, 1, 1)


class NumpyNetwork:
    """Inference-only darknet network on NumPy. Call on (N, C, H, W) float32 in [0, 1] -> (N, outputs)."""

    def __init__(self, spec: S.NetSpec, params: Params):
        self.spec = spec
        self._folded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for layer in spec.layers:
            if layer.kind in ("convolutional", "connected"):
                arrays = params.get(layer.index)
                if arrays is None or "weights" not in arrays:
                    raise ValueError(f"layer {layer.index} has no weights loaded")
                n = layer.filters if layer.kind == "convolutional" else layer.output
                self._folded[layer.index] = _fold(arrays, layer.batch_normalize, n)
            elif layer.kind == "batchnorm":
                arrays = params[layer.index]
                c = layer.out[0]
                inv = arrays["scales"] / (np.sqrt(arrays["rolling_variance"]) + F32(1e-6))
                self._folded[layer.index] = (inv.reshape(1, c, 1, 1).astype(F32),
                                             (-arrays["rolling_mean"] * inv).reshape(1, c, 1, 1).astype(F32))
        needed = set()
        for s in spec.layers:
            needed.update(getattr(s, "layers", ()))
            if s.kind == "shortcut":
                needed.add(s.from_index)
        self._keep = needed

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, F32)
        cache: dict[int, np.ndarray] = {}
        out_index = self.spec.output_index
        for s in self.spec.layers:
            x = self._layer(s, x, cache)
            if s.index in self._keep:
                cache[s.index] = x
            if s.index == out_index:
                break
        return x.reshape(x.shape[0], -1)

    def _layer(self, s: S.LayerSpec, x: np.ndarray, cache: dict[int, np.ndarray]) -> np.ndarray:
        kind = s.kind
        if kind == "convolutional":
            w, b = self._folded[s.index]
            return ACTIVATIONS[s.activation](_conv(x, w, s) + b)
        if kind == "connected":
            w, b = self._folded[s.index]
            y = x.reshape(x.shape[0], -1) @ w.T + b.reshape(1, -1)
            return ACTIVATIONS[s.activation](y).reshape(x.shape[0], -1, 1, 1)
        if kind == "batchnorm":
            scale, shift = self._folded[s.index]
            return x * scale + shift
        if kind == "maxpool":
            return _maxpool(x, s)
        if kind == "avgpool":
            return x.mean(axis=(2, 3), keepdims=True, dtype=F32)
        if kind == "softmax":
            return _softmax(x, s)
        if kind in ("dropout", "cost"):
            return x
        if kind == "crop":
            h, w = x.shape[2:]
            dh, dw = (h - s.crop_height) // 2, (w - s.crop_width) // 2
            y = x[:, :, dh: dh + s.crop_height, dw: dw + s.crop_width]
            return y if s.noadjust else y * F32(2) - F32(1)
        if kind == "route":
            parts = [cache[i] for i in s.layers]
            return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if kind == "shortcut":
            return ACTIVATIONS[s.activation](_shortcut(x, cache[s.from_index], s.alpha, s.beta))
        raise AssertionError(kind)


def load_numpy_network(cfg_path: str | os.PathLike, weights_path: str | os.PathLike) -> NumpyNetwork:
    spec = S.load_specs(cfg_path)
    _, params = read_weights(weights_path, spec)
    return NumpyNetwork(spec, params)
