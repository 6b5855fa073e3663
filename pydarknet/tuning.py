"""Process-wide tuning for darknet-like speed, made by one explicit call (``tune_process``): the ``pydarknet``
command makes it; a Python program may, and pydarknet's library never does it behind the caller's back.
"""
from __future__ import annotations

import ctypes
import os
import sys

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


def tune_process(*, torch: bool = True) -> None:
    """Tune this process as darknet's build is tuned: keep freed feature maps in the heap
    (``keep_freed_memory``) and, with ``torch``, flush denormal floats to zero in PyTorch.

    NOTE: darknet is built with -Ofast, which flushes denormals to zero; so do we. It also keeps activations
    that decay towards zero in deep random-weight networks from running 10x slower on x86."""
    keep_freed_memory()
    if torch:
        import torch as _torch

        _torch.set_flush_denormal(True)
