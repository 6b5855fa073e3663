"""One small ``nn.Module`` per darknet layer kind, the activation table, and darknet's numeric rules.

Every layer is called the same way, ``layer(x, cache)``, where ``cache`` holds the outputs of earlier layers
that a route or shortcut needs. Where darknet's arithmetic differs from PyTorch's defaults it lives in one
named function with a NOTE citing the C function it matches.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import specs as S

# ---------------------------------------------------------------------------------------------------------
# darknet numerics


BN_EPSILON = 0.000001


def darknet_batchnorm(x: Tensor, mean: Tensor, var: Tensor, scales: Tensor) -> Tensor:
    """Inference batch normalisation, without the bias (added after, as darknet does).

    NOTE: matches normalize_cpu + scale_bias (src/blas.c, src/batchnorm_layer.c): darknet divides by
    ``sqrt(var) + .000001``, not PyTorch's ``sqrt(var + eps)``.
    """
    shape = (1, -1) + (1,) * (x.dim() - 2)
    inv = scales / (var.sqrt() + BN_EPSILON)
    return (x - mean.view(shape)) * inv.view(shape)


def batchnorm_fold(weight: Tensor, bias: Tensor, scales: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """Fold darknet's batchnorm (see ``darknet_batchnorm``) into the preceding linear map's weight and bias."""
    inv = scales / (var.sqrt() + BN_EPSILON)
    w = weight * inv.view((-1,) + (1,) * (weight.dim() - 1))
    return w, bias - mean * inv


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


def maxpool_darknet(x: Tensor, size: int, stride: int, padding: int) -> Tensor:
    """Max pooling as darknet does it.

    NOTE: matches forward_maxpool_layer (src/maxpool_layer.c): the window starts at ``-padding/2`` (integer
    division), cells outside the image never win, and the output is ``(w + padding - size)/stride + 1``
    wide. Padding is ``size-1`` by default, so a 2x2/2 pool of an odd width keeps the last column.
    """
    h, w = x.shape[-2:]
    oh = (h + padding - size) // stride + 1
    ow = (w + padding - size) // stride + 1
    lead = padding // 2
    if size == stride == 2 and lead == 0 and h % 2 == 0 and w % 2 == 0 and x.dim() == 4 \
            and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
        return _maxpool_2x2_channels_last(x)  # the same maxima, found faster
    right = (ow - 1) * stride + size - w - lead
    bottom = (oh - 1) * stride + size - h - lead
    if lead or right > 0 or bottom > 0:
        x = F.pad(x, (lead, max(right, 0), lead, max(bottom, 0)), value=-math.inf)
    y = F.max_pool2d(x, size, stride)
    if max(lead, right, bottom) >= size:  # a window wholly outside the image: darknet leaves -FLT_MAX there
        y = y.clamp_min(-torch.finfo(torch.float32).max)
    return y


def _maxpool_2x2_channels_last(x: Tensor) -> Tensor:
    """A 2x2/2 pool of an even-sized channels_last map as two ``torch.maximum`` of strided views: the
    maxima ``F.max_pool2d`` finds, 1.4-2.5x sooner at batch 1 (measured in benchmarks/forward.py's runs)."""
    n, c, h, w = x.shape
    v = x.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2 * c)
    rows = torch.maximum(v[:, :, 0], v[:, :, 1]).view(n, h // 2, w // 2, 2, c)
    return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)


def shortcut_darknet(out: Tensor, add: Tensor, alpha: float, beta: float) -> Tensor:
    """``alpha*out + beta*add`` over the overlap of two maps of different size and depth.

    NOTE: matches shortcut_cpu (src/blas.c): the larger map is sampled with a stride (w1/w2), the
    smaller is written with a stride (w2/w1), and only the first min(c1, c2) channels are added; the rest
    of ``out`` passes through.
    """
    if out.shape == add.shape:
        return alpha * out + beta * add if (alpha, beta) != (1.0, 1.0) else out + add
    c2, h2, w2 = out.shape[1:]
    c1, h1, w1 = add.shape[1:]
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    minc, minh, minw = min(c1, c2), min(h1, h2), min(w1, w2)
    src = add[:, :minc, : minh * stride : stride, : minw * stride : stride]
    out = out.clone()
    dst = out[:, :minc, : minh * sample : sample, : minw * sample : sample]
    dst.mul_(alpha).add_(src, alpha=beta) if beta != 1.0 else dst.mul_(alpha).add_(src)
    return out


def softmax_darknet(x: Tensor, groups: int, temperature: float) -> Tensor:
    """Softmax over each of ``groups`` equal, contiguous slices of the flattened input.

    NOTE: matches softmax_cpu / softmax (src/blas.c): inputs divided by the temperature.
    """
    n = x.shape[0]
    flat = x.reshape(n, groups, -1)
    if temperature != 1.0:
        flat = flat / temperature
    return torch.softmax(flat, dim=-1).reshape(n, -1, 1, 1)


