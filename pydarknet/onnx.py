"""Export a darknet classifier to ONNX, checked against ONNX Runtime before the file is written.

The export has no per-kind code: it traces the network's own forward pass (``engines.network``), on its
folded copy (``folded_network``: every foldable batchnorm folded into its convolution or connected layer),
with PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). The torch kernels read
every size from their layer specs, so the traced graph holds plain operators and no shape arithmetic;
darknet's rules come out as standard ONNX operators:

* maxpool: darknet's window offset (``-padding/2``) and its ``-inf`` padding (``maxpool_darknet``) become the
  asymmetric ``pads`` of one ``MaxPool`` node after the clean-up below (a ``Pad(-inf)`` is kept only where a
  window would lie wholly in the padding, where darknet leaves ``-FLT_MAX``);
* shortcut between maps of different size or depth (``shortcut_darknet``): ``Slice`` + ``Pad`` (zeros) +
  ``Add``, no scatter;
* connected: ``Flatten`` + ``Gemm``; avgpool: ``GlobalAveragePool``; softmax over ``groups`` slices:
  ``Reshape`` + ``Softmax``; crop at test time: ``Slice`` (+ ``2x - 1``); dropout and cost vanish.

After tracing, generic graph passes fold the small constant arithmetic the exporter leaves, merge chained
slices and fold ``Pad(-inf) -> MaxPool`` into the pool's pads. The file is verified before it is written
(atomically): ``onnx.checker`` (full check), then ONNX Runtime on a fixed input (and the caller's) against the
network itself: max abs difference <= 1e-5 and identical top-5. The model's facts (class names, input size,
preprocessing, provenance) go into the metadata with the cfg text.
"""
from __future__ import annotations

import io
import os
import time
import warnings
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .atomic import atomic_write
from .engines.network import Network, folded_network
from .errors import DarknetError

#: max abs difference allowed between ONNX Runtime and the network, and the top-k that must agree.
ONNX_TOLERANCE = 1e-5
TOPK = 5
INPUT_NAME, OUTPUT_NAME = "input", "output"
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
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
    from .atomic import read_text

    try:
        return read_text(net.spec.path, "cfg")
    except DarknetError:
        return None


class _Traced(nn.Module):
    """What torch.onnx traces: the folded copy of the network, run from its input to its output layer."""

    def __init__(self, net: Network):
        super().__init__()
        self.net = folded_network(net.spec, net.darknet_params())

    def forward(self, x: Tensor) -> Tensor:
        spec = self.net.spec
        return self.net.run(x, spec, spec.output_index + 1)


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
        if not np.isfinite(ours).all():  # the network's own error, naming the first layer that overflows
            net.infer(chunk.numpy()[:n])
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
                check: bool = True, inputs: Any = None, tolerance: float = ONNX_TOLERANCE,
                metadata: dict[str, str] | None = None) -> dict:
    """Write ``net`` as an ONNX model at ``path`` and return a report.

    The graph takes ``input``: float32 ``(N, C, H, W)`` in [0, 1] at the cfg's size (what ``net`` takes) and
    gives ``output``: ``(N, outputs)`` (softmax probabilities for a classifier). ``batch`` is ``"dynamic"``
    (N free) or a fixed batch size. The model passes ``onnx.checker`` (full check); with ``check`` ONNX
    Runtime runs it on a fixed random input (plus ``inputs``: images ``(C,H,W)`` / ``(N,C,H,W)``, tensors or
    arrays, or a list of them) and must agree with ``net`` (in eval mode): max abs difference within
    ``tolerance`` (times the largest output where that exceeds 1: a net without softmax) and the same top-5
    indices for every image (a swap between outputs equal within that difference, such as saturated tanh
    outputs, is reported as a tie, not a failure). Nothing is written unless all of that holds; then the
    file is written atomically (temp file in the same directory, fsync, rename). ``metadata`` (str -> str,
    e.g. the model's facts) is added to the model's metadata_props beside the cfg text.

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
    graph = _Traced(net).eval()
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
            kinds = ", ".join(sorted({s.kind for s in net.spec.layers}))
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
    meta.update(metadata or {})
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


__all__ = ["EXPORTER", "ONNX_TOLERANCE", "export_onnx"]
