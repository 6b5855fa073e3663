"""The fast PyTorch inference engine: a network folded and packed once, then only run.

``TorchEngine(network)`` takes the network's parameters as they are when it is built: every foldable
batchnorm is folded into its layer by ``numerics.fold_batchnorm`` (the specs' ``NetSpec.folded``), into a
private copy of the network, and on the CPU every convolution's kernel is reordered once into oneDNN's
layout for the input shape. Inference then runs ``Network.run`` over that copy with the convolutions replaced
by oneDNN's fused convolution + activation (and, for the last linear convolution of a residual block, +
the shortcut's addition), on channels_last feature maps, a few images a call on the CPU. It never changes
the network it was built from, nor itself once built; an engine built before the network was edited is stale
(``is_stale``) and is rebuilt by its owner (``pydarknet.api.Classifier`` does so).

``precision``: ``"fp32"``, or ``"bf16"``: the folded parameters and the feature maps in bfloat16 on oneDNN's
bf16 kernels (CPUs with AVX-512 BF16 or AMX; ``bf16_support`` says why not elsewhere) or CUDA, except the
layer making the logits and those after it (``float_tail``), in float32, so the probabilities are float32
numbers that sum to 1.
(int8 runs on ONNX Runtime: ``engines.ort_infer``.)
"""
from __future__ import annotations

import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import specs as S
from ..errors import DarknetError
from . import first_nonfinite_row, nonfinite_error
from ..specs import NetSpec, Params
from .network import ACTIVATIONS, Network, folded_network, image, infer_in_chunks

