"""The memory budget: how many bytes one job may plan to allocate, checked from the specs before anything is
allocated (``NetSpec.check_memory``), so a cfg with one absurd number is refused with the line that asks for
it instead of reaching the allocator.

The budget is ``DEFAULT_MAX_MEMORY`` unless ``$PYDARKNET_MAX_MEMORY`` or ``--max-memory`` (``set_max_memory``)
says otherwise. Sizes are bytes or a number with a binary unit: ``512M``, ``8G``, ``1.5GiB``.
"""
from __future__ import annotations

import os
import re

from .errors import DarknetError

DEFAULT_MAX_MEMORY = 4 << 30
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_explicit: int | None = None


def parse_size(text: str, what: str = "memory size") -> int:
    """``"8G"`` -> 8 GiB in bytes. Units K, M, G, T (powers of 1024, optional ``iB``/``B``)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise DarknetError(f"{what} {text!r}: expected bytes or a size such as 512M or 8G")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise DarknetError(f"{what} {text!r}: must be positive")
    return value


def set_max_memory(size: int | str | None) -> None:
    """Set the budget for this process (None: back to the environment's or the default)."""
    global _explicit
    _explicit = None if size is None else (parse_size(size, "--max-memory") if isinstance(size, str) else int(size))


def max_memory() -> int:
    if _explicit is not None:
        return _explicit
    env = os.environ.get("PYDARKNET_MAX_MEMORY")
    return parse_size(env, "$PYDARKNET_MAX_MEMORY") if env else DEFAULT_MAX_MEMORY


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"
