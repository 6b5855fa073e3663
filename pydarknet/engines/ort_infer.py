"""ONNX Runtime as one of pydarknet's engines: the network's own ONNX export, built once and cached.

``OrtEngine`` runs an ONNX model of the network on ONNX Runtime's CPU provider behind the engine interface
(``spec``, ``infer``, ``close``). It imports neither PyTorch nor the exporter: the model it runs is

* fp32: pydarknet's export of the network (``pydarknet.onnx.export_onnx``, checked against the network within
  1e-5 with the same top-5 before it is written), made once per (cfg, weights, input size) and kept in the
  cache (``$PYDARKNET_CACHE/engines``, see ``download.cache_dir``) with a few batch-1 timings of it and of the
  torch engine (``EngineCache``); making it is the only step that imports PyTorch. A cache that cannot be
  written keeps the model in memory for this process only.
* int8: the artifact ``pydarknet quantize`` writes beside the weights (``quantize.int8_artifact_path``).

``engines.choose_engine`` uses the cached timings to pick the faster engine for a job (see there).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DarknetError
from ..specs import NetSpec
from . import first_nonfinite_row, nonfinite_error

PRECISIONS = ("fp32", "int8")
#: bump when the export or what is cached beside it changes: older entries are then ignored
CACHE_FORMAT = 1
#: the largest cached model read back (ONNX's 2 GiB protobuf limit)
MAX_MODEL_BYTES = 2 << 30
MAX_TIMINGS_BYTES = 64 << 10
#: images a call to ONNX Runtime (a bounded working set; the numbers do not depend on it)
CHUNK = 16


def have_onnxruntime() -> bool:
    """ONNX Runtime can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise DarknetError("the onnxruntime engine needs ONNX Runtime: pip install 'pydarknet[onnx]'") from e
    return onnxruntime


def session_options(threads: int | None = None, *, spinning: bool = True):
    """ONNX Runtime's CPU session options for inference, for every session pydarknet makes: all graph
    optimisations (ORT_ENABLE_EXTENDED, without the NCHWc layouts, ran the int8 models 1.3-1.6x slower here),
    ``threads`` intra-op threads (None: ONNX Runtime's default, one per physical core), one inter-op thread;
    ``spinning=False`` stops idle workers spinning (beside other work, the decoding thread or another process,
    spinning workers took the cores from it and 2-thread int8 runs took 1.3-1.9x longer; on a quiet machine
    it changed nothing measurable)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _file_identity(path: str) -> list:
    st = os.stat(path)
    return [os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino]


def _version() -> str:
    from .. import __version__

    return __version__


@dataclass
class EngineCache:
    """Where the fp32 ONNX model of (cfg, weights, input size) is cached, and the batch-1 timings stored with
    it (``{"onnxruntime_ms": .., "torch_ms": .., "threads": ..}``)."""

    key: str
    model: str
    timings: str

    @classmethod
    def of(cls, spec: NetSpec, weights: str | os.PathLike) -> "EngineCache":
        from ..download import cache_dir

        c, h, w = spec.input_shape
        ident = [CACHE_FORMAT, _version(), _file_identity(spec.path), _file_identity(os.fspath(weights)), c, h, w]
        key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:32]
        folder = os.path.join(os.fspath(cache_dir()), "engines")
        return cls(key, os.path.join(folder, f"{key}.onnx"), os.path.join(folder, f"{key}.json"))

    def read_timings(self) -> dict | None:
        """The stored timings, or None (no entry yet, or one that is not a regular file: never followed)."""
        data = _read_regular(self.timings, MAX_TIMINGS_BYTES)
        if data is None:
            return None
        try:
            t = json.loads(data)
        except ValueError:
            return None
        if not isinstance(t, dict):
            return None
        if "error" in t:  # the export failed for these files: no model to look for
            return t if isinstance(t["error"], str) else None
        ok = all(isinstance(t.get(k), (int, float)) for k in ("onnxruntime_ms", "torch_ms"))
        return t if ok and os.path.isfile(self.model) else None

    def read_model(self) -> bytes | None:
        return _read_regular(self.model, MAX_MODEL_BYTES)


def _read_regular(path: str, limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a link) of at most ``limit`` bytes, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        return f.read(st.st_size + 1)[:limit]


def _median_ms(fn, x, budget_s: float = 0.6, most: int = 15) -> float:
    fn(x)  # warm-up: first-call allocations, oneDNN's kernel choice
    times: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(times) < 3 or (len(times) < most and time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def export_bytes(net, metadata: dict[str, str] | None = None) -> tuple[bytes, dict]:
    """``net`` (a ``Network``) as ONNX bytes (pydarknet's checked export, dynamic batch, ``metadata`` added to
    its metadata_props) and the export's report."""
    from ..onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="pydarknet-export-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        report = export_onnx(net, path, batch="dynamic", metadata=metadata)
        with open(path, "rb") as f:
            return f.read(), report


