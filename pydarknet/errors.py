"""The one error type the library raises for bad input, and the warning category for suspicious input.

Every message names the file and the place (``FILE:LINE`` for a cfg, ``FILE: layer N`` for weights) so the
CLI can print it as one line: ``pydarknet: error: FILE[:LINE | layer N]: problem``.
"""
from __future__ import annotations

import os


#: characters ``str.splitlines`` breaks at: none may reach a one-line message raw
_BREAKS = {c: f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
           for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def printable(text: str) -> str:
    """``text`` safe to print anywhere: a file name's undecodable bytes (Python's surrogate escapes) become
    ``\\xNN``, so printing never fails, whatever the terminal's or the file's encoding."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").encode(
            "utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str) -> str:
    """``printable(text)`` with every line break escaped: a message stays one line, whatever a file name or
    a value in it holds."""
    return printable(text).translate(str.maketrans(_BREAKS))


class DarknetError(Exception):
    """Bad input: a malformed cfg, a weights file that does not fit, an unreadable image, ..."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None, *,
                 line: int | None = None, layer: int | None = None):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.layer = layer
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.layer is not None:
            where += f"{': ' if where else ''}layer {self.layer}"
        return one_line(f"{where}: {self.problem}" if where else self.problem)


class DarknetWarning(UserWarning):
    """Something darknet would silently accept but is probably a mistake (unused key, duplicate key)."""
