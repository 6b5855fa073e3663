"""Inference engines behind one small interface, opened by one function.

An engine has ``spec`` (the network's ``NetSpec``), ``infer(batch)`` ((N, C, H, W) float32 array in [0, 1]
-> (N, outputs) float32 array) and ``close()``. Four implement it:

* ``network.Network``: the trainable ``nn.Module`` itself (batchnorm unfolded, from its current parameters);
* ``torch_infer.TorchEngine``: folded and packed once, oneDNN on the CPU (fp32 or bf16), CUDA elsewhere;
* ``ort_infer.OrtEngine``: ONNX Runtime on the network's cached export (fp32) or its int8 artifact; no
  PyTorch import once the export is cached;
* ``numpy_infer.NumpyEngine``: no PyTorch import, for one-shot jobs on the CPU.

``open_engine(cfg, weights, device=, precision=, engine=)`` opens one; ``choose_engine`` picks the kind for a
job. Each engine's kernel table is checked complete against the spec registry when its module is imported.
"""
from __future__ import annotations

import os
import re
from typing import Protocol

import numpy as np

from ..errors import DarknetError
from ..specs import LayerSpec, NetSpec

ENGINES = ("torch", "onnxruntime", "numpy")
PRECISIONS = ("fp32", "bf16", "int8")
#: seconds ``import torch`` costs a job that would not otherwise need it (2.1-2.3 s measured on the 2-core
#: machine the benchmarks run on): what the torch engine must win back before ``auto`` picks it
TORCH_IMPORT_S = 2.0


class Engine(Protocol):
    spec: NetSpec

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def first_nonfinite_row(out: np.ndarray) -> int:
    """The first image (row) of an output batch that holds a NaN or an infinity."""
    return int(np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))[0])


def nonfinite_error(spec: NetSpec, layer: LayerSpec | None) -> DarknetError:
    """The one error for a network output that is not finite: never print NaN or Inf as a probability.

    ``layer``: the first layer whose output is not (finite weights whose products overflow float32, a
    softmax temperature so small the logits overflow, a batchnorm fold that overflows)."""
    if layer is None:
        return DarknetError("the network's output holds NaN or Inf values", spec.path)
    return DarknetError(f"the output of this {layer.kind} layer (cfg line {layer.lineno}) holds NaN or Inf values: "
                        "the weights overflow float32 for this input", spec.path, layer=layer.index)


