"""The local cache and verified, resumable downloads into it. Knows nothing of the zoo: a caller gives the
URLs, the destination, the sizes the file may have and a check of the finished file.

Each URL streams into ``<dest>.part`` (resumed with an HTTP Range request when a .part exists), is verified
(by the caller's ``verify``), fsynced and renamed into place, so the cache never holds a torn or unverified
final file. An advisory lock on ``<dest>.lock`` keeps two processes from writing one .part.
"""
from __future__ import annotations

import http.client
import os
import pathlib
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Callable, Iterable, Sequence

from .atomic import fsync_dir
from .errors import DarknetError, DarknetWarning

_CHUNK = 1 << 20
_MAX_TRIES_PER_URL = 5  # resumes of one URL after dropped connections, while each try makes progress


def cache_dir() -> pathlib.Path:
    """$PYDARKNET_CACHE, else $XDG_CACHE_HOME/pydarknet, else ~/.cache/pydarknet (not created here)."""
    explicit = os.environ.get("PYDARKNET_CACHE")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "pydarknet"
    return pathlib.Path.home() / ".cache" / "pydarknet"


def mirrors_from_env() -> list[str]:
    """$PYDARKNET_MIRROR: base URLs (or local directories) separated by commas and/or whitespace."""
    return [m for m in re.split(r"[\s,]+", os.environ.get("PYDARKNET_MIRROR", "")) if m]


def mirror_url(base: str, filename: str) -> str:
    """``filename`` on a mirror: a base URL, or a local directory (a file:// URL)."""
    if "://" not in base:
        return pathlib.Path(base).expanduser().resolve().joinpath(filename).as_uri()
    return base.rstrip("/") + "/" + urllib.parse.quote(filename)


def looks_like_html(head: bytes) -> bool:
    """Binary files start with their own bytes; an HTML error or landing page starts with '<'."""
    return head.lstrip()[:1] == b"<"


