"""The one error type the library raises for bad input, and the warning category for suspicious input.

Every message names the file and the place (``FILE:LINE`` for a cfg, ``FILE: layer N`` for weights) so the
CLI can print it as one line: ``pydarknet: error: FILE[:LINE | layer N]: problem``.
"""
from __future__ import annotations

import os


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
        return f"{where}: {self.problem}" if where else self.problem


class DarknetWarning(UserWarning):
    """Something darknet would silently accept but is probably a mistake (unused key, duplicate key)."""
