"""A darknet network's parameters as a PyTorch state dict, and back (``export_state_dict`` /
``load_state_dict_into``).

``net.state_dict()`` as it is: names like ``layers.0_convolutional.weights`` with darknet's parameter names
(unfolded batchnorm), written as ``.safetensors`` (with the cfg text, the darknet header and the model's facts
as metadata) or ``.pt`` (``torch.save`` of a plain dict of tensors, loadable with
``torch.load(weights_only=True)``; no metadata). Reading never unpickles anything but tensors.
"""
from __future__ import annotations

import io
import os
import re
from typing import Any

import torch
from torch import Tensor

from .atomic import atomic_write
from .engines.network import Network
from .errors import DarknetError
from .weights import Header


def _version() -> str:
    from . import __version__

    return __version__


def _cfg_text(net: Network) -> str | None:
    from .atomic import read_text

    try:
        return read_text(net.spec.path, "cfg")
    except DarknetError:
        return None



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


def export_state_dict(net: Network, path: str | os.PathLike, *, format: str | None = None,
                      metadata: dict[str, str] | None = None) -> dict:
    """Write ``net.state_dict()`` (darknet's parameters, unfolded: ``layers.0_convolutional.weights``,
    ``...biases``, ``...scales``, ``...rolling_mean``, ``...rolling_variance``) atomically to ``path``.

    The format follows the extension (or ``format``): ``.safetensors`` (needs the ``safetensors`` package;
    metadata: the cfg text and name, the darknet header, the input shape, and ``metadata``) or ``.pt``/``.pth``
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
        meta.update(metadata or {})
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
    The darknet header (``seen``) is taken from a .safetensors file's metadata, so ``net.save_weights`` writes the same file
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
    net.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected}, strict=True)
    if "darknet_header" in meta:
        try:
            major, minor, revision = (int(v) for v in meta["darknet_header"].split("."))
            net.header = Header(major, minor, revision, int(meta.get("darknet_seen", "0")))
        except ValueError:
            pass
    return net


__all__ = ["export_state_dict", "load_state_dict_into", "read_state_dict"]
