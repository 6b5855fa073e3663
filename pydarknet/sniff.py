"""What a file is, from its first bytes: an image, a darknet cfg, a ``.data`` file, a weights file, a list.

The CLI checks every positional file against the role its position gives it (``check_role``), so
``pydarknet classify tiny.cfg dog.jpg`` (the weights left out) says that dog.jpg is a JPEG image where the
WEIGHTS file was expected, instead of a confusing size mismatch. Only regular files are looked at, and only
their first ``HEAD_BYTES``.
"""
from __future__ import annotations

import os
import re
import stat
import struct

from .errors import DarknetError

HEAD_BYTES = 4096

_IMAGE_MAGIC = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
                (b"BM", "a BMP image"), (b"8BPS", "a PSD image"), (b"II*\x00", "a TIFF image"),
                (b"MM\x00*", "a TIFF image"))
_SECTION = re.compile(r"\[[A-Za-z_]+\]")
_DATA_KEYS = {"classes", "names", "labels", "train", "valid", "test", "backup", "top", "eval", "results"}

#: role -> what the file in that position must be, in words
ROLES = {"image": "an image", "cfg": "a darknet .cfg file", "data": "a darknet .data file",
         "weights": "a darknet .weights file"}


def kind_of(path: str | os.PathLike) -> tuple[str, str] | None:
    """(kind, description) of a regular file: kind in image, cfg, data, weights, text; None when unknown or
    unreadable (the real reader then reports the problem)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except (OSError, ValueError):
        return None
    for magic, what in _IMAGE_MAGIC:
        if head.startswith(magic):
            return "image", what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "a WebP image"
    if re.match(rb"P[1-7]\s", head):
        return "image", "a PNM image"
    text = _as_text(head)
    if text is not None:
        lines = [ln.strip() for ln in text.split("\n")]
        lines = [ln for ln in lines if ln and ln[0] not in "#;"]
        if lines and _SECTION.fullmatch(lines[0].replace(" ", "")):
            return "cfg", "a darknet cfg"
        keys = {ln.split("=", 1)[0].strip() for ln in lines if "=" in ln}
        if lines and keys & _DATA_KEYS and all("=" in ln for ln in lines[:20]):
            return "data", "a darknet .data file"
        return "text", "a text file"
    if len(head) >= 16 and st.st_size >= 16:
        major, minor, revision = struct.unpack_from("<iii", head)
        if 0 <= major < 10 and 0 <= minor < 100 and 0 <= revision < 1000:
            return "weights", "a darknet weights file"
    return None


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 4:  # a character cut by the HEAD_BYTES boundary
            return head[: e.start].decode("utf-8")
        return None


#: role -> the kinds that are surely wrong there (a text file may be a .data file, an unknown binary an image)
_WRONG = {"image": {"cfg", "data", "weights"}, "cfg": {"image", "data", "weights"},
          "data": {"image", "cfg", "weights"}, "weights": {"image", "cfg", "data", "text"}}


def check_role(path: str | os.PathLike | None, role: str, usage: str) -> None:
    """Raise a DarknetError when ``path`` is recognisably something other than ``role`` (see ``ROLES``);
    ``usage`` is the command's positional order, for the message."""
    if not path:
        return
    found = kind_of(path)
    if found is None:
        return
    kind, what = found
    if kind == role or kind not in _WRONG[role]:
        return
    raise DarknetError(f"is {what}, given where {ROLES[role]} was expected ({usage})", os.fspath(path))
