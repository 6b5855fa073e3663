"""NetSpec -> ``Network(nn.Module)``: darknet's forward_network as a ten-line loop (``src/network.c``).

Modules are named ``"<idx>_<kind>"`` so a PyTorch user can find layer 12 as ``net.layers["12_connected"]``.
``load_network(cfg, weights)`` is the entry point.
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from .errors import DarknetWarning
from .layers import MODULES, Layer, use_onednn
from .specs import NetSpec, load_specs
from .weights import Header, Params, read_weights, write_weights


class Network(nn.Module):
    """A darknet network. Call it on a float32 ``(N, C, H, W)`` tensor in [0, 1]; get ``(N, outputs)``."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleDict({f"{s.index}_{s.kind}": MODULES[s.kind](s) for s in spec.layers})
        self._seq: list[Layer] = list(self.layers.values())
        needed = set()
        for s in spec.layers:
            needed.update(getattr(s, "layers", ()))
            if s.kind == "shortcut":
                needed.add(s.from_index)
        self._keep = [i in needed for i in range(len(spec.layers))]
        self._out = spec.output_index
        # CPU inference fuses a linear convolution with the plain shortcut right after it (ResNets' last
        # convolution of a block): conv index -> shortcut index. Only where nothing else reads the conv's output.
        self._conv_add: dict[int, int] = {}
        for s in spec.layers:
            p = s.index - 1
            if (s.kind == "shortcut" and p >= 0 and spec.layers[p].kind == "convolutional"
                    and spec.layers[p].activation == "linear" and s.from_shape == s.inp and s.from_index != p
                    and (s.alpha, s.beta) == (1.0, 1.0)
                    and not self._keep[p] and p != self._out):
                self._conv_add[p] = s.index
        self._fixed_size = any(s.kind in ("connected", "crop") for s in spec.layers)
        self.header = Header()

    # -- inference ------------------------------------------------------------------------------------
    def forward(self, x: Tensor, logits: bool = False) -> Tensor:
        if logits:  # training: the input of the last softmax (DistributedDataParallel calls forward)
            return self.forward_logits(x)
        c, h, w = self.spec.input_shape
        if x.dim() != 4 or x.shape[1] != c or (self._fixed_size and tuple(x.shape[2:]) != (h, w)):
            want = f"(N, {c}, {h}, {w})" if self._fixed_size else f"(N, {c}, H, W)"
            raise ValueError(f"{os.path.basename(self.spec.path)} expects input {want}, got {tuple(x.shape)}")
        fast = not self.training and use_onednn(x)
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's and the 2x2 maxpool's fast layout
        cache: list = [None] * len(self._seq)
        done = -1  # a shortcut already computed together with its convolution
        for i, layer in enumerate(self._seq):
            if i == done:
                pass
            elif fast and i in self._conv_add and layer._fused is not None:
                sc = self._seq[self._conv_add[i]].spec
                x = layer._forward_onednn(x, cache[sc.from_index], sc.activation)
                done = sc.index
            else:
                x = layer(x, cache)
            if self._keep[i]:
                cache[i] = x
            if i == self._out:
                break
        return x.reshape(x.shape[0], -1)

    def forward_logits(self, x: Tensor) -> Tensor:
        """The input of the last [softmax] layer, (N, inputs): what training's cross-entropy works on."""
        last = self.softmax_index
        cache: list = [None] * len(self._seq)
        for i, layer in enumerate(self._seq[:last]):
            x = layer(x, cache)
            if self._keep[i]:
                cache[i] = x
        return x.reshape(x.shape[0], -1)

    @property
    def softmax_index(self) -> int:
        for s in reversed(self.spec.layers):
            if s.kind == "softmax":
                return s.index
        raise ValueError(f"{self.spec.path} has no [softmax] layer to train a classifier with")

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """Every layer's output (for conformance checks against darknet's per-layer dumps)."""
        outs: list = []
        for layer in self._seq:
            x = layer(x, outs)
            outs.append(x)
        return outs

    def fuse(self) -> "Network":
        """Fold batchnorm into convolution kernels for inference (eval mode only; training ignores it)."""
        for m in self._seq:
            if hasattr(m, "fuse"):
                m.fuse()
        return self

    def unfuse(self) -> "Network":
        for m in self._seq:
            if hasattr(m, "unfuse"):
                m.unfuse()
        return self

    #: images per forward call of ``infer`` on the CPU: measured fastest per image for tiny and darknet19 at
    #: 1 and 2 threads (batch 4: 3.8 / 19.0 ms; batch 16: 4.8 / 20.7 ms, 2 threads, 224x224), where larger
    #: batches' feature maps no longer fit the caches
    CPU_CHUNK = 4

    def infer(self, batch: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
        """(N, C, H, W) float32 array -> (N, outputs) float32 array, without autograd.

        On the CPU the batch runs ``CPU_CHUNK`` images at a time (same numbers: inference treats every
        image on its own); on a GPU in one call."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        step = self.CPU_CHUNK if str(device).startswith("cpu") else max(len(x), 1)
        with torch.inference_mode():
            if 0 < len(x) <= step:
                return self(x.to(device)).float().cpu().numpy()
            outs = [self(x[i:i + step].to(device)).float().cpu() for i in range(0, len(x), step)]
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.spec.outputs), np.float32)

    def _apply(self, fn, recurse=True):  # .to(device) / .double(): fused kernels follow the weights
        fused = any(getattr(m, "_fused", None) is not None for m in self._seq)
        out = super()._apply(fn, recurse)
        if fused:
            self.fuse()
        return out

    def train(self, mode: bool = True) -> "Network":
        if mode:
            self.unfuse()  # fused kernels would go stale as the weights train
        return super().train(mode)

    # -- weights --------------------------------------------------------------------------------------
    def load_params(self, params: Params) -> None:
        with torch.no_grad():
            for layer in self._seq:
                for name, arr in params.get(layer.spec.index, {}).items():
                    getattr(layer, name).copy_(torch.from_numpy(np.ascontiguousarray(arr)))
        self.unfuse()

    def darknet_params(self) -> Params:
        out: Params = {}
        for layer in self._seq:
            arrays = {n: t.detach().cpu().numpy() for n, t in layer.darknet_params().items()}
            if arrays:
                out[layer.spec.index] = arrays
        return out

    def load_weights(self, path: str | os.PathLike, *, upto: int | None = None) -> Header:
        """Load a darknet weights file (all of it, or the first ``upto`` layers)."""
        header, params = read_weights(path, self.spec, upto=upto)
        self.load_params(params)
        self.header = header
        return header

    def save_weights(self, path: str | os.PathLike, *, seen: int | None = None) -> None:
        """Write darknet weights atomically, keeping the loaded header where it is a 0.2-style one."""
        h = self.header
        header = Header(h.major, h.minor, h.revision, h.seen if seen is None else seen)
        write_weights(path, self.spec, self.darknet_params(), header=header)


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed feature maps instead of returning them to the kernel (Linux only).

    NOTE: a batch-1 forward frees and reallocates maps of a few MB each call; with glibc's defaults many of
    those go back to the kernel and come back as fresh zeroed pages (about 1000 page faults per Tiny Darknet
    forward, measured with getrusage), a quarter of its time. Raising the mmap and trim thresholds to 32/64 MB
    (as jemalloc or tcmalloc would) removes that. Skipped where the user set ``MALLOC_MMAP_THRESHOLD_`` or
    ``MALLOC_TRIM_THRESHOLD_``, or ``PYDARKNET_MALLOC=default``. Returns whether it changed anything."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED or not sys.platform.startswith("linux") or os.environ.get("PYDARKNET_MALLOC") == "default":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    _ALLOCATOR_TUNED = True
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 64 << 20))


def load_network(cfg_path: str | os.PathLike, weights_path: str | os.PathLike | None = None, *,
                 upto: int | None = None, fuse: bool = True, width: int | None = None,
                 height: int | None = None) -> Network:
    """Build the network of a darknet cfg and load its weights, ready for inference (eval mode).

    >>> import torch, pydarknet
    >>> net = pydarknet.load_network(pydarknet.zoo_cfg("tiny"))   # no weights: darknet's random init
    >>> net(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1000])

    With ``fuse`` (default) batchnorm is folded into the convolutions once the weights are loaded, which is
    faster and agrees with the unfolded network to about 1e-6.
    """
    spec = load_specs(cfg_path, width=width, height=height)
    # NOTE: darknet is built with -Ofast, which flushes denormal floats to zero; so do we. It also keeps
    # activations that decay towards zero in deep random-weight networks from running 10x slower on x86.
    torch.set_flush_denormal(True)
    keep_freed_memory()
    net = Network(spec)
    if weights_path is not None and os.fspath(weights_path) != "":
        net.load_weights(weights_path, upto=upto)
    elif weights_path is not None:
        warnings.warn(DarknetWarning("no weights file given: the network keeps its random initial weights"))
    net.eval()
    if fuse:
        net.fuse()
    return net