def _cuda_driver_present() -> bool:
    """An NVIDIA driver is loaded (checked without importing PyTorch)."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")


def resolve_device(device: str) -> str:
    """``--device``: ``auto`` is CUDA when a CUDA device is usable, else the CPU; ``cpu``, ``cuda`` and
    ``cuda:N`` are checked (one DarknetError when unknown or absent). PyTorch is imported only when an NVIDIA
    driver is present or CUDA is asked for."""
    name = str(device).strip().lower()
    if name == "auto":
        if not _cuda_driver_present():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not m:
        raise DarknetError(f"unknown device {device!r} (known: auto, cpu, cuda, cuda:N)")
    import torch

    if not torch.cuda.is_available():
        raise DarknetError(f"--device {device}: no CUDA device is available here (use --device cpu or auto)")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise DarknetError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s), "
                           f"numbered from 0")
    return name


#: the one engine each precision below fp32 runs on
PRECISION_ENGINE = {"bf16": "torch", "int8": "onnxruntime"}


def engine_for_precision(precision: str, engine: str = "auto") -> str | None:
    """The engine ``precision`` must run on (None: fp32, any engine); a DarknetError where ``engine`` (not
    "auto") is another."""
    if precision not in PRECISIONS:
        raise DarknetError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    wants = PRECISION_ENGINE.get(precision)
    if wants is not None and engine not in ("auto", wants):
        raise DarknetError(f"--precision {precision} runs on the {wants} engine, not on {engine}")
    return wants


def choose_engine(engine: str, *, device: str, images: int | None, has_weights: bool, precision: str = "fp32",
                  spec: NetSpec | None = None, cfg: str | os.PathLike | None = None,
                  weights: str | os.PathLike | None = None, progress: bool = False) -> str:
    """The engine kind ("torch", "onnxruntime" or "numpy") for ``engine`` ("auto" or one of those) and a job
    of ``images`` images (None: unknown, e.g. a prompt) at ``precision``.

    auto: int8 runs on ONNX Runtime and bf16 on PyTorch. fp32 on the CPU with a weights file: where ONNX
    Runtime is installed, the faster of the two engines by the batch-1 timings cached with the network's
    export (``ort_infer.cached_model``; made on the first such job, not for a single image), counting the
    ``TORCH_IMPORT_S`` that PyTorch's import adds to a job that ONNX Runtime would run alone; a single image
    with no export cached yet, or no ONNX Runtime: NumPy for a single image, else PyTorch. Elsewhere (CUDA,
    weights made on the fly) PyTorch."""
    if engine not in ENGINES + ("auto",):
        raise DarknetError(f"unknown engine {engine!r} (known: auto, {', '.join(ENGINES)})")
    cpu = str(device).startswith("cpu")
    if engine in ("numpy", "onnxruntime") and not cpu:
        raise DarknetError(f"the {engine} engine runs on the CPU only; use --engine torch for --device {device}")
    if engine in ("numpy", "onnxruntime") and not has_weights:
        raise DarknetError(f"the {engine} engine needs a weights file (random weights are made by PyTorch)")
    wants = engine_for_precision(precision, engine)
    if engine != "auto":
        return engine
    if wants is not None:
        return wants
    if not cpu or not has_weights:
        return "torch"
    from .ort_infer import EngineCache, cached_model, have_onnxruntime

    if not have_onnxruntime() or spec is None or cfg is None or weights is None:
        return "numpy" if images == 1 else "torch"
    try:
        timings = EngineCache.of(spec, weights).read_timings()
    except OSError:  # no such weights file: the weights reader says so, in its words
        return "numpy" if images == 1 else "torch"
    if timings is None:
        if images == 1:
            return "numpy"
        try:
            _, timings = cached_model(spec, cfg, weights, progress=progress)
        except DarknetError:  # no export of this network (remembered in the cache): PyTorch runs it
            return "torch"
    if "error" in timings:
        return "torch"
    gain_s = (timings["onnxruntime_ms"] - timings["torch_ms"]) / 1e3 * (images if images is not None else 1e9)
    return "torch" if gain_s > TORCH_IMPORT_S else "onnxruntime"


def open_engine(cfg: str | os.PathLike, weights: str | os.PathLike | None = None, *, device: str = "cpu",
                precision: str = "fp32", engine: str = "torch", width: int | None = None,
                height: int | None = None, threads: int | None = None, progress: bool = False) -> Engine:
    """The network of ``cfg`` with ``weights`` (None: darknet's random initialisation) as an engine of kind
    ``engine`` at ``precision`` (``threads``: the onnxruntime engine's threads; PyTorch's are process-wide)."""
    if engine not in ENGINES:
        raise DarknetError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    engine_for_precision(precision, engine)
    if engine in ("numpy", "onnxruntime"):
        from ..specs import load_specs

        if weights is None or os.fspath(weights) == "":
            raise DarknetError(f"the {engine} engine needs a weights file (random weights are made by PyTorch)")
        spec = load_specs(cfg, width=width, height=height)
        spec.check_memory()
    if engine == "numpy":
        from ..weights import read_weights
        from .numpy_infer import NumpyEngine

        return NumpyEngine(spec, read_weights(weights, spec)[1])
    if engine == "onnxruntime":
        from .ort_infer import OrtEngine, cached_model

        if precision == "int8":
            from ..quantize import check_int8_artifact, int8_artifact_path

            artifact = int8_artifact_path(weights)
            check_int8_artifact(artifact, weights)
            return OrtEngine(spec, artifact, precision="int8", threads=threads)
        model, _ = cached_model(spec, cfg, weights, progress=progress)
        return OrtEngine(spec, model, threads=threads, weights=weights,
                         resized=lambda h, w: cached_model(spec.at_size(w, h), cfg, weights)[0])
    from .network import load_network
    from .torch_infer import TorchEngine

    net = load_network(cfg, weights, width=width, height=height)
    return TorchEngine.from_network(net, device=device, precision=precision)


__all__ = ["ENGINES", "PRECISIONS", "PRECISION_ENGINE", "TORCH_IMPORT_S", "engine_for_precision", "Engine", "choose_engine", "resolve_device", "first_nonfinite_row", "nonfinite_error", "open_engine"]
