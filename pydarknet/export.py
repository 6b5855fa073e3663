"""Export a darknet classifier: to ONNX (checked against ONNX Runtime), and to / from a PyTorch state dict.

ONNX (``export_onnx``): the network is rebuilt for export as a graph of plain operators, with batchnorm
folded into every convolution and connected layer, and traced by PyTorch's TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``; it needs neither ``onnxscript`` nor the network's own modules,
which the exporter would switch between training and eval mode). darknet's rules become standard ONNX
operators:

* maxpool: darknet's window offset (``-padding/2``) and its ``-inf`` padding (layers.maxpool_darknet) become
  the asymmetric ``pads`` of one ``MaxPool`` node (a ``Pad(-inf)`` is kept only where a window would lie
  wholly in the padding, where darknet leaves ``-FLT_MAX``);
* shortcut between maps of different size or depth (layers.shortcut_darknet): the strided, channel-truncated
  sum is ``Slice`` + ``Pad`` (zeros) + ``Add``, no scatter;
* connected: ``Flatten`` + ``Gemm``; avgpool: ``GlobalAveragePool``; softmax over ``groups`` slices:
  ``Reshape`` + ``Softmax``; crop at test time: ``Slice`` (+ ``2x - 1``); dropout and cost vanish.

The file is verified before it is written (atomically): ``onnx.checker`` (full check), then ONNX Runtime on a
fixed input (and the caller's) against the network itself: max abs difference <= 1e-5 and identical top-5.

State dict (``export_state_dict`` / ``load_state_dict_into``): ``net.state_dict()`` as it is, names like
``layers.0_convolutional.weights`` with darknet's parameter names (unfolded batchnorm), written as
``.safetensors`` (with the cfg text and darknet header as metadata) or ``.pt`` (``torch.save`` of a plain
dict of tensors, loadable with ``torch.load(weights_only=True)``; no metadata).
"""
from __future__ import annotations

import io
import math
import os
import re
import time
import warnings
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .atomic import atomic_write
from .errors import DarknetError
from .layers import ACTIVATION_FUNCTIONS, BN_EPSILON, batchnorm_fold
from .network import Network
from .weights import Header

#: max abs difference allowed between ONNX Runtime and the network, and the top-k that must agree.
ONNX_TOLERANCE = 1e-5
TOPK = 5
INPUT_NAME, OUTPUT_NAME = "input", "output"
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
_FLT_MAX = float(torch.finfo(torch.float32).max)
ONNX_MAX_BYTES = (2 << 30) - (64 << 20)  # protobuf's 2 GiB message limit, less room for the graph
MIN_OPSET = 13  # Softmax over one axis (older opsets flatten its input to 2-D first)


def _max_opset() -> int:
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):
        return 20


def _version() -> str:
    from . import __version__

    return __version__


# ---------------------------------------------------------------------------------------------------------
# the network rebuilt for export


class _Consts(nn.Module):
    """One layer's constants for the exported graph (initializers named ``layers.<idx>_<kind>.<name>``)."""

    def __init__(self, **tensors: Tensor):
        super().__init__()
        for name, t in tensors.items():
            self.register_buffer(name, t.detach().to("cpu", torch.float32).clone().contiguous())


#: Activations whose layers.ACTIVATION_FUNCTIONS form has no ONNX symbolic (expm1), as single ONNX ops.
_EXPORT_ACTIVATIONS = dict(ACTIVATION_FUNCTIONS)
_EXPORT_ACTIVATIONS.update({
    "elu": F.elu,  # Elu(alpha=1): x if x >= 0 else exp(x) - 1, as elu_activate
    "selu": lambda x: 1.0507 * F.elu(x, 1.6732),  # selu_activate's constants, not torch.selu's
})