class Failed(Exception):
    """One URL failed; ``keep_part`` says whether the .part holds a good prefix worth resuming."""

    def __init__(self, problem: str, keep_part: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.keep_part = keep_part


class FetchError(Exception):
    """Every URL failed: ``failures`` holds one "URL: problem" line each."""

    def __init__(self, failures: list[str]):
        super().__init__("; ".join(failures))
        self.failures = failures


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """'bytes START-END/TOTAL' -> (START, TOTAL or None)."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _unlink(path: pathlib.Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _size(path: pathlib.Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def part_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".part")


def _download_once(url: str, part: pathlib.Path, sizes: Sequence[int], needed_by: str, *, progress: bool,
                   timeout: float) -> None:
    """Stream ``url`` into ``part``, resuming from its current size. Raises Failed."""
    from . import __version__

    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"pydarknet/{__version__}", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the .part is not a prefix of this file: start over
            _unlink(part)
            raise Failed("the server refused to resume the partial download (HTTP 416); it will restart",
                         keep_part=True) from None
        raise Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise Failed(f"cannot connect: {getattr(e.reason, 'strerror', None) or e.reason}") from None
    except (socket.timeout, TimeoutError):
        raise Failed(f"no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"cannot connect: {e}") from None
    with resp:
        status = getattr(resp, "status", None) or 200  # file:// answers without a status
        final_url = resp.geturl()
        where = "" if final_url == url else f" (redirected to {final_url})"
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith(("text/html", "application/xhtml")):
            raise Failed(f"serves an HTML page ({ctype.split(';')[0]}), not the file{where}")
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if status == 206:
            cr = _content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != start:
                raise Failed(f"answered the resume request with a bad Content-Range "
                             f"({resp.headers.get('Content-Range')!r})")
            total = cr[1] if cr[1] is not None else (start + length if length is not None else None)
            mode = "ab"
        else:  # 200: the whole file (a server that ignores Range restarts us from zero)
            start, total, mode = 0, length, "wb"

        def read() -> bytes:
            try:
                return resp.read(_CHUNK)
            except (http.client.IncompleteRead, OSError, http.client.HTTPException) as e:
                kind = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else "dropped"
                raise Failed(f"the connection {kind} after {done} of {total or '?'} bytes; "
                             f"{part.name} is kept to resume", keep_part=done > 0) from None

        done = start
        chunk = read()
        if start == 0 and looks_like_html(chunk[:64]):
            raise Failed(f"serves an HTML page, not the file{where}")
        if total is not None and sizes and total not in sizes:
            raise Failed(f"offers {total} bytes but {needed_by} needs {' or '.join(map(str, sizes))}{where}")
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[: -len(".part")], disable=not progress, leave=False)
        try:
            with open(part, mode) as f:
                try:
                    while chunk:
                        f.write(chunk)
                        done += len(chunk)
                        bar.update(len(chunk))
                        if total is not None and done > total:
                            raise Failed(f"sent more than the {total} bytes it announced")
                        chunk = read()
                finally:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as e:
            raise DarknetError(f"cannot write: {e.strerror or e}", part) from None
        finally:
            bar.close()
        if total is not None and done < total:
            raise Failed(f"the connection closed after {done} of {total} bytes; {part.name} is kept to resume",
                         keep_part=done > 0)


def _fetch_url(url: str, dest: pathlib.Path, verify: Callable[[pathlib.Path], None], sizes: Sequence[int],
               needed_by: str, *, progress: bool, timeout: float) -> None:
    """Download, verify and move into place from one URL, resuming after dropped connections. Raises Failed."""
    part = part_path(dest)
    restarted = False
    for _ in range(_MAX_TRIES_PER_URL):
        before = _size(part)
        try:
            _download_once(url, part, sizes, needed_by, progress=progress, timeout=timeout)
        except Failed as e:
            if not e.keep_part:
                _unlink(part)
                raise
            if _size(part) != before:
                continue  # progress was made, or a stale .part was dropped: resume / restart
            raise  # no progress: keep the .part for the next URL or the next run
        try:
            verify(part)
        except DarknetError as e:
            _unlink(part)
            if before and not restarted:  # the resumed prefix may belong to another file: once more from zero
                restarted = True
                continue
            raise Failed(e.problem) from None
        os.replace(part, dest)
        fsync_dir(dest.parent)
        return
    raise Failed(f"gave up after {_MAX_TRIES_PER_URL} tries")


class _Lock:
    """Advisory exclusive lock on ``<file>.lock`` so two processes do not write one .part (POSIX only)."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the lock file stays (deleting it would race)


def fetch(urls: Iterable[str], dest: str | os.PathLike, *, verify: Callable[[pathlib.Path], None],
          sizes: Sequence[int] = (), needed_by: str = "the caller", progress: bool = True,
          timeout: float = 30.0) -> pathlib.Path:
    """Download ``dest`` from the first of ``urls`` that serves a file passing ``verify`` (which raises
    DarknetError on a bad file); ``sizes``, when given, are the only sizes the file may announce
    (``needed_by`` names who needs them, in the message). Returns ``dest``.

    A ``dest`` already there that passes ``verify`` is returned at once (also after waiting for another
    process's download). Raises FetchError with one line per failed URL when none succeeds, DarknetError
    when the cache directory cannot be made."""
    dest = pathlib.Path(dest)
    urls = list(dict.fromkeys(urls))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"cannot create the cache directory: {e.strerror or e}", dest.parent) from None
    failures: list[str] = []
    with _Lock(dest.with_name(dest.name + ".lock")):
        if dest.exists():  # another process may have finished it while we waited for the lock
            try:
                verify(dest)
                return dest
            except DarknetError:
                pass
        for url in urls:
            try:
                _fetch_url(url, dest, verify, sizes, needed_by, progress=progress, timeout=timeout)
            except Failed as e:
                failures.append(f"{url}: {e.problem}")
                continue
            if failures:
                warnings.warn(DarknetWarning(f"fetched {dest.name} from {url} after: {'; '.join(failures)}"),
                              stacklevel=2)
            return dest
    raise FetchError(failures)