# ---------------------------------------------------------------------------------------------------------
# activations (src/activations.h; relu6, swish, mish from AlexeyAB's fork)


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _mish(x: Tensor) -> Tensor:
    # NOTE: AlexeyAB's softplus has a threshold of 20 (softplus_activate), as PyTorch's default.
    return x * torch.tanh(F.softplus(x, threshold=20.0))


ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2.0 * torch.sigmoid(x) - 1.0,
    "relu": F.relu,
    "elu": lambda x: torch.where(x >= 0, x, torch.expm1(x)),
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x)),
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
assert set(ACTIVATION_FUNCTIONS) == set(S.ACTIVATIONS)


# ---------------------------------------------------------------------------------------------------------
# oneDNN fast path for CPU inference


#: darknet activation -> oneDNN post-op (name, scalars) applied inside the convolution; others run after it
ONEDNN_POST_OPS: dict[str, tuple[str, list[float]]] = {
    "linear": ("none", []),
    "relu": ("relu", []),
    "leaky": ("leaky_relu", [0.1]),
    "relu6": ("hardtanh", [0.0, 6.0]),
    "logistic": ("sigmoid", []),
    "tanh": ("tanh", []),
    "hardtan": ("hardtanh", [-1.0, 1.0]),
    "swish": ("swish", []),
}
HAVE_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def use_onednn(x: Tensor) -> bool:
    """Whether a CPU inference step may run on oneDNN's prepacked kernels: float32 on the CPU, no gradient
    wanted, and not being traced or compiled (export and torch.compile see the plain operators)."""
    return (HAVE_ONEDNN and x.device.type == "cpu" and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and x.requires_grad)
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


# ---------------------------------------------------------------------------------------------------------
# layers


class Layer(nn.Module):
    """Base: holds its spec; ``forward(x, cache)``; parameters named as darknet's (biases, scales, ...)."""

    def __init__(self, spec: S.LayerSpec):
        super().__init__()
        self.spec = spec

    def darknet_params(self) -> dict[str, Tensor]:
        """The tensors of ``spec.layout()``, by name, in file order."""
        return {name: getattr(self, name) for name, _ in self.spec.layout()}

    def extra_repr(self) -> str:
        return self.spec.table_line().strip()


class _BatchNormMixin:
    """Darknet batchnorm state on a layer: scales (learned), biases, rolling mean/variance (buffers)."""

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
        # darknet's init (make_convolutional_layer): normal scaled by sqrt(2/(size*size*c/groups))
        nn.init.normal_(self.weights, 0.0, math.sqrt(2.0 / (spec.size * spec.size * c / spec.groups)))
        self.biases = nn.Parameter(torch.zeros(n))
        if spec.batch_normalize:
            self._init_bn(n)
        self.act = ACTIVATION_FUNCTIONS[spec.activation]
        self._fused: tuple[Tensor, Tensor] | None = None
        self._packed: dict[tuple[int, ...], Tensor] = {}  # input shape -> oneDNN-reordered fused kernel

    def fuse(self) -> None:
        """Precompute the batchnorm-folded kernel for inference (used only in eval mode)."""
        with torch.no_grad():
            if self.spec.batch_normalize:
                w, b = batchnorm_fold(self.weights, self.biases, self.scales, self.rolling_mean,
                                      self.rolling_variance)
            else:
                w, b = self.weights.clone(), self.biases.clone()
        self._fused = (w.contiguous(), b.contiguous())
        self._packed = {}

    def unfuse(self) -> None:
        self._fused = None
        self._packed = {}

    def __getstate__(self) -> dict:  # pickle / deepcopy: the oneDNN kernels are a cache, rebuilt on demand
        state = super().__getstate__()
        state["_packed"] = {}
        return state

    def _forward_onednn(self, x: Tensor, residual: Tensor | None = None, then: str = "linear") -> Tensor:
        """The fused convolution and its activation in one oneDNN call, the kernel reordered once per input
        shape. Agrees with F.conv2d to float rounding (the conformance tests run on this path).

        With ``residual`` (a linear convolution followed by a plain shortcut, fused by the Network), the
        call computes ``then(conv(x) + residual)``: the shortcut costs no pass of its own over memory."""
        s = self.spec
        key = tuple(x.shape)
        w = self._packed.get(key)
        pad, stride = [s.padding] * 2, [s.stride] * 2
        if w is None:
            if len(self._packed) >= 8:
                self._packed.clear()
            w = self._packed[key] = torch.ops.mkldnn._reorder_convolution_weight(
                self._fused[0].contiguous(memory_format=torch.channels_last), pad, stride, [1, 1], s.groups,
                list(key))
        if residual is not None:  # oneDNN fuses only relu after the add; others run in place after it
            fused_relu = then == "relu"
            y = torch.ops.mkldnn._convolution_pointwise.binary(
                x, residual, w, self._fused[1], pad, stride, [1, 1], s.groups, "add", None,
                "relu" if fused_relu else None, [], None)
            if fused_relu or then == "linear":
                return y
            return F.leaky_relu_(y, 0.1) if then == "leaky" else ACTIVATION_FUNCTIONS[then](y)
        attr, scalars = ONEDNN_POST_OPS.get(s.activation, ("none", []))
        y = torch.ops.mkldnn._convolution_pointwise(x, w, self._fused[1], pad, stride, [1, 1], s.groups,
                                                    attr, scalars, None)
        return y if s.activation in ONEDNN_POST_OPS else self.act(y)

    def forward(self, x: Tensor, cache: list) -> Tensor:
        s = self.spec
        if self._fused is not None and not self.training:
            if use_onednn(x):
                return self._forward_onednn(x)
            w, b = self._fused
            return self.act(F.conv2d(x, w, b, s.stride, s.padding, 1, s.groups))
        y = F.conv2d(x, self.weights, None, s.stride, s.padding, 1, s.groups)
        if s.batch_normalize:
            y = self._bn(y)
        return self.act(y + _bias_view(self.biases, 4))


