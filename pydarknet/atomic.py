"""File I/O with one-line errors: crash-safe writes (a temp file in the target's directory, fsync, rename,
fsync the directory: a kill at any instant leaves either the previous file or the new one, whole) and reads
whose failures name the file, bounded: only regular files are opened, their size is known (and capped)
before a byte is read.
"""
from __future__ import annotations

import os
import stat
import tempfile
from typing import Iterable

from .errors import DarknetError


def atomic_write(path: str | os.PathLike, data: bytes | Iterable[bytes]) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise DarknetError("cannot write: the directory does not exist", path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint or cached file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                for chunk in data:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise DarknetError(f"cannot write: {e.strerror or e}", path) from None
        raise
    fsync_dir(directory)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (best effort: some filesystems refuse)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


#: Size and line caps per kind of text input. A real file of each kind is far below its cap (ImageNet-22k's
#: label list is 1 MB; a 1.28M-image train list about 100 MB); a device, a FIFO or a runaway file is refused
#: before a byte is read.
TEXT_LIMITS = {  # what -> (max bytes, max lines)
    "cfg": (16 << 20, 1_000_000),
    "data": (1 << 20, 10_000),
    "label list": (64 << 20, 2_000_000),
    "image list": (1 << 30, 50_000_000),
    "model facts": (1 << 20, 100_000),
}
DEFAULT_TEXT_LIMIT = (64 << 20, 2_000_000)


def _describe_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _a(what: str) -> str:
    """``what`` with its indefinite article: "a cfg", "an image"."""
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def _oserror(e: OSError, what: str, path: str) -> DarknetError:
    if isinstance(e, FileNotFoundError):
        return DarknetError(f"no such {what} file", path)
    if isinstance(e, IsADirectoryError):
        return DarknetError(f"is a directory, not {_a(what)} file", path)
    return DarknetError(f"cannot read {what}: {e.strerror or e}", path)


def check_regular(path: str | os.PathLike, what: str) -> os.stat_result:
    """``stat`` the path: a regular file's stat result, else one DarknetError saying what it is instead."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise _oserror(e, what, path) from None
    except ValueError:  # an embedded NUL in the path
        raise DarknetError(f"invalid {what} path", path.replace("\0", "\\0")) from None
    if not stat.S_ISREG(st.st_mode):
        raise DarknetError(f"is {_describe_mode(st.st_mode)}, not {_a(what)} file", path)
    return st


def open_regular(path: str | os.PathLike, what: str, *, max_bytes: int | None = None):
    """Open a regular file for reading without ever blocking: (binary file, size). Refuses anything but a
    regular file (checked before the open, and again on the open descriptor, so a path swapped for a FIFO
    between the two cannot hang), and a file over ``max_bytes``."""
    path = os.fspath(path)
    check_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _oserror(e, what, path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DarknetError(f"is {_describe_mode(st.st_mode)}, not {_a(what)} file", path)
        if max_bytes is not None and st.st_size > max_bytes:
            raise DarknetError(f"{what} file is {st.st_size:,} bytes, over the limit of {max_bytes:,}", path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, what: str, limit: int | None = None, *,
               max_bytes: int | None = None) -> bytes:
    """A regular file's bytes (the first ``limit`` only, if given), refused when larger than ``max_bytes``;
    every failure is a DarknetError naming the file. Never reads more than the size ``stat`` gave plus one
    byte (a file growing under us is refused, not followed)."""
    path = os.fspath(path)
    f, size = open_regular(path, what, max_bytes=max_bytes)
    try:
        with f:
            want = size + 1 if limit is None else min(limit, size + 1)
            data = f.read(want)
    except OSError as e:
        raise _oserror(e, what, path) from None
    if limit is None and len(data) > size:
        raise DarknetError(f"{what} file grew while being read", path)
    return data


def split_lines(text: str) -> list[str]:
    """Lines where darknet's ``fgetl`` splits them (``src/utils.c``): at ``\\n`` only, one trailing ``\\r``
    dropped. A form feed, a vertical tab or U+2028 is part of its line, unlike ``str.splitlines``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text(path: str | os.PathLike, what: str, *, max_bytes: int | None = None,
              max_lines: int | None = None) -> str:
    """A UTF-8 text file's contents, bounded by ``TEXT_LIMITS[what]`` (size before reading, lines after);
    every failure is a DarknetError naming the file (and the line, for bad bytes)."""
    path = os.fspath(path)
    cap_bytes, cap_lines = TEXT_LIMITS.get(what, DEFAULT_TEXT_LIMIT)
    max_bytes = cap_bytes if max_bytes is None else max_bytes
    max_lines = cap_lines if max_lines is None else max_lines
    data = read_bytes(path, what, max_bytes=max_bytes)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if lines > max_lines:
        raise DarknetError(f"{what} file has {lines:,} lines, over the limit of {max_lines:,}", path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DarknetError(f"not a text {what} file (invalid UTF-8)", path, line=line) from None
    if "\x00" in text:
        raise DarknetError(f"not a text {what} file (contains NUL bytes)", path,
                           line=text[: text.index("\x00")].count("\n") + 1)
    return text