def _image(x: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """A flat (N, C*H*W) activation back to the (N, C, H, W) image darknet's specs give it."""
    return x.reshape(-1, *shape) if x.dim() == 2 else x


def _flat(x: Tensor) -> Tensor:
    return x.flatten(1) if x.dim() != 2 else x


class _ExportGraph(nn.Module):
    """Darknet's forward pass (network.Network.forward) with every shape a Python constant, from the specs,
    so that tracing records one plain operator per step and no shape arithmetic. Only the batch is free."""

    def __init__(self, net: Network):
        super().__init__()
        spec = net.spec
        self.specs = spec.layers[: spec.output_index + 1]
        self.consts = nn.ModuleDict()
        needed: set[int] = set()
        with torch.no_grad():
            for s in self.specs:
                needed.update(getattr(s, "layers", ()))
                if s.kind == "shortcut":
                    needed.add(s.from_index)
                key = f"{s.index}_{s.kind}"
                layer = net.layers[key]
                if s.kind in ("convolutional", "connected"):
                    if s.batch_normalize:  # fold darknet's batchnorm (same arithmetic as Network.fuse)
                        w, b = batchnorm_fold(layer.weights, layer.biases, layer.scales, layer.rolling_mean,
                                              layer.rolling_variance)
                    else:
                        w, b = layer.weights, layer.biases
                    self.consts[key] = _Consts(weight=w, bias=b)
                elif s.kind == "batchnorm":
                    inv = layer.scales / (layer.rolling_variance.sqrt() + BN_EPSILON)
                    self.consts[key] = _Consts(scale=inv, shift=layer.biases - layer.rolling_mean * inv)
        self.needed = needed

    def forward(self, x: Tensor) -> Tensor:
        cache: dict[int, Tensor] = {}
        for s in self.specs:
            x = getattr(self, f"_{s.kind}")(s, x, cache)
            if s.index in self.needed:
                cache[s.index] = x
        return _flat(x)

    def _c(self, s, name: str) -> Tensor:
        return getattr(self.consts[f"{s.index}_{s.kind}"], name)

    def _convolutional(self, s, x, cache):
        y = F.conv2d(_image(x, s.inp), self._c(s, "weight"), self._c(s, "bias"), s.stride, s.padding, 1, s.groups)
        return _EXPORT_ACTIVATIONS[s.activation](y)

    def _connected(self, s, x, cache):
        return _EXPORT_ACTIVATIONS[s.activation](F.linear(_flat(x), self._c(s, "weight"), self._c(s, "bias")))

    def _batchnorm(self, s, x, cache):
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * self._c(s, "scale").view(view) + self._c(s, "shift").view(view)

    def _maxpool(self, s, x, cache):
        # NOTE: layers.maxpool_darknet with the sizes from the spec; the -inf Pad is folded into MaxPool's
        # pads after export (_fold_pad_into_maxpool).
        _, h, w = s.inp
        _, oh, ow = s.out
        lead = s.padding // 2
        right = (ow - 1) * s.stride + s.size - w - lead
        bottom = (oh - 1) * s.stride + s.size - h - lead
        x = _image(x, s.inp)
        if lead or right > 0 or bottom > 0:
            x = F.pad(x, (lead, max(right, 0), lead, max(bottom, 0)), value=-math.inf)
        y = F.max_pool2d(x, s.size, s.stride)
        if max(lead, right, bottom) >= s.size:
            y = y.clamp_min(-_FLT_MAX)
        return y

    def _avgpool(self, s, x, cache):
        return F.adaptive_avg_pool2d(_image(x, s.inp), 1)

    def _dropout(self, s, x, cache):
        return x

    def _cost(self, s, x, cache):
        return x

    def _softmax(self, s, x, cache):
        x = _flat(x)
        if s.temperature != 1.0:
            x = x / s.temperature
        if s.groups == 1:
            return torch.softmax(x, dim=1)
        return torch.softmax(x.reshape(-1, s.groups, s.inputs // s.groups), dim=-1).reshape(-1, s.inputs)

    def _crop(self, s, x, cache):
        _, h, w = s.inp
        dh, dw = (h - s.crop_height) // 2, (w - s.crop_width) // 2
        y = _image(x, s.inp)[:, :, dh: dh + s.crop_height, dw: dw + s.crop_width]
        return y if s.noadjust else y * 2.0 - 1.0

    def _route(self, s, x, cache):
        parts = [cache[i] for i in s.layers]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([_image(p, self.specs[i].out) for p, i in zip(parts, s.layers)], dim=1)

    def _shortcut(self, s, x, cache):
        # NOTE: layers.shortcut_darknet, written without in-place updates: the (strided, channel-truncated)
        # overlap ``delta`` is laid into zeros of the output's shape with Pad, then added.
        out = _image(x, s.inp)
        add = _image(cache[s.from_index], s.from_shape)
        alpha, beta = s.alpha, s.beta
        c2, h2, w2 = s.inp
        c1, h1, w1 = s.from_shape
        if (c1, h1, w1) == (c2, h2, w2):
            y = out + add if (alpha, beta) == (1.0, 1.0) else alpha * out + beta * add
            return _EXPORT_ACTIVATIONS[s.activation](y)
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
        minc, minh, minw = min(c1, c2), min(h1, h2), min(w1, w2)
        delta = add[:, :minc] if minc < c1 else add
        if stride > 1 or minh < h1 or minw < w1:
            delta = delta[:, :, : minh * stride: stride, : minw * stride: stride]
        if beta != 1.0:
            delta = delta * beta
        if alpha != 1.0:
            dst = out[:, :minc, : minh * sample: sample, : minw * sample: sample]
            delta = delta + dst * (alpha - 1.0)
        if sample > 1:  # written every `sample` cells: interleave zeros
            delta = F.pad(delta.reshape(-1, minc, minh, 1, minw, 1), (0, sample - 1, 0, 0, 0, sample - 1))
            delta = delta.reshape(-1, minc, minh * sample, minw * sample)
        dh, dw = h2 - minh * sample, w2 - minw * sample  # the overlap is (minc, minh*sample, minw*sample)
        if dh or dw or c2 > minc:
            delta = F.pad(delta, (0, dw, 0, dh, 0, c2 - minc))
        return _EXPORT_ACTIVATIONS[s.activation](out + delta)


# ---------------------------------------------------------------------------------------------------------
# ONNX graph clean-up


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise DarknetError(f"ONNX export needs the 'onnx' and 'onnxruntime' packages ({e.name} is missing): "
                           "pip install 'pydarknet[onnx]'") from None
    return onnx, onnxruntime


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


_FOLDABLE = frozenset({"ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze",
                       "Squeeze", "Gather", "Add", "Sub", "Mul", "Div", "Neg", "Range", "Expand", "Identity"})
_FOLD_MAX_ELEMENTS = 1 << 16


def _const_values(g) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and "value" in _attrs(n):
            values[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
    return values


def _fold_constants(model) -> int:
    """Evaluate the small shape arithmetic the exporter leaves behind (e.g. the pads of every ``Pad``:
    ConstantOfShape -> Concat -> Reshape -> Slice -> Transpose -> Cast) into initializers. Returns how many
    nodes were folded; only small tensors from a fixed list of side-effect-free operators."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    values = _const_values(g)
    folded = []
    for n in g.node:
        if n.op_type not in _FOLDABLE or n.domain not in ("", "ai.onnx"):
            continue
        ins = [i for i in n.input if i]
        if not ins or any(i not in values for i in ins) or any(values[i].size > _FOLD_MAX_ELEMENTS for i in ins):
            continue
        try:
            results = ReferenceEvaluator(n, opsets={"": opset}).run(None, {i: values[i] for i in ins})
        except Exception:  # noqa: BLE001 - anything the reference evaluator cannot do stays as it is
            continue
        if any(np.asarray(r).size > _FOLD_MAX_ELEMENTS for r in results):
            continue
        for name, r in zip(n.output, results):
            values[name] = np.asarray(r)
        folded.append(n)
    if not folded:
        return 0
    made = {o for n in folded for o in n.output}
    keep = [n for n in g.node if not any(o in made for o in n.output)]
    del g.node[:]
    g.node.extend(keep)
    outputs = {o.name for o in g.output}
    for name in made:
        if name in outputs:  # never the case for a network's output, but keep the graph valid regardless
            g.node.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(values[name])))
        else:
            g.initializer.append(numpy_helper.from_array(values[name], name=name))
    return len(folded)


def _bypass_identities(model) -> int:
    """Readers of ``Identity(x)`` read ``x`` (the exporter shares equal initializers through Identity)."""
    g = model.graph
    outputs = {o.name for o in g.output}
    alias = {}
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] not in outputs:
            alias[n.output[0]] = alias.get(n.input[0], n.input[0])
    if not alias:
        return 0
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] in alias:
            continue
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    return len(alias)


def _merge_slices(model) -> int:
    """``Slice(Slice(x))`` on different axes, the inner read only by the outer, becomes one Slice."""
    from onnx import numpy_helper

    g = model.graph
    values = _const_values(g)
    producers = {o: n for n in g.node for o in n.output}
    readers = Counter(i for n in g.node for i in n.input)
    outputs = {o.name for o in g.output}

    def params(n):
        if n.op_type != "Slice" or len(n.input) < 4 or any(i not in values for i in n.input[1:4]):
            return None
        has_steps = len(n.input) > 4 and bool(n.input[4])
        if has_steps and n.input[4] not in values:
            return None
        starts, ends, axes = (values[i].reshape(-1).tolist() for i in n.input[1:4])
        steps = values[n.input[4]].reshape(-1).tolist() if has_steps else [1] * len(starts)
        return starts, ends, axes, steps

    merged = 0
    dropped = set()
    for n in g.node:
        outer = params(n)
        inner_node = producers.get(n.input[0]) if outer else None
        inner = params(inner_node) if inner_node is not None and id(inner_node) not in dropped else None
        if inner is None or readers[n.input[0]] != 1 or n.input[0] in outputs:
            continue
        if set(inner[2]) & set(outer[2]) or any(a < 0 for a in inner[2] + outer[2]):
            continue
        starts, ends, axes, steps = (a + b for a, b in zip(inner, outer))
        base = f"{n.output[0]}__merged"
        arrays = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
        names = []
        for key, arr in arrays.items():
            g.initializer.append(numpy_helper.from_array(np.asarray(arr, dtype=np.int64), name=f"{base}_{key}"))
            names.append(f"{base}_{key}")
        del n.input[:]
        n.input.extend([inner_node.input[0]] + names)
        dropped.add(id(inner_node))
        merged += 1
    if dropped:
        keep = [n for n in g.node if id(n) not in dropped]
        del g.node[:]
        g.node.extend(keep)
    return merged


def _fold_pad_into_maxpool(model) -> int:
    """``Pad(x, pads, -inf) -> MaxPool`` becomes ``MaxPool(x, pads=...)`` where every pad is smaller than the
    kernel (then no window lies wholly in the padding, and MaxPool's padding never wins: the same numbers).
    Returns how many were folded."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    const_nodes = {n.output[0]: n for n in g.node if n.op_type == "Constant"}

    def const(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = const_nodes.get(name)
        if node is not None:
            value = _attrs(node).get("value")
            if value is not None:
                return numpy_helper.to_array(value)
        return None

    consumers = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    outputs = {o.name for o in g.output}
    folded = []
    for n in g.node:
        if n.op_type != "Pad" or _attrs(n).get("mode", b"constant") not in (b"constant", "constant"):
            continue
        if len(n.input) < 3 or (len(n.input) > 3 and n.input[3]):
            continue
        pads, value = const(n.input[1]), const(n.input[2])
        if pads is None or value is None or pads.size != 8 or not np.all(np.isneginf(value)):
            continue
        pads = [int(p) for p in pads]
        if pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
            continue
        users = consumers[n.output[0]]
        if not users or n.output[0] in outputs or any(u.op_type != "MaxPool" for u in users):
            continue
        new_pads = [pads[2], pads[3], pads[6], pads[7]]  # MaxPool: (top, left, bottom, right)
        ok = True
        for u in users:
            a = _attrs(u)
            kernel = list(a.get("kernel_shape", []))
            if (len(kernel) != 2 or any(a.get("pads", [0, 0, 0, 0])) or a.get("ceil_mode", 0)
                    or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                    or any(d != 1 for d in a.get("dilations", [1, 1])) or len(u.output) > 1
                    or any(p >= kernel[i % 2] for i, p in enumerate(new_pads))):
                ok = False
        if not ok:
            continue
        for u in users:
            u.input[0] = n.input[0]
            kept = [a for a in u.attribute if a.name != "pads"]
            del u.attribute[:]
            u.attribute.extend(kept + [helper.make_attribute("pads", new_pads)])
        folded.append(n)
    if folded:
        keep = [n for n in g.node if all(n is not f for f in folded)]
        del g.node[:]
        g.node.extend(keep)
    return len(folded)


def _prune(model) -> None:
    """Drop nodes and initializers nothing reads (the Pad folding leaves their constants behind)."""
    g = model.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(i for i in n.input if i)
    keep.reverse()
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in live]
    if len(inits) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(inits)


def _cfg_text(net: Network) -> str | None:
    try:
        with open(net.spec.path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (OSError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------------------
# checking


def _as_batch(inputs: Any, shape: tuple[int, int, int]) -> Tensor:
    """A tensor / array (C,H,W) or (N,C,H,W), or a sequence of them -> float32 (N,C,H,W)."""
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = [inputs]
    parts = []
    for item in inputs:
        t = torch.as_tensor(np.asarray(item) if not isinstance(item, Tensor) else item).detach().cpu()
        t = t.to(torch.float32)
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4 or tuple(t.shape[1:]) != tuple(shape):
            c, h, w = shape
            raise DarknetError(f"check inputs must be ({c}, {h}, {w}) or (N, {c}, {h}, {w}) images, "
                               f"got {tuple(t.shape)}")
        parts.append(t)
    if not parts:
        raise DarknetError("no check inputs given")
    return torch.cat(parts)


def _topk(y: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-y, axis=1, kind="stable")[:, :k]


def _compare(net: Network, session, x: Tensor, batch: int | str) -> dict:
    """Run ours and ONNX Runtime on ``x`` (in chunks; padded with zeros to a static batch where it must be).

    Returns images, max_abs_diff, scale (max |ours|), top5_same (every row's top-k indices identical) and
    top5_tie_swaps (rows whose top-k differ only between outputs that are equal in ours within the allowed
    difference, e.g. saturated tanh outputs: not a disagreement)."""
    step = 16 if batch == "dynamic" else int(batch)
    device = next((t.device for t in net.state_dict().values()), torch.device("cpu"))
    worst, scale, rows_differ, ties = 0.0, 0.0, 0, 0
    ours_all, theirs_all = [], []
    for start in range(0, x.shape[0], step):
        chunk = x[start: start + step]
        n = chunk.shape[0]
        if batch != "dynamic" and n < step:
            chunk = torch.cat([chunk, chunk.new_zeros((step - n,) + tuple(chunk.shape[1:]))])
        with torch.inference_mode():
            ours = net(chunk.to(device)).float().cpu().numpy()[:n]
        theirs = session.run([OUTPUT_NAME], {INPUT_NAME: chunk.numpy()})[0][:n]
        if theirs.shape != ours.shape:
            raise DarknetError(f"ONNX Runtime returned {theirs.shape}, pydarknet {ours.shape}")
        diff = np.abs(theirs.astype(np.float64) - ours.astype(np.float64))
        worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
        scale = max(scale, float(np.abs(ours).max()))
        ours_all.append(ours)
        theirs_all.append(theirs)
    ours, theirs = np.concatenate(ours_all), np.concatenate(theirs_all)
    k = min(TOPK, ours.shape[1])
    mine, other = _topk(ours, k), _topk(theirs, k)
    for row in np.nonzero((mine != other).any(axis=1))[0]:
        rows_differ += 1
        if np.abs(ours[row, other[row]] - ours[row, mine[row]]).max() <= 2 * worst:
            ties += 1
    return {"images": int(x.shape[0]), "max_abs_diff": worst, "scale": scale, "top5_same": rows_differ == 0,
            "top5_tie_swaps": ties, "top5_rows_differ": rows_differ}


# ---------------------------------------------------------------------------------------------------------
# ONNX export


def export_onnx(net: Network, path: str | os.PathLike, *, opset: int = 17, batch: int | str = "dynamic",
                check: bool = True, inputs: Any = None, tolerance: float = ONNX_TOLERANCE) -> dict:
    """Write ``net`` as an ONNX model at ``path`` and return a report.

    The graph takes ``input``: float32 ``(N, C, H, W)`` in [0, 1] at the cfg's size (what ``net`` takes) and
    gives ``output``: ``(N, outputs)`` (softmax probabilities for a classifier). ``batch`` is ``"dynamic"``
    (N free) or a fixed batch size. The model passes ``onnx.checker`` (full check); with ``check`` ONNX
    Runtime runs it on a fixed random input (plus ``inputs``: images ``(C,H,W)`` / ``(N,C,H,W)``, tensors or
    arrays, or a list of them) and must agree with ``net`` (in eval mode): max abs difference within
    ``tolerance`` (times the largest output where that exceeds 1: a net without softmax) and the same top-5
    indices for every image (a swap between outputs equal within that difference, such as saturated tanh
    outputs, is reported as a tie, not a failure). Nothing is written unless all of that holds; then the
    file is written atomically (temp file in the same directory, fsync, rename).

    Report keys: path, opset, batch, exporter, file_bytes, nodes, ops (op type -> count), initializers,
    checked, images_checked, max_abs_diff, top5_same, top5_tie_swaps, output_scale, tolerance,
    allowed_diff, seconds. Raises DarknetError on any failure (missing onnx/onnxruntime included).
    """
    t0 = time.perf_counter()
    onnx, ort = _onnx()
    if not isinstance(net, Network):
        raise DarknetError(f"export_onnx needs a pydarknet Network, got {type(net).__name__}")
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise DarknetError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    top = _max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise DarknetError(f"opset {opset!r}: the TorchScript-based exporter writes opsets {MIN_OPSET} to {top}")
    path = os.fspath(path)
    shape = tuple(net.spec.input_shape)
    check_x = None
    if check:
        n = 2 if batch == "dynamic" else batch
        gen = torch.Generator().manual_seed(0)
        check_x = torch.rand((n,) + shape, generator=gen)
        if inputs is not None:
            check_x = torch.cat([check_x, _as_batch(inputs, shape)])

    nbytes = 4 * net.spec.num_params
    if nbytes > ONNX_MAX_BYTES:
        raise DarknetError(f"{nbytes / 2**30:.2f} GiB of weights: over the 2 GiB an ONNX file can hold without "
                           "external data, which this exporter does not write", net.spec.path)
    graph = _ExportGraph(net).eval()
    example = torch.zeros((1 if batch == "dynamic" else batch,) + shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")  # strided Slice: ORT's job
        try:
            torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=({INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}}
                                            if batch == "dynamic" else None),
                              do_constant_folding=True, export_params=True)
        except Exception as e:  # the exporter's errors are of many types; say which layer kinds were in play
            kinds = ", ".join(sorted({s.kind for s in graph.specs}))
            raise DarknetError(f"torch.onnx.export failed at opset {opset} ({type(e).__name__}: {e}); "
                               f"layer kinds: {kinds}", net.spec.path) from e
    del graph
    model = onnx.load_from_string(buf.getvalue())
    del buf
    _fold_constants(model)
    _prune(model)
    _bypass_identities(model)
    while _merge_slices(model):
        _prune(model)
    _fold_pad_into_maxpool(model)
    _prune(model)
    model.producer_name, model.producer_version = "pydarknet", _version()
    c, h, w = shape
    model.doc_string = (f"{os.path.basename(net.spec.path)} exported by pydarknet {_version()}: input float32 "
                        f"(N, {c}, {h}, {w}) RGB in [0, 1]; output (N, {net.spec.outputs})")
    meta = {"darknet_cfg_name": os.path.basename(net.spec.path), "input_shape": f"{c},{h},{w}",
            "input_range": "0..1 float32 RGB, NCHW", "outputs": str(net.spec.outputs)}
    text = _cfg_text(net)
    if text is not None:
        meta["darknet_cfg"] = text
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    data = model.SerializeToString()
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise DarknetError(f"the exported model fails onnx.checker: {e}; nothing written", path) from e

    report: dict[str, Any] = {
        "path": path, "opset": opset, "batch": batch, "exporter": EXPORTER, "file_bytes": len(data),
        "nodes": len(model.graph.node), "ops": dict(Counter(n.op_type for n in model.graph.node)),
        "initializers": len(model.graph.initializer), "checked": False, "images_checked": 0,
        "max_abs_diff": None, "top5_same": None, "top5_tie_swaps": None, "output_scale": None,
        "tolerance": tolerance, "allowed_diff": None,
    }
    del model
    if check:
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        was_training = net.training
        net.eval()
        try:
            cmp = _compare(net, session, check_x, batch)
        finally:
            if was_training:
                net.train()
        del session
        allowed = tolerance * max(1.0, cmp["scale"])
        report.update(checked=True, images_checked=cmp["images"], max_abs_diff=cmp["max_abs_diff"],
                      top5_same=cmp["top5_same"], top5_tie_swaps=cmp["top5_tie_swaps"],
                      output_scale=cmp["scale"], allowed_diff=allowed)
        real_swaps = cmp["top5_rows_differ"] - cmp["top5_tie_swaps"]
        if not cmp["max_abs_diff"] <= allowed or real_swaps:
            raise DarknetError(f"ONNX Runtime disagrees with pydarknet on {cmp['images']} image(s): max abs "
                               f"difference {cmp['max_abs_diff']:.3g} (allowed {allowed:.3g}), top-{TOPK} differs "
                               f"in {real_swaps} image(s); nothing written", path)
    atomic_write(path, data)
    report["seconds"] = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------------------------------------------------
# state dicts

STATE_DICT_FORMATS = {".safetensors": "safetensors", ".pt": "pt", ".pth": "pt"}
_LAYER_KEY = re.compile(r"^layers\.(\d+)_")


def _state_dict_format(path: str, format: str | None) -> str:
    if format is not None:
        if format not in ("safetensors", "pt"):
            raise DarknetError(f"state dict format {format!r}: expected 'safetensors' or 'pt'", path)
        return format
    ext = os.path.splitext(path)[1].lower()
    if ext not in STATE_DICT_FORMATS:
        raise DarknetError(f"cannot tell the state dict format from {ext or 'no extension'!r}: "
                           "name the file .safetensors or .pt", path)
    return STATE_DICT_FORMATS[ext]


def _safetensors(path: str):
    try:
        import safetensors.torch
    except ImportError:
        raise DarknetError("writing or reading .safetensors needs the 'safetensors' package "
                           "(pip install safetensors), or use a .pt file", path) from None
    return safetensors.torch


def export_state_dict(net: Network, path: str | os.PathLike, *, format: str | None = None) -> dict:
    """Write ``net.state_dict()`` (darknet's parameters, unfolded: ``layers.0_convolutional.weights``,
    ``...biases``, ``...scales``, ``...rolling_mean``, ``...rolling_variance``) atomically to ``path``.

    The format follows the extension (or ``format``): ``.safetensors`` (needs the ``safetensors`` package;
    metadata: the cfg text and name, the darknet header, the input shape) or ``.pt``/``.pth``
    (``torch.save`` of a plain ``dict[str, Tensor]``; no metadata). Either loads straight into
    ``Network.load_state_dict``, or through ``load_state_dict_into`` with its checks.

    Returns {path, format, tensors, params, file_bytes, metadata (dict, empty for .pt)}.
    """
    if not isinstance(net, Network):
        raise DarknetError(f"export_state_dict needs a pydarknet Network, got {type(net).__name__}")
    path = os.fspath(path)
    fmt = _state_dict_format(path, format)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in net.state_dict().items()}
    meta: dict[str, str] = {}
    if fmt == "safetensors":
        st = _safetensors(path)
        hd = net.header
        c, h, w = net.spec.input_shape
        meta = {"format": "pt", "producer": f"pydarknet {_version()}",
                "darknet_cfg_name": os.path.basename(net.spec.path),
                "darknet_header": f"{hd.major}.{hd.minor}.{hd.revision}", "darknet_seen": str(hd.seen),
                "input_shape": f"{c},{h},{w}"}
        text = _cfg_text(net)
        if text is not None:
            meta["darknet_cfg"] = text
        data = st.save(tensors, metadata=meta)
    else:
        buf = io.BytesIO()
        torch.save(tensors, buf)
        data = buf.getvalue()
    atomic_write(path, data)
    return {"path": path, "format": fmt, "tensors": len(tensors),
            "params": int(sum(t.numel() for t in tensors.values())), "file_bytes": len(data), "metadata": meta}


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a ``.safetensors`` or ``torch.save`` state dict (told apart by content, not by name) into
    (name -> tensor, metadata). ``torch.load`` runs with ``weights_only=True``: no pickled classes."""
    from .atomic import read_bytes

    path = os.fspath(path)
    head = read_bytes(path, "state dict", limit=9)
    meta: dict[str, str] = {}
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
        st = _safetensors(path)
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
            obj: Any = st.load_file(path, device="cpu")
        except Exception as e:
            raise DarknetError(f"not a readable safetensors file ({e})", path) from None
    elif head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save: a zip archive (or a legacy pickle)
        import pickle

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DarknetError(f"not a plain torch.save state dict (torch.load with weights_only=True: {first})",
                               path) from None
    else:
        raise DarknetError("neither a safetensors file nor a torch.save file", path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint {"state_dict": ..., ...}
    if not isinstance(obj, dict):
        raise DarknetError(f"holds a {type(obj).__name__}, not a dict of tensors", path)
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise DarknetError(f"entry {k!r} is a {type(v).__name__}, not a tensor: not a state dict", path)
    return obj, meta


def _layer_of(key: str) -> int | None:
    m = _LAYER_KEY.match(key)
    return int(m.group(1)) if m else None


def load_state_dict_into(net: Network, path: str | os.PathLike) -> Network:
    """Load a state dict written by ``export_state_dict`` (or any with the same names) into ``net``, which
    must have the same architecture: every name, shape and dtype is checked first, and the first mismatch
    (in layer order) raises a DarknetError naming the tensor and its layer; nothing is loaded then.
    A fused network (``load_network``'s default) is fused again from the new weights; the darknet header
    (``seen``) is taken from a .safetensors file's metadata, so ``net.save_weights`` writes the same file
    the parameters came from. Returns ``net``."""
    if not isinstance(net, Network):
        raise DarknetError(f"load_state_dict_into needs a pydarknet Network, got {type(net).__name__}")
    path = os.fspath(path)
    tensors, meta = read_state_dict(path)
    expected = net.state_dict()
    cfg = os.path.basename(net.spec.path)
    problems: list[tuple[int, int, str, bool]] = []  # (layer, order, message, an architecture mismatch)
    for order, (key, want) in enumerate(expected.items()):
        layer = _layer_of(key)
        got = tensors.get(key)
        if got is None:
            problems.append((layer, order, f"'{key}' {tuple(want.shape)} is missing from the state dict", True))
        elif tuple(got.shape) != tuple(want.shape):
            problems.append((layer, order, f"'{key}' has shape {tuple(got.shape)}, {cfg} needs "
                                           f"{tuple(want.shape)}", True))
        elif not got.is_floating_point():
            problems.append((layer, order, f"'{key}' is {got.dtype}, not floating point", False))
        elif not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            problems.append((layer, order, f"'{key}' holds {bad} NaN/Inf value(s)", False))
    for order, key in enumerate(k for k in tensors if k not in expected):
        problems.append((_layer_of(key), len(expected) + order,
                         f"unexpected tensor '{key}' {tuple(tensors[key].shape)}: {cfg} has no such parameter",
                         True))
    if problems:
        problems.sort(key=lambda p: (p[0] if p[0] is not None else 1 << 30, p[1]))
        layer, _, msg, architecture = problems[0]
        more = len(problems) - 1
        if more:
            msg += f" (and {more} more mismatch{'es' if more > 1 else ''})"
        if architecture:
            msg += f"; is it the state dict of another cfg than {cfg}?"
        raise DarknetError(msg, path, layer=layer)
    was_fused = any(getattr(m, "_fused", None) is not None for m in net.layers.values())
    net.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected}, strict=True)
    net.unfuse()
    if was_fused and not net.training:
        net.fuse()
    if "darknet_header" in meta:
        try:
            major, minor, revision = (int(v) for v in meta["darknet_header"].split("."))
            net.header = Header(major, minor, revision, int(meta.get("darknet_seen", "0")))
        except ValueError:
            pass
    return net


__all__ = ["EXPORTER", "ONNX_TOLERANCE", "export_onnx", "export_state_dict", "load_state_dict_into",
           "read_state_dict"]
