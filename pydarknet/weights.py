"""Darknet ``.weights`` files: header rules and the per-layer float stream (``src/parser.c``
load_weights_upto / save_weights_upto, load_convolutional_weights, load_connected_weights,
load_batchnorm_weights).

The layout of every layer comes from its spec (``LayerSpec.layout()``), so reading and writing are mirrors
of each other. Reading checks that the file holds exactly the floats the cfg implies and that they are
finite; writing uses version 0.2.0 with a 64-bit ``seen`` and is atomic. No pickle anywhere.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_write, check_regular, open_regular, read_bytes
from .errors import DarknetError
from .specs import LayerSpec, NetSpec, Params



@dataclass(frozen=True)
class Header:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_64bit(self) -> bool:
        """load_weights_upto: ``seen`` is a size_t when major*10+minor >= 2 and both are < 1000."""
        return (self.major * 10 + self.minor) >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def transpose(self) -> bool:
        """Old files store connected weights as inputs x outputs (major or minor > 1000)."""
        return self.major > 1000 or self.minor > 1000

    @property
    def nbytes(self) -> int:
        return 20 if self.seen_is_64bit else 16

    def pack(self) -> bytes:
        fmt = "<iiiQ" if self.seen_is_64bit else "<iiiI"
        return struct.pack(fmt, self.major, self.minor, self.revision, self.seen)


def parse_header(data: bytes, path: str, size: int | None = None) -> Header:
    """The header at the start of ``data`` (``size``: the whole file's, for the message)."""
    if len(data) < 12:
        raise DarknetError(f"too short for a darknet weights header ({len(data) if size is None else size} bytes)",
                           path)
    major, minor, revision = struct.unpack_from("<iii", data)
    probe = Header(major, minor, revision)
    if len(data) < probe.nbytes:
        raise DarknetError(f"too short for a darknet weights header ({len(data)} bytes)", path)
    seen = struct.unpack_from("<Q" if probe.seen_is_64bit else "<I", data, 12)[0]
    return Header(major, minor, revision, seen)


def _count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def expected_bytes(net: NetSpec, header: Header, upto: int | None = None) -> int:
    layers = net.layers if upto is None else net.layers[:upto]
    return header.nbytes + 4 * sum(_count(s) for spec in layers for _, s in spec.loaded_layout())


def _to_memory(spec: LayerSpec, name: str, arr: np.ndarray, shape: tuple[int, ...], header: Header) -> np.ndarray:
    fshape = spec.file_shape(name, shape, header)
    arr = arr.reshape(fshape)
    if fshape != shape:
        arr = np.ascontiguousarray(arr.T).reshape(shape)
    return arr


def _check_size(path: str, net: NetSpec, header: Header, layers, size: int, expected: int, *, exact: bool) -> None:
    """The file's size (from ``stat``) against what the cfg implies, before a float is read: the error names
    the layer where a short file runs out, or says how much is left over."""
    if size >= expected and (not exact or size == expected):
        return
    msg = (f"holds {size} bytes but {os.path.basename(net.path)} needs {expected} "
           f"(header {header.nbytes} + {(expected - header.nbytes) // 4} floats)")
    if size > expected:
        raise DarknetError(f"{msg}: {size - expected} bytes are left over after the last layer "
                           "(weights for another cfg?)", path)
    offset = header.nbytes
    for spec in layers:
        offset += 4 * sum(_count(s) for _, s in spec.loaded_layout())
        if offset > size:
            raise DarknetError(f"runs short in this {spec.kind} layer: the file {msg}", path, layer=spec.index)


def read_weights(path: str | os.PathLike, net: NetSpec, *, upto: int | None = None) -> tuple[Header, Params]:
    """Read a weights file for ``net``. With ``upto=N`` only the first N layers are read (darknet's
    ``partial`` / load_weights_upto) and the file may hold more; otherwise it must hold exactly the floats
    the cfg implies."""
    path = os.fspath(path)
    f, size = open_regular(path, "weights")
    with f:
        try:
            header = parse_header(f.read(20), path, size=size)
            layers = net.layers if upto is None else net.layers[:upto]
            expected = expected_bytes(net, header, upto)
            _check_size(path, net, header, layers, size, expected, exact=upto is None)
            f.seek(header.nbytes)
            body = f.read(expected - header.nbytes)
        except OSError as e:
            raise DarknetError(f"cannot read weights: {e.strerror or e}", path) from None
    if len(body) != expected - header.nbytes:
        raise DarknetError("weights file shrank while being read", path)
    floats = np.frombuffer(body, dtype="<f4")
    params: Params = {}
    pos = 0
    for spec in layers:
        arrays = {}
        for name, shape in spec.loaded_layout():
            n = _count(shape)
            chunk = floats[pos: pos + n]
            pos += n
            if not np.isfinite(chunk).all():
                bad = int(np.count_nonzero(~np.isfinite(chunk)))
                raise DarknetError(f"{spec.kind} {name} holds {bad} NaN/Inf value(s)", path, layer=spec.index)
            arrays[name] = _to_memory(spec, name, chunk.astype(np.float32), shape, header)
        if arrays:
            params[spec.index] = arrays
    return header, params


def weights_bytes(net: NetSpec, params: Params, header: Header) -> bytes:
    """The file contents: header then, for every layer not marked dontsave, its arrays in layout order."""
    out_header = Header(header.major, header.minor, header.revision, header.seen)
    if not out_header.seen_is_64bit or out_header.transpose:
        out_header = Header(0, 2, 0, header.seen)
    chunks = [out_header.pack()]
    for spec in net.layers:
        if spec.common.dontsave:
            continue
        for name, shape in spec.layout():
            try:
                arr = np.asarray(params[spec.index][name], dtype=np.float32).reshape(shape)
            except KeyError:
                raise DarknetError(f"no '{name}' array to save", net.path, layer=spec.index) from None
            fshape = spec.file_shape(name, shape, out_header)
            if fshape != shape:  # an array the file holds transposed (a flipped convolution)
                arr = arr.reshape(shape[0], -1).T
            chunks.append(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return b"".join(chunks)


def write_weights(path: str | os.PathLike, net: NetSpec, params: Params, *, seen: int = 0,
                  header: Header | None = None) -> None:
    """Write a darknet weights file atomically (temp file in the same directory, fsync, rename).

    Version 0.2.0 with a 64-bit ``seen``, unless ``header`` is a 64-bit-seen header to keep (so that
    read -> write of such a file is byte-identical)."""
    header = header or Header(0, 2, 0, seen)
    atomic_write(path, weights_bytes(net, params, header))


def read_weights_new_head(path: str | os.PathLike, net: NetSpec) -> tuple[Header, Params, str | None]:
    """Like ``read_weights``, but a file whose last weighted layer has another class count (fine-tuning a
    model to a new dataset) loads everything before that layer; the message says what was left out."""
    try:
        header, params = read_weights(path, net)
        return header, params, None
    except DarknetError as original:
        weighted = [s for s in net.layers if s.layout()]
        if not weighted:
            raise
        last = weighted[-1]
        per_class = sum(_count(s) for _, s in last.loaded_layout()) // last.units if last.units else 0
        if not per_class:  # no class count in the file to differ (a [batchnorm] last, or dontload)
            raise
        path = os.fspath(path)
        size = check_regular(path, "weights").st_size
        header = parse_header(read_bytes(path, "weights", limit=20), path, size=size)
        before = expected_bytes(net, header, upto=last.index)
        rest = size - before
        classes, left = divmod(rest, 4 * per_class)
        if rest <= 0 or left or classes == last.units:  # the same head: its own fault (NaN, ...) stands
            raise original from None
        header, params = read_weights(path, net, upto=last.index)
        return header, params, (f"{path}: layer {last.index}: the file's {last.kind} layer has {classes} outputs, "
                                f"the cfg's {last.units}: it keeps its fresh initialisation (fine-tuning a new head)")


def partial(cfg: str | os.PathLike, weights: str | os.PathLike, out: str | os.PathLike, n: int) -> NetSpec:
    """darknet's ``partial``: the first ``n`` layers' weights of ``cfg`` from ``weights`` into ``out`` (seen reset
    to 0). Returns the cut network's spec."""
    from .specs import load_specs

    spec = load_specs(cfg)
    if not 0 < n <= len(spec.layers):
        raise DarknetError(f"N={n}: the cfg has {len(spec.layers)} layers", cfg)
    spec.cut(n).check_memory()
    _, params = read_weights(weights, spec, upto=n)
    cut = spec.cut(n)
    write_weights(out, cut, params, seen=0)
    return cut
