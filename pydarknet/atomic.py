"""Crash-safe file writes: a temp file in the target's directory, fsync, rename, fsync the directory.

A kill at any instant leaves either the previous file or the new one, whole; never a torn file.
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
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