class Connected(_BatchNormMixin, Layer):
    def __init__(self, spec: S.Connected):
        super().__init__(spec)
        n = spec.output
        self.weights = nn.Parameter(torch.empty(n, spec.inputs))
        scale = math.sqrt(2.0 / spec.inputs)  # make_connected_layer
        nn.init.uniform_(self.weights, -scale, scale)
        self.biases = nn.Parameter(torch.zeros(n))
        if spec.batch_normalize:
            self._init_bn(n)
        self.act = ACTIVATION_FUNCTIONS[spec.activation]

    def forward(self, x: Tensor, cache: list) -> Tensor:
        y = F.linear(x.reshape(x.shape[0], -1), self.weights)  # CHW flattening = darknet's memory order
        if self.spec.batch_normalize:
            y = self._bn(y)
        return self.act(y + self.biases).reshape(x.shape[0], -1, 1, 1)


class Batchnorm(_BatchNormMixin, Layer):
    def __init__(self, spec: S.Batchnorm):
        super().__init__(spec)
        self._init_bn(spec.out[0])
        # darknet's batchnorm layer has biases that it never loads or saves (always 0 in a loaded net)
        self.register_buffer("biases", torch.zeros(spec.out[0]))

    def forward(self, x: Tensor, cache: list) -> Tensor:
        return self._bn(x) + _bias_view(self.biases, x.dim())


class Maxpool(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        s = self.spec
        return maxpool_darknet(x, s.size, s.stride, s.padding)


class Avgpool(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)  # forward_avgpool_layer: global average


class Dropout(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        # forward_dropout_layer: identity at test time; training scales kept units by 1/(1-p)
        return F.dropout(x, self.spec.probability, self.training)


class Softmax(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        return softmax_darknet(x, self.spec.groups, self.spec.temperature)


class Cost(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        return x  # the loss is computed by the trainer; the network's output is the layer before


class Crop(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        """NOTE: matches forward_crop_layer (src/crop_layer.c): a centred crop at test time (random offset
        and flip when training), values mapped to ``2x - 1`` unless ``noadjust``."""
        s = self.spec
        h, w = x.shape[-2:]
        if self.training:
            dh = int(torch.randint(0, h - s.crop_height + 1, ()))
            dw = int(torch.randint(0, w - s.crop_width + 1, ()))
        else:
            dh, dw = (h - s.crop_height) // 2, (w - s.crop_width) // 2
        y = x[:, :, dh: dh + s.crop_height, dw: dw + s.crop_width]
        if self.training and s.flip and bool(torch.randint(0, 2, ())):
            y = y.flip(-1)
        return y if s.noadjust else y * 2.0 - 1.0


class Route(Layer):
    def forward(self, x: Tensor, cache: list) -> Tensor:
        parts = [cache[i] for i in self.spec.layers]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class Shortcut(Layer):
    def __init__(self, spec: S.Shortcut):
        super().__init__(spec)
        self.act = ACTIVATION_FUNCTIONS[spec.activation]

    def forward(self, x: Tensor, cache: list) -> Tensor:
        s = self.spec
        return self.act(shortcut_darknet(x, cache[s.from_index], s.alpha, s.beta))


#: layer kind -> module class
MODULES: dict[str, type[Layer]] = {
    "convolutional": Convolutional,
    "connected": Connected,
    "batchnorm": Batchnorm,
    "maxpool": Maxpool,
    "avgpool": Avgpool,
    "dropout": Dropout,
    "softmax": Softmax,
    "cost": Cost,
    "crop": Crop,
    "route": Route,
    "shortcut": Shortcut,
}
assert set(MODULES) == set(S.BUILDERS)