PRECISIONS = ("fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

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


def bf16_support(device: torch.device) -> str | None:
    """None where bfloat16 inference runs at speed on ``device``, else the reason it does not (a CPU without
    AVX-512 BF16 / AMX would emulate it, slower than fp32)."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this CUDA device has no bfloat16 support"
    if device.type != "cpu":
        return f"bf16 runs on the CPU or CUDA, not on {device.type}"
    if not HAVE_ONEDNN:
        return "this PyTorch build has no oneDNN (mkldnn)"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "this CPU has no native bfloat16 (AVX-512 BF16 or AMX): use --precision fp32, or int8"
    return None


class _OneDNNConv:
    """One folded convolution on oneDNN: its kernel reordered for each input shape it meets (oneDNN picks the
    layout, and with it the order of the sums, per shape, batch size included: a reorder made for one batch
    size runs another at the cost of other rounding), its activation fused where oneDNN has it."""

    def __init__(self, layer, spec: S.Convolutional):
        self.dense = layer.weights.detach().contiguous(memory_format=torch.channels_last)
        self.biases = layer.biases.detach().contiguous()
        self.pad, self.stride, self.groups = [spec.padding] * 2, [spec.stride] * 2, spec.groups
        self._packed = {(1, *spec.inp): self._pack((1, *spec.inp))}

    def _pack(self, shape: tuple[int, ...]) -> Tensor:
        return torch.ops.mkldnn._reorder_convolution_weight(self.dense, self.pad, self.stride, [1, 1], self.groups,
                                                            list(shape))

    def weight_for(self, x: Tensor) -> Tensor:
        key = tuple(x.shape)
        w = self._packed.get(key)
        if w is None:  # the first call at this batch size or input size: its own kernel layout
            if len(self._packed) >= 8:
                self._packed.clear()
            w = self._packed[key] = self._pack(key)
        return w

    def __call__(self, x: Tensor, activation: str) -> Tensor:
        attr, scalars = ONEDNN_POST_OPS.get(activation, ("none", []))
        y = torch.ops.mkldnn._convolution_pointwise(x, self.weight_for(x), self.biases, self.pad, self.stride,
                                                    [1, 1], self.groups, attr, scalars, None)
        return y if activation in ONEDNN_POST_OPS else ACTIVATIONS[activation](y)

    def with_residual(self, x: Tensor, residual: Tensor, then: str) -> Tensor:
        """``then(conv(x) + residual)`` in one call: oneDNN fuses only relu after the add; other activations
        run in place after it."""
        fused_relu = then == "relu"
        y = torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, self.weight_for(x), self.biases, self.pad, self.stride, [1, 1], self.groups, "add", None,
            "relu" if fused_relu else None, [], None)
        if fused_relu or then == "linear":
            return y
        return F.leaky_relu_(y, 0.1) if then == "leaky" else ACTIVATIONS[then](y)


def float_tail(spec: NetSpec) -> int:
    """The first layer a bf16 engine computes in float32: the last layer with weights before the network's
    output (the one that makes the logits), so that the logits and the softmax over them are float32
    numbers. (With the logits rounded to bf16's 8 bits, outputs within 0.4% of each other became equal: on
    darknet's 30 golden cases the top-5 order changed on 8 and the top-5 classes on 1; in float32 from there
    on, the classes are the same on all 30 and the order changes on 6, between outputs within 3% of each
    other. That layer is a small share of the work: a 1x1 convolution or a connected layer.)"""
    last = spec.last_weighted_index
    return spec.output_index if last is None else last


#: layer spec class -> its oneDNN kernel on the CPU (built from the folded layer); other kinds run their
#: Network module
FAST_KERNELS = {S.Convolutional: _OneDNNConv}


class TorchEngine:
    """Inference on PyTorch: ``infer((N, C, H, W) float32 array)`` -> (N, outputs) float32 array.

    ``TorchEngine(spec, params)`` builds it from a network's specs and darknet arrays (what
    ``weights.read_weights`` gives), ``TorchEngine.from_network(net)`` from a ``Network``'s current
    parameters. See the module docstring."""

    kind = "torch"

    def __init__(self, spec: NetSpec, params: Params, *, device: str | torch.device = "cpu",
                 precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise DarknetError(f"precision {precision!r}: the torch engine runs {', '.join(PRECISIONS)}")
        self.precision = precision
        self.spec = spec
        self.device = torch.device(device)
        if precision == "bf16" and (why := bf16_support(self.device)) is not None:
            raise DarknetError(f"--precision bf16: {why}")
        self.dtype = DTYPES[precision]
        self._source: weakref.ref | None = None
        self.source_version: tuple | None = None
        self._net = folded_network(spec, params).to(device=self.device, dtype=self.dtype)
        self._tail = float_tail(self._net.spec) if self.dtype != torch.float32 else len(spec.layers)
        for layer in self._net._seq[self._tail:]:
            layer.float()
        self._fast = HAVE_ONEDNN and self.device.type == "cpu"
        self._kernels: dict[int, _OneDNNConv] = {}
        if self._fast:
            for s, layer in zip(self._net.spec.layers[:self._tail], self._net._seq):
                kernel = FAST_KERNELS.get(type(s))
                if kernel is not None:
                    self._kernels[s.index] = kernel(layer, s)
        self._steps: dict[tuple[int, int], dict] = {}

    @classmethod
    def from_network(cls, network: Network, *, device: str | torch.device | None = None,
                     precision: str = "fp32") -> "TorchEngine":
        """An engine from ``network``'s parameters as they are now (the network itself is left alone)."""
        engine = cls(network.spec, network.darknet_params(), device=device if device is not None else network.device,
                     precision=precision)
        engine._source = weakref.ref(network)
        engine.source_version = network.state_version()
        return engine

    def is_stale(self) -> bool:
        """Built by ``from_network`` from a network whose parameters changed since (replaced, moved, edited
        in place)."""
        source = self._source() if self._source is not None else None
        return source is not None and source.state_version() != self.source_version

    def _float_tail(self, spec: NetSpec) -> dict:
        """Below fp32: layer index -> the layers from ``float_tail`` on, run in float32 (input cast up)."""
        return {s.index: (lambda x, outs, s, layer=self._net._seq[s.index]: layer(x.float(), outs, s))
                for s in spec.layers[self._tail:]}

    def _steps_for(self, spec: NetSpec) -> dict | None:
        """Layer index -> the oneDNN call replacing the layer (or None: computed with the convolution before);
        in bf16, the layers from ``float_tail`` on in float32."""
        key = (spec.net.height, spec.net.width)
        steps = self._steps.get(key)
        if steps is None:
            steps = self._float_tail(spec)
            for index, conv in self._kernels.items():
                steps[index] = lambda x, outs, s, conv=conv: conv(image(x, s.inp), s.activation)
            for p, q in spec.residual_pairs.items():
                if p in self._kernels:
                    sc = spec.layers[q]
                    steps[p] = (lambda x, outs, s, conv=self._kernels[p], sc=sc:
                                conv.with_residual(image(x, s.inp), image(outs[sc.from_index], sc.from_shape),
                                                   sc.activation))
                    steps[q] = None
            self._steps[key] = steps
        return steps

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) tensor on the engine's device -> (N, outputs)."""
        spec = self._net.spec_for(x)
        stop = spec.output_index + 1
        x = x.to(self.dtype)
        if not self._fast:
            return self._net.run(x, spec, stop, self._steps_for(spec) or None).float()
        # oneDNN's and the 2x2 maxpool's fast layout
        return self._net.run(x.contiguous(memory_format=torch.channels_last), spec, stop, self._steps_for(spec)).float()

    __call__ = forward

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 array -> (N, outputs) float32 array; an output that is not finite is the
        ``nonfinite_error`` of the first layer where it stops being so."""
        out = infer_in_chunks(self.forward, batch, self.device, self.spec.outputs)
        if not np.isfinite(out).all():
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch[first_nonfinite_row(out)][None], np.float32))
                spec = self._net.spec_for(x)
                self._net.run(x.to(self.device, self.dtype), spec, spec.output_index + 1,
                              self._float_tail(spec) or None, check=True)
            raise nonfinite_error(self.spec, None)
        return out

    def close(self) -> None:
        self._kernels.clear()
        self._steps.clear()
        self._net = None
