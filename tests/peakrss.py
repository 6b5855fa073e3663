"""Peak resident memory of a piece of work, measured so that earlier tests cannot hide it.

`ru_maxrss` is useless inside a long pytest run: it is the process's peak since it started (and a child's
`ru_maxrss` starts from its parent's peak on Linux, since exec keeps the larger of the old and new peaks).
Linux resets a process's peak (VmHWM) to its current size on `echo 5 > /proc/self/clear_refs`, so the growth
of VmHWM over a block is the block's own peak.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _field(name: str, text: str | None = None) -> int:
    text = _STATUS.read_text() if text is None else text
    return int(re.search(rf"^{name}:\s+(\d+) kB", text, re.M).group(1))


class Peak:
    kib: int = 0


@contextlib.contextmanager
def peak_growth():
    """`with peak_growth() as p: ...` then `p.kib`: how far the block raised resident memory above its start."""
    Path("/proc/self/clear_refs").write_text("5")
    start = _field("VmRSS")
    peak = Peak()
    try:
        yield peak
    finally:
        peak.kib = _field("VmHWM") - start


# A wrapper that runs `python -m pydarknet ARGS...` and, at exit, writes the process's own peak (VmHWM of
# the new address space, not the inherited ru_maxrss) to the file named first.
CHILD = (
    "import atexit, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write(open('/proc/self/status').read()))\n"
    "sys.argv[0] = 'pydarknet'\n"
    "runpy.run_module('pydarknet', run_name='__main__', alter_sys=True)\n"
)


def command_with_peak(report: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", CHILD, str(report), *args]


def child_peak_kib(report: Path) -> int:
    return _field("VmHWM", report.read_text())