def build_cache(spec: NetSpec, cfg: str | os.PathLike, weights: str | os.PathLike, *,
                progress: bool = False) -> tuple[bytes, dict]:
    """Export the network of (cfg, weights) at ``spec``'s input size, time it on ONNX Runtime and on the torch
    engine (batch 1, this process's thread settings), and cache both (atomically; a cache that cannot be
    written is skipped). Returns (the ONNX model, the timings). Imports PyTorch."""
    import sys

    import torch

    from .network import load_network
    from .torch_infer import TorchEngine

    if progress:
        sys.stderr.write("pydarknet: preparing the onnxruntime engine for these weights (once; cached)\n")
    c, h, w = spec.input_shape
    net = load_network(cfg, weights, width=w, height=h)
    cache = EngineCache.of(spec, weights)
    try:
        model, report = export_bytes(net)
    except DarknetError as e:  # remembered, so that auto does not try again for these files
        _store(cache, None, {"error": str(e)})
        raise
    x = np.random.default_rng(0).random((1, c, h, w), np.float32)
    threads = torch.get_num_threads()
    engine = OrtEngine(spec, model, threads=threads)
    torch_engine = TorchEngine.from_network(net)
    with torch.inference_mode():
        timings = {"onnxruntime_ms": _median_ms(engine.infer, x), "torch_ms": _median_ms(torch_engine.infer, x),
                   "threads": threads, "export_max_abs_diff": report["max_abs_diff"],
                   "cfg": os.path.realpath(spec.path), "weights": os.path.realpath(os.fspath(weights)),
                   "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    engine.close()
    torch_engine.close()
    if not _store(cache, model, timings):
        _unstored[:] = [cache.key, (model, timings)]
    return model, timings


def _store(cache: EngineCache, model: bytes | None, timings: dict) -> bool:
    """Write a cache entry (the model first, so timings never describe a missing model); False where the
    cache cannot be written (this process keeps the model in memory)."""
    from ..atomic import atomic_write

    try:
        os.makedirs(os.path.dirname(cache.model), exist_ok=True)
        if model is not None:
            atomic_write(cache.model, model)
        atomic_write(cache.timings, json.dumps(timings, indent=1).encode())
    except (OSError, DarknetError):
        return False
    return True


def cached_model(spec: NetSpec, cfg: str | os.PathLike, weights: str | os.PathLike, *,
                 progress: bool = False) -> tuple[bytes, dict]:
    """The cached (model, timings) of (cfg, weights) at ``spec``'s size, built first if absent."""
    cache = EngineCache.of(spec, weights)
    if _unstored[0] == cache.key:  # built in this process where the cache could not take it: not again
        return _unstored[1]
    timings = cache.read_timings()
    if timings is not None and "error" in timings:
        raise DarknetError(f"no onnxruntime engine for these weights: {timings['error']}", spec.path)
    model = cache.read_model() if timings is not None else None
    if model is None or timings is None:
        return build_cache(spec, cfg, weights, progress=progress)
    return model, timings


#: (key, (model, timings)) of the last export this process built and could not cache (a read-only cache):
#: auto's choice and the engine then share one export
_unstored: list = [None, None]


class OrtEngine:
    """Inference on ONNX Runtime: ``infer((N, C, H, W) float32 array)`` -> (N, outputs) float32 array.

    ``model``: the ONNX model (bytes or a file path) of ``spec``'s network at ``spec``'s input size.
    ``threads``: ONNX Runtime's intra-op threads (None: one per core). ``weights``: the darknet weights it
    was made from, used to name the first non-finite layer when an output is NaN or Inf. ``resized``:
    (height, width) -> the model at that input size, for a fully convolutional network fed another size (as
    darknet's resize_network); without it only ``spec``'s size is taken."""

    kind = "onnxruntime"
    device = "cpu"

    def __init__(self, spec: NetSpec, model: bytes | str, *, precision: str = "fp32", threads: int | None = None,
                 weights: str | os.PathLike | None = None, resized=None):
        if precision not in PRECISIONS:
            raise DarknetError(f"precision {precision!r}: the onnxruntime engine runs {', '.join(PRECISIONS)}")
        self.spec, self.precision, self.weights = spec, precision, weights
        self._models = {tuple(spec.input_shape[1:]): model}
        self._resized = resized
        self.threads = None
        self._sessions: dict[tuple[int, int], object] = {}
        self.set_threads(threads)

    @classmethod
    def from_network(cls, net, *, threads: int | None = None) -> "OrtEngine":
        """An engine from a ``Network``'s current parameters (exported in memory, not cached)."""
        return cls(net.spec, export_bytes(net)[0], threads=threads)

    def set_threads(self, threads: int | None) -> None:
        """ONNX Runtime's intra-op thread count (None: one per core); new sessions when it changes."""
        if self._sessions and threads == self.threads:
            return
        self.threads = threads
        self._sessions = {}
        self._session_for(tuple(self.spec.input_shape[1:]))

    def _session_for(self, size: tuple[int, int]):
        session = self._sessions.get(size)
        if session is not None:
            return session
        model = self._models.get(size)
        if model is None:
            c, h, w = self.spec.input_shape
            if self._resized is None or self.spec.fixed_input:
                want = f"(N, {c}, {h}, {w})"
                raise ValueError(f"{os.path.basename(self.spec.path)}: this onnxruntime engine takes {want} input, "
                                 f"got (N, {c}, {size[0]}, {size[1]})")
            if len(self._models) >= 4:
                self._models = {(h, w): self._models[(h, w)]}
                self._sessions = {(h, w): self._sessions[(h, w)]}
            model = self._models[size] = self._resized(*size)
        # spinning kept: the fp32 timings (benchmarks/forward.py) were measured with it
        options = session_options(self.threads, spinning=True)
        try:
            session = _ort().InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for a damaged or foreign model
            where = model if isinstance(model, str) else self.spec.path
            raise DarknetError(f"ONNX Runtime cannot load this model: {str(e).splitlines()[0]}", where) from e
        self._sessions[size] = session
        return session

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        c, h, w = self.spec.input_shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"{os.path.basename(self.spec.path)} expects input (N, {c}, H, W), got {tuple(x.shape)}")
        if len(x) == 0:
            return np.zeros((0, self.spec.outputs), np.float32)
        session = self._session_for(tuple(x.shape[2:]))
        name = session.get_inputs()[0].name
        outs = [session.run(None, {name: x[i:i + CHUNK]})[0] for i in range(0, len(x), CHUNK)]
        out = np.ascontiguousarray(outs[0] if len(outs) == 1 else np.concatenate(outs), np.float32)
        out = out.reshape(len(x), -1)
        if not np.isfinite(out).all():
            if self.weights is not None and self.precision == "fp32":
                from ..weights import read_weights
                from .numpy_infer import NumpyEngine

                one = x[first_nonfinite_row(out)][None]
                NumpyEngine(self.spec, read_weights(self.weights, self.spec)[1]).infer(one)
            raise nonfinite_error(self.spec, None)
        return out

    __call__ = infer

    def close(self) -> None:
        self._sessions = {}
        self._models = {}


__all__ = ["CACHE_FORMAT", "EngineCache", "OrtEngine", "build_cache", "cached_model", "export_bytes", "session_options", "have_onnxruntime"]
