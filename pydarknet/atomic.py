"""File I/O with one-line errors: crash-safe writes (a temp file in the target's directory, fsync, rename,
fsync the directory: a kill at any instant leaves either the previous file or the new one, whole) and reads
whose failures name the file.
"""
from __future__ import annotations

import os
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


def read_bytes(path: str | os.PathLike, what: str, limit: int | None = None) -> bytes:
    """The file's bytes (the first ``limit`` only, if given); every failure is a DarknetError naming it."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        raise DarknetError(f"no such {what} file", path) from None
    except IsADirectoryError:
        raise DarknetError(f"is a directory, not a {what} file", path) from None
    except OSError as e:
        raise DarknetError(f"cannot read {what}: {e.strerror}", path) from None
