"""Darknet ``.cfg`` text -> sections of options, by darknet's rules (``src/parser.c`` read_cfg,
``src/option_list.c``), plus what darknet chokes on.

Darknet's rules: a line is stripped of all whitespace; ``[name]`` opens a section; an empty line or one
starting with ``#`` or ``;`` is a comment; anything else is ``key=value``; for a duplicated key the first
one wins (option_find walks the list from the front). We also accept CRLF endings, a UTF-8 BOM, no final
newline and an inline ``# comment`` after a value, which darknet mis-reads. Values stay strings here; the
typed getters (``Section.get_int`` ...) convert them with darknet's defaults and report bad values with
``file:line``. Keys that no getter asked for are reported by ``Section.warn_unused``.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field

from .atomic import read_text, split_lines
from .errors import DarknetError, DarknetWarning

C_INT_MIN, C_INT_MAX = -(2 ** 31), 2 ** 31 - 1
#: what C's atoi/atof read whole (ASCII digits only; Python's int() and float() also take '1_0', '\u0661' and
#: '\uff13', which darknet reads as 1, 0 and 0: such a value must be refused, not read as another number)
_C_INT = re.compile(r"[+-]?[0-9]+")
_C_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.I)
_WHITESPACE = str.maketrans("", "", " \t\r\n\f\v")


@dataclass
class Section:
    """One ``[kind]`` block: its options (key -> (value, line)) in file order, first occurrence kept."""

    kind: str
    lineno: int
    path: str
    options: dict[str, tuple[str, int]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    # -- typed getters with darknet's defaults -------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.options

    def error(self, problem: str, key: str | None = None) -> DarknetError:
        line = self.options[key][1] if key in self.options else self.lineno
        return DarknetError(problem, self.path, line=line)

    def get_str(self, key: str, default: str | None = None) -> str | None:
        self.used.add(key)
        if key not in self.options:
            return default
        return self.options[key][0]

    def get_int(self, key: str, default: int | None = None) -> int | None:
        raw = self.get_str(key)
        if raw is None:
            return default
        try:
            value = parse_c_int(raw)
        except ValueError:
            raise self.error(f"[{self.kind}] {key}={raw!r}: expected an integer", key) from None
        return self._c_int(key, raw, value)

    def _c_int(self, key: str, raw: str, value: int) -> int:
        """darknet reads integers into a C ``int``: a value outside its range is an error, not a wrap."""
        if not C_INT_MIN <= value <= C_INT_MAX:
            raise self.error(f"[{self.kind}] {key}={raw}: out of range for darknet (a C int)", key)
        return value

    def get_float(self, key: str, default: float | None = None) -> float | None:
        raw = self.get_str(key)
        if raw is None:
            return default
        try:
            value = parse_c_float(raw)
        except ValueError:
            raise self.error(f"[{self.kind}] {key}={raw!r}: expected a number", key) from None
        if not math.isfinite(value):
            raise self.error(f"[{self.kind}] {key}={raw!r}: expected a finite number", key)
        return value

    def get_bool(self, key: str, default: bool = False) -> bool:
        return bool(self.get_int(key, int(default)))

    def get_int_list(self, key: str) -> list[int] | None:
        raw = self.get_str(key)
        if raw is None:
            return None
        try:
            values = [parse_c_int(v) for v in raw.split(",")]
        except ValueError:
            raise self.error(f"[{self.kind}] {key}={raw!r}: expected comma-separated integers", key) from None
        return [self._c_int(key, raw, v) for v in values]

    def get_float_list(self, key: str) -> list[float] | None:
        raw = self.get_str(key)
        if raw is None:
            return None
        try:
            values = [parse_c_float(v) for v in raw.split(",")]
        except ValueError:
            raise self.error(f"[{self.kind}] {key}={raw!r}: expected comma-separated numbers", key) from None
        if not all(math.isfinite(v) for v in values):
            raise self.error(f"[{self.kind}] {key}={raw!r}: expected finite numbers", key)
        return values

    def warn_unused(self) -> None:
        """Warn, with file:line, for every key no getter read (darknet's option_unused)."""
        for key, (value, line) in self.options.items():
            if key not in self.used:
                warnings.warn(DarknetWarning(f"{self.path}:{line}: unused key '{key}={value}' in [{self.kind}]"),
                              stacklevel=2)


def parse_c_int(text: str) -> int:
    """An integer as written in a darknet file: optional sign, ASCII digits (ValueError otherwise). A value
    of more than 12 digits comes back as one past the C int range (its exact size does not matter and a
    5,000-digit one is never converted)."""
    if not _C_INT.fullmatch(text):
        raise ValueError(text)
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 12:
        return C_INT_MIN - 1 if text.startswith("-") else C_INT_MAX + 1
    return int(text)


def parse_c_float(text: str) -> float:
    """A number as written in a darknet file: a decimal float or inf/nan, ASCII only (ValueError otherwise)."""
    if not _C_FLOAT.fullmatch(text):
        raise ValueError(text)
    return float(text)


def logical_lines(text: str):
    """(line number, raw line, stripped line) for every line that is not blank or a comment.

    darknet's fgetl + strip: lines split at ``\\n`` only (``atomic.split_lines``), all whitespace removed (we
    also drop a BOM and an inline ``# comment``)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    for lineno, raw in enumerate(split_lines(text), start=1):
        line = raw.translate(_WHITESPACE)
        if "#" in line:  # inline comment after a value (darknet would keep it in the value)
            line = line[: line.index("#")]
        if line and line[0] != ";":
            yield lineno, raw, line


def parse_cfg(text: str, path: str = "<cfg>") -> list[Section]:
    """Split cfg text into sections. Raises DarknetError (with file:line) for lines darknet cannot read."""
    from .specs import section_aliases  # the registry of layer kinds names the sections

    aliases = section_aliases()
    sections: list[Section] = []
    for lineno, raw, line in logical_lines(text):
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise DarknetError(f"malformed section header {raw.strip()!r}", path, line=lineno)
            name = line[1:-1].lower()
            if name not in aliases:
                raise DarknetError(f"unknown section [{name}]", path, line=lineno)
            sections.append(Section(aliases[name], lineno, path))
            continue
        if "=" not in line:
            raise DarknetError(f"expected 'key=value' or '[section]', got {raw.strip()!r}", path, line=lineno)
        if not sections:
            raise DarknetError(f"option {raw.strip()!r} before the first [section]", path, line=lineno)
        key, value = line.split("=", 1)
        if not key:
            raise DarknetError(f"option with no key: {raw.strip()!r}", path, line=lineno)
        section = sections[-1]
        if key in section.options:
            first = section.options[key][1]
            warnings.warn(DarknetWarning(
                f"{path}:{lineno}: duplicate key '{key}' in [{section.kind}]; the first one (line {first}) wins"),
                stacklevel=2)
            continue
        section.options[key] = (value, lineno)
    if not sections or sections[0].kind != "net":
        where = sections[0].lineno if sections else None
        raise DarknetError("the first section must be [net] or [network]", path, line=where)
    for s in sections[1:]:
        if s.kind == "net":
            raise DarknetError("a second [net] section", path, line=s.lineno)
    return sections


def read_cfg(path: str | os.PathLike) -> list[Section]:
    """Read and split a cfg file. Every failure is a DarknetError naming the file."""
    path = os.fspath(path)
    return parse_cfg(read_text(path, "cfg"), path)
