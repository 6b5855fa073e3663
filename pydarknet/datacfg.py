"""darknet's ``.data`` files and label lists (``src/option_list.c`` read_data_cfg, ``src/data.c``
get_labels), with built-in ImageNet-1k defaults so a user needs no data file for ImageNet.

Relative paths in a data file are relative to the working directory, as in darknet.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .atomic import read_text, split_lines
from .cfg import C_INT_MAX, logical_lines, parse_c_int
from .errors import DarknetError

LABELS_DIR = os.path.join(os.path.dirname(__file__), "labels")

#: Names that stand for built-in data configurations (no file needed).
BUILTIN = {"imagenet1k": ("imagenet1k.names", "imagenet1k.labels", 1000),
           "imagenet1k-sorted": ("imagenet1k-sorted.names", "imagenet1k-sorted.labels", 1000),
           "fashion": ("fashion.names", "fashion.labels", 10)}


@dataclass(frozen=True)
class DataConfig:
    """What a ``.data`` file says. ``line_of`` maps keys to their line for error messages."""
    path: str
    classes: int | None = None
    names: str | None = None
    labels: str | None = None
    top: int | None = None
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    backup: str | None = None
    builtin: bool = False

    @property
    def names_file(self) -> str:
        """darknet's predict: ``names``, else ``labels``, else data/labels.list."""
        return self.names or self.labels or "data/labels.list"

    def load_names(self, outputs: int | None = None) -> list[str]:
        """The class names, checked to cover ``outputs`` classes."""
        return read_label_list(self.names_file, minimum=outputs, source=self.path)

    def load_labels(self) -> list[str]:
        """The label strings matched against image paths (classifier valid/train)."""
        if not self.labels:
            raise DarknetError("has no 'labels=' list", self.path)
        return read_label_list(self.labels, minimum=self.classes, source=self.path)


_INT_KEYS = ("classes", "top")
_KNOWN = ("classes", "names", "labels", "top", "train", "valid", "test", "backup", "eval", "results", "map",
          "hierarchy", "tree", "leaves")


def read_data_cfg(path: str | os.PathLike) -> DataConfig:
    """Read a darknet .data file, or a built-in name such as ``imagenet1k``."""
    path = os.fspath(path)
    if path in BUILTIN and not os.path.exists(path):
        return builtin_data(path)
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for lineno, raw, line in logical_lines(read_text(path, "data")):
        if "=" not in line:
            raise DarknetError(f"expected 'key=value', got {raw.strip()!r}", path, line=lineno)
        key, value = line.split("=", 1)
        if key not in values:  # first one wins, as option_find
            values[key], lines[key] = value, lineno
    typed: dict = {}
    for key, value in values.items():
        if key in _INT_KEYS:
            try:
                typed[key] = parse_c_int(value)
            except ValueError:
                raise DarknetError(f"{key}={value!r}: expected an integer", path, line=lines[key]) from None
            if typed[key] > C_INT_MAX:
                raise DarknetError(f"{key}={value}: out of range for darknet (a C int)", path, line=lines[key])
            if typed[key] <= 0:
                raise DarknetError(f"{key}={value}: must be positive", path, line=lines[key])
        elif key in ("names", "labels", "train", "valid", "test", "backup"):
            typed[key] = value
    return DataConfig(path=path, **typed)


def builtin_data(name: str) -> DataConfig:
    names, labels, classes = BUILTIN[name]
    return DataConfig(path=name, classes=classes, names=os.path.join(LABELS_DIR, names),
                      labels=os.path.join(LABELS_DIR, labels), top=5, builtin=True)


def read_label_list(path: str, *, minimum: int | None = None, source: str | None = None) -> list[str]:
    """One label per line (CRLF tolerated). ``minimum``: the list must have at least that many entries."""
    try:
        text = read_text(path, "label list")
    except DarknetError as e:
        if source and source != path:
            raise DarknetError(f"{e.problem} (named in {source})", path) from None
        raise
    names = split_lines(text)
    if minimum is not None and len(names) < minimum:
        raise DarknetError(f"has {len(names)} names but the network has {minimum} classes", path)
    return names
