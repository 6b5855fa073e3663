"""The trainable network: ``Network(nn.Module)``, one small module per layer kind (the torch kernel table,
``MODULES``), darknet's forward_network as a short loop (``src/network.c``), and darknet's numeric rules in
PyTorch.

``Network`` computes from its current parameters on every call (batchnorm unfolded, darknet's formula), so
``load_state_dict``, ``.to()`` and in-place edits always take effect; it is what training, the ONNX export
(traced from its folded copy) and the fast inference engine (``torch_infer``) are built on. Every kernel
reads its sizes from the layer spec it is given, never from the tensor, so that a traced graph holds no
shape arithmetic; a network fed another input size runs the specs of that size (darknet's resize_network).

Modules are named ``"<idx>_<kind>"`` so a PyTorch user finds layer 12 as ``net.layers["12_connected"]``,
with darknet's parameter names (``biases``, ``scales``, ``rolling_mean``, ``rolling_variance``, ``weights``).
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import specs as S
from ..errors import DarknetError, DarknetWarning
from . import first_nonfinite_row, nonfinite_error
from ..numerics import BN_EPSILON
from ..specs import NetSpec, Params, load_specs
from ..weights import Header, read_weights, write_weights

FLT_MAX = float(torch.finfo(torch.float32).max)

# ---------------------------------------------------------------------------------------------------------
# darknet numerics in PyTorch


def darknet_batchnorm(x: Tensor, mean: Tensor, var: Tensor, scales: Tensor) -> Tensor:
    """Inference batch normalisation, without the bias (added after, as darknet does).

    NOTE: matches normalize_cpu + scale_bias (src/blas.c, src/batchnorm_layer.c): darknet divides by
    ``sqrt(var) + .000001`` (numerics.BN_EPSILON), not PyTorch's ``sqrt(var + eps)``.
    """
    shape = (1, -1) + (1,) * (x.dim() - 2)
    inv = scales / (var.sqrt() + BN_EPSILON)
    return (x - mean.view(shape)) * inv.view(shape)


TRAIN_BN_EPSILON = 1e-12


def darknet_batchnorm_train(x: Tensor, rolling_mean: Tensor, rolling_variance: Tensor, scales: Tensor) -> Tensor:
    """Training batch normalisation with batch statistics, updating the rolling ones, without the bias.

    NOTE: matches forward_batchnorm_layer's training branch (src/batchnorm_layer.c): batch mean and variance
    (the rolling variance gets the unbiased one, /(batch*spatial-1), via mean_cpu/variance_cpu), rolling
    averages ``.99*old + .01*batch``, then normalize_cpu and scale_bias. For speed it runs PyTorch's fused
    kernel, which normalises with the biased variance and ``sqrt(var + eps)``: against darknet's
    ``sqrt(var_unbiased) + .000001`` that differs by a factor within 1/(batch*spatial) plus 1e-6/std, far below
    the noise of stochastic training (inference uses darknet's exact ``darknet_batchnorm``)."""
    return F.batch_norm(x, rolling_mean, rolling_variance, scales, None, True, 0.01, TRAIN_BN_EPSILON)


def maxpool_darknet(x: Tensor, s: S.Maxpool) -> Tensor:
    """Max pooling as darknet does it, with the window offsets of the spec (``Maxpool.window_pads``).

    NOTE: matches forward_maxpool_layer (src/maxpool_layer.c): the window starts at ``-padding/2`` (integer
    division), cells outside the image never win, and the output is ``(w + padding - size)/stride + 1``
    wide. Padding is ``size-1`` by default, so a 2x2/2 pool of an odd width keeps the last column.
    """
    lead, right, bottom = s.window_pads
    if (s.size == s.stride == 2 and (lead, right, bottom) == (0, 0, 0) and s.inp[0] > 1
            and x.is_contiguous(memory_format=torch.channels_last)):
        return _maxpool_2x2_channels_last(x, s)  # the same maxima, found faster
    if lead or right > 0 or bottom > 0:
        x = F.pad(x, (lead, max(right, 0), lead, max(bottom, 0)), value=-math.inf)
    y = F.max_pool2d(x, s.size, s.stride)
    if s.empty_windows:  # a window wholly outside the image: darknet leaves -FLT_MAX there
        y = y.clamp_min(-FLT_MAX)
    return y


def _maxpool_2x2_channels_last(x: Tensor, s: S.Maxpool) -> Tensor:
    """A 2x2/2 pool of an even-sized channels_last map as two ``torch.maximum`` of strided views: the
    maxima ``F.max_pool2d`` finds, 1.4-2.5x sooner at batch 1 (measured in benchmarks/forward.py's runs)."""
    c, h, w = s.inp
    v = x.permute(0, 2, 3, 1).reshape(-1, h // 2, 2, w // 2, 2 * c)
    rows = torch.maximum(v[:, :, 0], v[:, :, 1]).reshape(-1, h // 2, w // 2, 2, c)
    return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)


def shortcut_darknet(out: Tensor, add: Tensor, s: S.Shortcut) -> Tensor:
    """``alpha*out + beta*add`` over the overlap of two maps of different size and depth.

    NOTE: matches shortcut_cpu (src/blas.c): the larger map is sampled with a stride (w1/w2), the smaller is
    written with a stride (w2/w1), and only the first min(c1, c2) channels are added; the rest of ``out``
    passes through. Written without in-place updates (the strided, channel-truncated overlap is laid into
    zeros of the output's shape with ``F.pad``, then added), so autograd and the ONNX export see plain ops.
    """
    alpha, beta = s.alpha, s.beta
    if s.from_shape == s.inp:
        return out + add if (alpha, beta) == (1.0, 1.0) else alpha * out + beta * add
    stride, sample, (minc, minh, minw) = s.geometry
    c2, h2, w2 = s.inp
    c1, h1, w1 = s.from_shape
    delta = add[:, :minc] if minc < c1 else add
    if stride > 1 or minh < h1 or minw < w1:
        delta = delta[:, :, : minh * stride: stride, : minw * stride: stride]
    if beta != 1.0:
        delta = delta * beta
    if alpha != 1.0:
        delta = delta + out[:, :minc, : minh * sample: sample, : minw * sample: sample] * (alpha - 1.0)
    if sample > 1:  # written every `sample` cells: interleave zeros
        delta = F.pad(delta.reshape(-1, minc, minh, 1, minw, 1), (0, sample - 1, 0, 0, 0, sample - 1))
        delta = delta.reshape(-1, minc, minh * sample, minw * sample)
    dh, dw = h2 - minh * sample, w2 - minw * sample  # the overlap is (minc, minh*sample, minw*sample)
    if dh or dw or c2 > minc:
        delta = F.pad(delta, (0, dw, 0, dh, 0, c2 - minc))
    return out + delta


def softmax_darknet(x: Tensor, s: S.Softmax) -> Tensor:
    """Softmax over each of ``groups`` equal, contiguous slices of the flattened input: (N, inputs).

    NOTE: matches softmax_cpu / softmax (src/blas.c): inputs divided by the temperature.
    """
    x = flat(x)
    if s.temperature != 1.0:
        x = x / s.temperature
    if s.groups == 1:
        return torch.softmax(x, dim=1)
    return torch.softmax(x.reshape(-1, s.groups, s.inputs // s.groups), dim=-1).reshape(-1, s.inputs)


def image(x: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """A flat (N, C*H*W) activation (a connected or softmax layer's) as the (N, C, H, W) image its spec says
    it is; image activations pass as they are."""
    return x.reshape(-1, *shape) if x.dim() == 2 else x


def flat(x: Tensor) -> Tensor:
    """(N, ...) -> (N, features), darknet's memory order (CHW)."""
    return x if x.dim() == 2 else x.flatten(1)


# ---------------------------------------------------------------------------------------------------------
# activations (src/activations.h; relu6, swish, mish from AlexeyAB's fork), each exportable to ONNX


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _mish(x: Tensor) -> Tensor:
    # NOTE: AlexeyAB's softplus has a threshold of 20 (softplus_activate), as PyTorch's default.
    return x * torch.tanh(F.softplus(x, threshold=20.0))


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2.0 * torch.sigmoid(x) - 1.0,
    "relu": F.relu,
    "elu": F.elu,  # elu_activate: x if x >= 0 else exp(x) - 1
    "selu": lambda x: 1.0507 * F.elu(x, 1.6732),  # selu_activate's constants, not torch.selu's
    "relie": lambda x: torch.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: F.relu(x) + 0.1 * x,
    "leaky": lambda x: F.leaky_relu(x, 0.1),  # NOTE: leaky_activate uses slope .1, not PyTorch's .01
    "tanh": torch.tanh,
    "plse": lambda x: torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)),
    "hardtan": lambda x: torch.clamp(x, -1.0, 1.0),
    "lhtan": lambda x: torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "stair": _stair,
    "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "swish": lambda x: x * torch.sigmoid(x),
    "mish": _mish,
}
assert set(ACTIVATIONS) == set(S.ACTIVATIONS)


# ---------------------------------------------------------------------------------------------------------
# layers: one module per kind, called as ``layer(x, outs, spec)`` with the spec at the current input size


class Layer(nn.Module):
    """Base: holds its spec (at the cfg's size); ``forward(x, outs, spec)`` where ``outs`` holds the kept
    outputs of earlier layers; parameters named as darknet's."""

    def __init__(self, spec: S.LayerSpec):
        super().__init__()
        self.spec = spec

    def reset_parameters(self) -> None:
        """darknet's random initialisation of the layer's weights (make_*_layer); biases start at 0, batchnorm
        scales at 1, rolling means at 0 and variances at 1. Kinds without weights have nothing to do."""

    def darknet_params(self) -> dict[str, Tensor]:
        """The tensors of ``spec.layout()``, by name, in file order."""
        return {name: getattr(self, name) for name, _ in self.spec.layout()}

    def extra_repr(self) -> str:
        return self.spec.table_line().strip()


class _BatchNormMixin:
    """Darknet batchnorm state on a layer: scales (learned), rolling mean/variance (buffers)."""

    def _init_bn(self, n: int) -> None:
        self.scales = nn.Parameter(torch.ones(n))
        self.register_buffer("rolling_mean", torch.zeros(n))
        self.register_buffer("rolling_variance", torch.ones(n))

    def _bn(self, x: Tensor) -> Tensor:
        if self.training:
            return darknet_batchnorm_train(x, self.rolling_mean, self.rolling_variance, self.scales)
        return darknet_batchnorm(x, self.rolling_mean, self.rolling_variance, self.scales)


def _bias_view(b: Tensor, dim: int) -> Tensor:
    return b.view((1, -1) + (1,) * (dim - 2))


class Convolutional(_BatchNormMixin, Layer):
    def __init__(self, spec: S.Convolutional):
        super().__init__(spec)
        n, c = spec.filters, spec.inp[0]
        self.weights = nn.Parameter(torch.empty(n, c // spec.groups, spec.size, spec.size))
        self.biases = nn.Parameter(torch.zeros(n))
        if spec.batch_normalize:
            self._init_bn(n)

    def reset_parameters(self) -> None:
        # darknet's init (make_convolutional_layer): normal scaled by sqrt(2/(size*size*c/groups))
        s = self.spec
        nn.init.normal_(self.weights, 0.0, math.sqrt(2.0 / (s.size * s.size * s.inp[0] / s.groups)))

    def forward(self, x: Tensor, outs: list, s: S.Convolutional) -> Tensor:
        x = image(x, s.inp)
        if not s.batch_normalize:
            return ACTIVATIONS[s.activation](F.conv2d(x, self.weights, self.biases, s.stride, s.padding, 1, s.groups))
        y = self._bn(F.conv2d(x, self.weights, None, s.stride, s.padding, 1, s.groups))
        return ACTIVATIONS[s.activation](y + _bias_view(self.biases, 4))


class Local(Layer):
    def __init__(self, spec: S.Local):
        super().__init__(spec)
        n, oh, ow = spec.out
        k = spec.inp[0] * spec.size * spec.size
        self.weights = nn.Parameter(torch.zeros(oh * ow, n, k))
        self.biases = nn.Parameter(torch.zeros(n, oh, ow))

    def reset_parameters(self) -> None:
        # NOTE: make_local_layer draws scale*rand_uniform(-1, 1), scale = sqrt(2/(size*size*c)), for the first
        # c*n*size*size weights only (the first location's kernels); the other locations start at 0.
        scale = math.sqrt(2.0 / self.weights.shape[2])
        with torch.no_grad():
            self.weights.zero_()
            self.weights[0].uniform_(-scale, scale)

    def forward(self, x: Tensor, outs: list, s: S.Local) -> Tensor:
        """forward_local_layer (src/local_layer.c): im2col of the padded input, then at every output position
        its own (filters x c*size*size) kernel; the bias is per output value."""
        c, h, w = s.inp
        n, oh, ow = s.out
        k, st, p = s.size, s.stride, s.pad
        x = image(x, s.inp)
        if p:
            x = F.pad(x, (p, p, p, p))
        taps = [x[:, :, i: i + (oh - 1) * st + 1: st, j: j + (ow - 1) * st + 1: st]
                for i in range(k) for j in range(k)]  # k*k x (N, c, oh, ow), im2col's (c, i, j) order below
        cols = torch.stack(taps, dim=2).reshape(-1, c * k * k, oh * ow)  # (N, K, L)
        y = torch.matmul(self.weights, cols.permute(2, 1, 0))  # (L, n, K) @ (L, K, N) -> (L, n, N)
        return ACTIVATIONS[s.activation](y.permute(2, 1, 0).reshape(-1, n, oh, ow) + self.biases)


class Connected(_BatchNormMixin, Layer):
    def __init__(self, spec: S.Connected):
        super().__init__(spec)
        n = spec.output
        self.weights = nn.Parameter(torch.empty(n, spec.inputs))
        self.biases = nn.Parameter(torch.zeros(n))
        if spec.batch_normalize:
            self._init_bn(n)

    def reset_parameters(self) -> None:
        scale = math.sqrt(2.0 / self.spec.inputs)  # make_connected_layer
        nn.init.uniform_(self.weights, -scale, scale)

    def forward(self, x: Tensor, outs: list, s: S.Connected) -> Tensor:
        x = flat(x)  # CHW flattening = darknet's memory order
        if not s.batch_normalize:
            return ACTIVATIONS[s.activation](F.linear(x, self.weights, self.biases))
        return ACTIVATIONS[s.activation](self._bn(F.linear(x, self.weights)) + self.biases)


class Batchnorm(_BatchNormMixin, Layer):
    def __init__(self, spec: S.Batchnorm):
        super().__init__(spec)
        self._init_bn(spec.out[0])
        # darknet's batchnorm layer has biases that it never loads or saves (always 0 in a loaded net)
        self.register_buffer("biases", torch.zeros(spec.out[0]))

    def forward(self, x: Tensor, outs: list, s: S.Batchnorm) -> Tensor:
        x = image(x, s.inp)
        return self._bn(x) + _bias_view(self.biases, 4)


class Maxpool(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Maxpool) -> Tensor:
        return maxpool_darknet(image(x, s.inp), s)


class Avgpool(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Avgpool) -> Tensor:
        return F.adaptive_avg_pool2d(image(x, s.inp), 1)  # forward_avgpool_layer: global average


class Dropout(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Dropout) -> Tensor:
        # forward_dropout_layer: identity at test time; training scales kept units by 1/(1-p)
        return F.dropout(x, s.probability, self.training)


class Softmax(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Softmax) -> Tensor:
        return softmax_darknet(x, s)


class Cost(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Cost) -> Tensor:
        return x  # the loss is computed by the trainer; the network's output is the layer before


class Crop(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Crop) -> Tensor:
        """NOTE: matches forward_crop_layer (src/crop_layer.c): a centred crop at test time (random offset
        and flip when training), values mapped to ``2x - 1`` unless ``noadjust``."""
        _, h, w = s.inp
        x = image(x, s.inp)
        if self.training:
            dh = int(torch.randint(0, h - s.crop_height + 1, ()))
            dw = int(torch.randint(0, w - s.crop_width + 1, ()))
        else:
            dh, dw = s.offset
        y = x[:, :, dh: dh + s.crop_height, dw: dw + s.crop_width]
        if self.training and s.flip and bool(torch.randint(0, 2, ())):
            y = y.flip(-1)
        return y if s.noadjust else y * 2.0 - 1.0


class Route(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Route) -> Tensor:
        if len(s.layers) == 1:
            return outs[s.layers[0]]
        return torch.cat([image(outs[i], shape) for i, shape in zip(s.layers, s.part_shapes)], dim=1)


class Shortcut(Layer):
    def forward(self, x: Tensor, outs: list, s: S.Shortcut) -> Tensor:
        add = image(outs[s.from_index], s.from_shape)
        return ACTIVATIONS[s.activation](shortcut_darknet(image(x, s.inp), add, s))


#: layer spec class -> module class: the torch kernel table
MODULES: dict[type[S.LayerSpec], type[Layer]] = {
    S.Convolutional: Convolutional,
    S.Local: Local,
    S.Connected: Connected,
    S.Batchnorm: Batchnorm,
    S.Maxpool: Maxpool,
    S.Avgpool: Avgpool,
    S.Dropout: Dropout,
    S.Softmax: Softmax,
    S.Cost: Cost,
    S.Crop: Crop,
    S.Route: Route,
    S.Shortcut: Shortcut,
}
S.check_table(MODULES, "pydarknet.engines.network.MODULES")


# ---------------------------------------------------------------------------------------------------------
# the network


class Network(nn.Module):
    """A darknet network. Call it on a float32 ``(N, C, H, W)`` tensor in [0, 1]; get ``(N, outputs)``.

    A fully convolutional network also takes other input sizes (each size's specs are derived once, as
    darknet's resize_network would); one with a connected, local or crop layer takes its cfg's size only.
    """

    kind = "network"

    def __init__(self, spec: NetSpec, *, init: bool = True):
        super().__init__()
        spec.check_memory()  # before a parameter is allocated
        self.spec = spec
        self.layers = nn.ModuleDict({f"{s.index}_{s.kind}": MODULES[type(s)](s) for s in spec.layers})
        self._seq: list[Layer] = list(self.layers.values())
        if init:  # darknet's random initialisation, layer by layer (one generator stream, in layer order)
            for layer in self._seq:
                layer.reset_parameters()
        self._sized: dict[tuple[int, int], NetSpec] = {}
        self.header = Header()

    # -- forward ------------------------------------------------------------------------------------------
    def spec_for(self, x: Tensor) -> NetSpec:
        """The specs for input ``x``: the cfg's, or derived for its height and width (ValueError where the
        network cannot take it)."""
        c, h, w = self.spec.input_shape
        if x.dim() == 4 and x.shape[1] == c and tuple(x.shape[2:]) == (h, w):
            return self.spec
        size = tuple(x.shape[2:])
        if x.dim() != 4 or x.shape[1] != c or self.spec.fixed_input:
            want = f"(N, {c}, {h}, {w})" if self.spec.fixed_input else f"(N, {c}, H, W)"
            raise ValueError(f"{os.path.basename(self.spec.path)} expects input {want}, got {tuple(x.shape)}")
        if size not in self._sized:
            if len(self._sized) >= 16:
                self._sized.clear()
            resized = self.spec.at_size(size[1], size[0])
            resized.check_memory(x.shape[0], what=f"a {size[1]}x{size[0]} input")
            self._sized[size] = resized
        return self._sized[size]

    def run(self, x: Tensor, spec: NetSpec, stop: int, steps: dict | None = None, *, check: bool = False) -> Tensor:
        """darknet's forward_network over layers ``0 .. stop-1`` of ``spec``; ``steps`` may replace a layer's
        call (index -> callable(x, outs, spec)) or skip it (index -> None). ``check``: raise the
        ``nonfinite_error`` of the first layer whose output holds a NaN or an infinity."""
        outs: list = [None] * len(self._seq)
        kept = spec.kept
        for s, layer in zip(spec.layers[:stop], self._seq):
            if steps is not None and s.index in steps:
                step = steps[s.index]
                x = x if step is None else step(x, outs, s)
            else:
                x = layer(x, outs, s)
            if check and not bool(torch.isfinite(x).all()):
                raise nonfinite_error(spec, s)
            if s.index in kept:
                outs[s.index] = x
        return flat(x)

    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        """(N, C, H, W) -> (N, outputs). With ``logits`` (training's cross-entropy; DistributedDataParallel
        calls forward), the input of the last [softmax] layer instead, (N, inputs)."""
        spec = self.spec_for(x)
        return self.run(x, spec, spec.softmax_index if logits else spec.output_index + 1)

    def forward_logits(self, x: Tensor) -> Tensor:
        return self.forward(x, logits=True)

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """Every layer's output (for conformance checks against darknet's per-layer dumps)."""
        spec = self.spec_for(x)
        outs: list = []
        for s, layer in zip(spec.layers, self._seq):
            x = layer(x, outs, s)
            outs.append(x)
        return outs

    #: images per forward call of ``infer`` on the CPU
    CPU_CHUNK = 4

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The engine interface: (N, C, H, W) float32 array -> (N, outputs) float32 array, in eval mode (a
        network in training mode is switched back afterwards) and without autograd, on the network's device,
        ``CPU_CHUNK`` images a call on the CPU."""
        training = self.training
        self.eval()
        try:
            out = infer_in_chunks(self, batch, self.device, self.spec.outputs)
            if not np.isfinite(out).all():
                with torch.inference_mode():
                    x = torch.from_numpy(np.ascontiguousarray(batch[first_nonfinite_row(out)][None], np.float32))
                    spec = self.spec_for(x)
                    self.run(x.to(self.device), spec, spec.output_index + 1, check=True)
                raise nonfinite_error(self.spec, None)
            return out
        finally:
            self.train(training)

    def close(self) -> None:
        """The engine interface: nothing to release (the module is the caller's)."""

    @property
    def device(self) -> torch.device:
        return next((t.device for t in self.parameters()), torch.device("cpu"))

    def state_version(self) -> tuple:
        """Changes whenever a parameter or buffer is replaced, moved, cast or modified in place through
        autograd-visible operations (``load_state_dict``, ``.to()``, ``p.mul_()`` under no_grad): what an
        engine built from this network compares to know it is stale. (Writes through ``.data`` bypass
        PyTorch's version counters.)"""
        return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in self.state_dict(keep_vars=True).values())

    # -- weights --------------------------------------------------------------------------------------
    def load_params(self, params: Params) -> None:
        with torch.no_grad():
            for layer in self._seq:
                for name, arr in params.get(layer.spec.index, {}).items():
                    getattr(layer, name).copy_(torch.from_numpy(np.ascontiguousarray(arr)))

    def darknet_params(self) -> Params:
        """Layer index -> name -> float array, in the specs' layout (what ``weights.write_weights`` takes)."""
        out: Params = {}
        for layer in self._seq:
            arrays = {n: t.detach().cpu().numpy() for n, t in layer.darknet_params().items()}
            if arrays:
                out[layer.spec.index] = arrays
        return out

    def load_weights(self, path: str | os.PathLike, *, upto: int | None = None) -> Header:
        """Load a darknet weights file (all of it, or the first ``upto`` layers); the other layers keep their
        values."""
        header, params = read_weights(path, self.spec, upto=upto)
        self.load_params(params)
        self.header = header
        return header

    def save_weights(self, path: str | os.PathLike, *, seen: int | None = None) -> None:
        """Write darknet weights atomically, keeping the loaded header where it is a 0.2-style one."""
        h = self.header
        header = Header(h.major, h.minor, h.revision, h.seen if seen is None else seen)
        write_weights(path, self.spec, self.darknet_params(), header=header)


def infer_in_chunks(fn: Callable[[Tensor], Tensor], batch: np.ndarray, device: torch.device | str,
                    outputs: int, chunk: int = Network.CPU_CHUNK) -> np.ndarray:
    """Run ``fn`` over ``batch`` under ``inference_mode``: ``chunk`` images a call on the CPU (same numbers:
    inference treats every image on its own), the whole batch in one call elsewhere."""
    device = torch.device(device)
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    step = chunk if device.type == "cpu" else max(len(x), 1)
    with torch.inference_mode():
        if 0 < len(x) <= step:
            return fn(x.to(device)).float().cpu().numpy()
        outs = [fn(x[i:i + step].to(device)).float().cpu() for i in range(0, len(x), step)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, outputs), np.float32)


def folded_network(spec: NetSpec, params: Params) -> Network:
    """A network for inference only: ``spec`` with every foldable batchnorm folded into the layer before it
    (``NetSpec.folded``), loaded with the folded ``params``, in eval mode, no gradients. What the torch engine
    runs and the ONNX export traces."""
    missing = [(s.index, name) for s in spec.layers for name, _ in s.layout() if name not in params.get(s.index, {})]
    if missing:
        index, name = missing[0]
        raise DarknetError(f"no '{name}' array for this {spec.layers[index].kind} layer", spec.path, layer=index)
    folded_spec, folded = spec.folded(params)
    net = Network(folded_spec, init=False)
    net.load_params(folded)
    return net.eval().requires_grad_(False)


def load_network(cfg_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, *,
                 upto: int | None = None, width: int | None = None, height: int | None = None) -> Network:
    """Build the network of a darknet cfg and load its weights (eval mode).

    >>> import torch, pydarknet
    >>> net = pydarknet.load_network(pydarknet.zoo_cfg("tiny"))   # no weights: darknet's random init
    >>> net(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1000])

    For fast inference open an engine on it (``pydarknet.open_engine``): it folds the batchnorm once and runs
    oneDNN's fused kernels on the CPU.
    """
    spec = load_specs(cfg_path, width=width, height=height)
    if weights_path is None or os.fspath(weights_path) == "":
        if weights_path is not None:
            warnings.warn(DarknetWarning("no weights file given: the network keeps its random initial weights"))
        return Network(spec).eval()
    net = Network(spec, init=False)
    header, params = read_weights(weights_path, spec, upto=upto)
    for layer in net._seq:  # layers the file has no weights for (after upto, dontload): darknet's random init
        if "weights" in dict(layer.spec.layout()) and "weights" not in params.get(layer.spec.index, {}):
            layer.reset_parameters()
    net.load_params(params)
    net.header = header
    return net.eval()
