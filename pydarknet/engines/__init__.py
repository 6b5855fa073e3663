"""Inference engines behind one small interface, opened by one function.

An engine has ``spec`` (the network's ``NetSpec``), ``infer(batch)`` ((N, C, H, W) float32 array in [0, 1]
-> (N, outputs) float32 array) and ``close()``. Three implement it:

* ``network.Network``: the trainable ``nn.Module`` itself (batchnorm unfolded, from its current parameters);
* ``torch_infer.TorchEngine``: folded and packed once, oneDNN on the CPU, CUDA elsewhere (the default);
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

ENGINES = ("torch", "numpy")


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


def choose_engine(engine: str, *, device: str, images: int | None, has_weights: bool) -> str:
    """``engine`` ("auto", "torch" or "numpy") for a job of ``images`` images (None: unknown, e.g. a prompt).

    auto: NumPy for a single image on the CPU (importing PyTorch costs more than that forward pass), else
    PyTorch; weights made on the fly need PyTorch's initialisation."""
    if engine not in ENGINES + ("auto",):
        raise DarknetError(f"unknown engine {engine!r} (known: auto, {', '.join(ENGINES)})")
    if engine == "numpy" and not str(device).startswith("cpu"):
        raise DarknetError("the numpy engine runs on the CPU only; use --engine torch for --device")
    if engine == "numpy" and not has_weights:
        raise DarknetError("the numpy engine needs a weights file (random weights are made by PyTorch)")
    if engine != "auto":
        return engine
    return "numpy" if images == 1 and str(device).startswith("cpu") and has_weights else "torch"


def open_engine(cfg: str | os.PathLike, weights: str | os.PathLike | None = None, *, device: str = "cpu",
                precision: str = "fp32", engine: str = "torch", width: int | None = None,
                height: int | None = None) -> Engine:
    """The network of ``cfg`` with ``weights`` (None: darknet's random initialisation) as an engine."""
    if engine == "numpy":
        from ..specs import load_specs
        from ..weights import read_weights
        from .numpy_infer import NumpyEngine

        if precision != "fp32":
            raise DarknetError(f"precision {precision!r}: the numpy engine runs fp32")
        if weights is None:
            raise DarknetError("the numpy engine needs a weights file (random weights are made by PyTorch)")
        spec = load_specs(cfg, width=width, height=height)
        spec.check_memory()
        return NumpyEngine(spec, read_weights(weights, spec)[1])
    if engine != "torch":
        raise DarknetError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    from .network import load_network
    from .torch_infer import TorchEngine

    net = load_network(cfg, weights, width=width, height=height)
    return TorchEngine.from_network(net, device=device, precision=precision)


__all__ = ["ENGINES", "Engine", "choose_engine", "resolve_device", "first_nonfinite_row", "nonfinite_error", "open_engine"]
