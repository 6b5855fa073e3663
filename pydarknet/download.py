"""The local cache and verified, resumable downloads into it. Knows nothing of the zoo: a caller gives the
URLs, the destination, the sizes the file may have and a check of the finished file.

Each URL streams into ``<dest>.part``, is verified (by the caller's ``verify``), fsynced and renamed into
place, so the cache never holds a torn or unverified final file. An advisory lock on ``<dest>.lock`` keeps
two processes from writing one .part. Hardening, each point tested against a hostile local server:

  * bounded: a body longer than the largest valid size is cut off at that size (with or without a
    Content-Length); one overall deadline covers the whole fetch, every read has a socket timeout, and a
    transfer slower than a minimum rate (averaged over a window) is dropped;
  * resumable but never spliced: ``<dest>.part.json`` records the URL and the validator (strong ETag, else
    Last-Modified) the .part was started with; a resume sends ``Range`` with ``If-Range`` and restarts from
    zero when the server answers 200. Without a validator for this URL the .part's first bytes are fetched
    again and compared, and a mismatch discards it. The .part survives network failures (timeouts, drops,
    too slow, deadline) and is deleted only when its content is wrong (HTML, wrong size, failed check);
  * the cache is never followed out of: the .part, its record, the lock and the final file are ``lstat``-ed
    and opened with ``O_NOFOLLOW``; a symlink, FIFO or directory planted there is an error naming it. A
    cache that cannot be written is one error suggesting ``$PYDARKNET_CACHE``;
  * mirror files (``file://`` URLs, local directories) are opened only when regular (``atomic.open_regular``).
"""
from __future__ import annotations

import errno
import http.client
import json
import math
import os
import pathlib
import re
import socket
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Callable, Iterable, Sequence

from .atomic import _describe_mode, atomic_write, fsync_dir, open_regular, read_bytes
from .errors import DarknetError, DarknetWarning

_CHUNK = 1 << 20
_RECHECK = 64 << 10     # bytes of a .part fetched again to check it when no validator is known
_MAX_TRIES_PER_URL = 5  # resumes of one URL after dropped connections, while each try makes progress
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

DEFAULT_DEADLINE = 3600.0    # seconds for one fetch, all URLs together ($PYDARKNET_DOWNLOAD_DEADLINE)
DEFAULT_MIN_RATE = 1024.0    # bytes/s ($PYDARKNET_DOWNLOAD_MIN_RATE, "RATE" or "RATE/WINDOW")
DEFAULT_RATE_WINDOW = 30.0   # seconds the rate is averaged over

_LINK = "is a symbolic link; pydarknet never follows links in its cache: remove it"


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


def short_url(url: str, filename: str = "") -> str:
    """``url`` without its scheme and without a trailing ``/filename``: 'data.pjreddie.com/files'."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        where = urllib.request.url2pathname(parts.path)
        tail = "/" + filename
    else:
        where = parts.netloc + parts.path
        tail = "/" + urllib.parse.quote(filename)
    if filename and where.endswith(tail) and len(where) > len(tail):
        where = where[: -len(tail)]
    return where


def looks_like_html(head: bytes) -> bool:
    """Binary files start with their own bytes; an HTML error or landing page starts with '<'."""
    return head.lstrip()[:1] == b"<"


# ---------------------------------------------------------------------------------------------------------
# limits


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise DarknetError(f"{name} must be a number >= 0 (0 turns it off), not {text!r}")
    return value


def download_limits(deadline: float | None = None, min_rate: float | None = None,
                    rate_window: float | None = None) -> tuple[float, float, float]:
    """(deadline s, minimum rate B/s, rate window s): the arguments where given, else
    $PYDARKNET_DOWNLOAD_DEADLINE and $PYDARKNET_DOWNLOAD_MIN_RATE ("RATE" or "RATE/WINDOW"), else the
    defaults. A deadline or rate of 0 turns that limit off."""
    if deadline is None:
        env = os.environ.get("PYDARKNET_DOWNLOAD_DEADLINE", "").strip()
        deadline = _number("$PYDARKNET_DOWNLOAD_DEADLINE", env) if env else DEFAULT_DEADLINE
    if min_rate is None:
        env = os.environ.get("PYDARKNET_DOWNLOAD_MIN_RATE", "").strip()
        if env:
            rate, _, window = env.partition("/")
            min_rate = _number("$PYDARKNET_DOWNLOAD_MIN_RATE", rate)
            if window and rate_window is None:
                rate_window = _number("$PYDARKNET_DOWNLOAD_MIN_RATE's window", window)
        else:
            min_rate = DEFAULT_MIN_RATE
    if rate_window is None:
        rate_window = DEFAULT_RATE_WINDOW
    for name, value in (("deadline", deadline), ("min_rate", min_rate), ("rate_window", rate_window)):
        _number(name, str(value))
    return float(deadline), float(min_rate), float(rate_window)


class _Budget:
    """The limits of one fetch: its overall deadline, the socket timeout per read, the minimum rate."""

    def __init__(self, timeout: float, deadline: float, min_rate: float, window: float):
        self.timeout, self.deadline, self.min_rate, self.window = timeout, deadline, min_rate, window
        self.end = time.monotonic() + deadline if deadline else None

    def check(self) -> None:
        if self.end is not None and time.monotonic() >= self.end:
            raise Failed(f"the deadline of {self.deadline:g} s for the whole download passed", abort=True)

    def read_timeout(self) -> float:
        if self.end is None:
            return self.timeout
        return max(0.01, min(self.timeout, self.end - time.monotonic()))


class _Rate:
    """Refuses a transfer slower than ``min_rate`` bytes/s over each window of ``window`` seconds."""

    def __init__(self, budget: _Budget):
        self.budget = budget
        self.t0, self.n0 = time.monotonic(), 0

    def update(self, n: int) -> None:
        b = self.budget
        now = time.monotonic()
        if b.min_rate and b.window and now - self.t0 >= b.window:
            rate = (n - self.n0) / (now - self.t0)
            if rate < b.min_rate:
                raise Failed(f"too slow: {rate:.0f} B/s over {now - self.t0:.3g} s, under the minimum "
                             f"{b.min_rate:g} B/s", resumable=False)
            self.t0, self.n0 = now, n


# ---------------------------------------------------------------------------------------------------------
# failures


class Failed(Exception):
    """One URL failed. ``bad_part``: the .part's content is wrong (delete it); ``resumable``: the same URL may
    be tried again at once if the .part grew (a dropped connection); ``abort``: try no further URL."""

    def __init__(self, problem: str, *, bad_part: bool = False, resumable: bool = False, abort: bool = False):
        super().__init__(problem)
        self.problem = problem
        self.bad_part, self.resumable, self.abort = bad_part, resumable, abort


class FetchError(Exception):
    """Every URL failed: ``failures`` holds (URL, problem) pairs; ``summary()`` says it in one line."""

    def __init__(self, filename: str, failures: list[tuple[str, str]], *, untried: int = 0, kept: int = 0):
        self.filename, self.failures, self.untried, self.kept = filename, failures, untried, kept
        super().__init__(self.summary())

    def summary(self) -> str:
        n = len(self.failures)
        text = f"tried {n} URL{'' if n == 1 else 's'}: " + ", ".join(
            f"{short_url(url, self.filename)} ({' '.join(problem.split())})" for url, problem in self.failures)
        if self.untried:
            text += f"; {self.untried} more not tried"
        if self.kept:
            text += f"; the partial download ({self.kept} bytes) is kept to resume"
        return text


class _RangeRefused(Exception):
    """HTTP 416; ``total`` from its 'Content-Range: bytes */TOTAL' when the server sent one."""

    def __init__(self, total: int | None):
        super().__init__("HTTP 416")
        self.total = total


# ---------------------------------------------------------------------------------------------------------
# the cache's files: never a link, never anything but a regular file


def check_cache_file(path: str | os.PathLike) -> os.stat_result | None:
    """``lstat`` a file in the cache: None when absent, its stat when a regular file, else a DarknetError
    naming it (a symlink is never followed; a FIFO, a directory or a device is never opened)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise DarknetError(f"cannot read: {e.strerror or e}", path) from None
    if stat.S_ISLNK(st.st_mode):
        raise DarknetError(_LINK, path)
    if not stat.S_ISREG(st.st_mode):
        raise DarknetError(f"is {_describe_mode(st.st_mode)}, not a regular file: remove it", path)
    return st


def _cache_dir_error(directory: os.PathLike, e: OSError) -> DarknetError:
    return DarknetError(f"cannot write to the cache directory: {e.strerror or e} (set PYDARKNET_CACHE to a "
                        "writable directory)", directory)


def _write_error(path: pathlib.Path, e: OSError) -> DarknetError:
    if e.errno == errno.ELOOP:
        return DarknetError(_LINK, path)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
        return _cache_dir_error(path.parent, e)
    return DarknetError(f"cannot write: {e.strerror or e}", path)


def _open_cache_file(path: pathlib.Path, flags: int) -> int:
    """os.open without following a link or blocking on a FIFO; the descriptor of a regular file."""
    check_cache_file(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, 0o644)
    except IsADirectoryError:
        raise DarknetError("is a directory, not a regular file: remove it", path) from None
    except OSError as e:
        raise _write_error(path, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise DarknetError(f"is {_describe_mode(st.st_mode)}, not a regular file: remove it", path)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def _open_part(part: pathlib.Path, append: bool):
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(_open_cache_file(part, flags), "ab" if append else "wb")


def part_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".part")


def state_path(part: pathlib.Path) -> pathlib.Path:
    """``<dest>.part.json``: where the .part came from (URL) and its validator (ETag / Last-Modified)."""
    return part.with_name(part.name + ".json")


def _unlink(path: pathlib.Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise _write_error(path, e) from None


def _discard(part: pathlib.Path) -> None:
    _unlink(part)
    _unlink(state_path(part))


def _part_size(part: pathlib.Path) -> int:
    st = check_cache_file(part)
    return st.st_size if st else 0


def _read_state(part: pathlib.Path) -> dict:
    path = state_path(part)
    if check_cache_file(path) is None:
        return {}
    try:
        data = json.loads(read_bytes(path, "download record", max_bytes=64 << 10))
    except (DarknetError, ValueError, RecursionError):  # a damaged record: start the download afresh
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(part: pathlib.Path, state: dict) -> None:
    path = state_path(part)
    check_cache_file(path)
    atomic_write(path, json.dumps(state).encode())


# ---------------------------------------------------------------------------------------------------------
# HTTP


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """'bytes START-END/TOTAL' -> (START, TOTAL or None)."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _validator(headers) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return (headers.get("Last-Modified") or "").strip() or None


def _set_read_timeout(resp, seconds: float) -> None:
    """Shorten the socket timeout of an open response as the deadline nears (best effort)."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass


def _open(url: str, headers: dict, budget: _Budget):
    budget.check()
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=budget.read_timeout())
    except urllib.error.HTTPError as e:
        cr = e.headers.get("Content-Range", "") if e.headers else ""
        e.close()
        if e.code == 416:
            m = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", cr or "")
            raise _RangeRefused(int(m.group(1)) if m else None) from None
        raise Failed(f"HTTP {e.code} {e.reason}".rstrip()) from None
    except (socket.timeout, TimeoutError):
        budget.check()
        raise Failed(f"no answer within {budget.read_timeout():g} s") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            budget.check()
            raise Failed(f"no answer within {budget.read_timeout():g} s") from None
        raise Failed(f"cannot connect: {getattr(reason, 'strerror', None) or reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise Failed(f"cannot connect: {e}") from None


def _headers() -> dict:
    from . import __version__

    return {"User-Agent": f"pydarknet/{__version__}", "Accept-Encoding": "identity"}


def _reader(resp, budget: _Budget, where: Callable[[], str]):
    read1 = getattr(resp, "read1", None) or resp.read

    def read() -> bytes:
        _set_read_timeout(resp, budget.read_timeout())
        try:
            return read1(_CHUNK)
        except (socket.timeout, TimeoutError):
            budget.check()
            raise Failed(f"timed out, no data for {budget.read_timeout():g} s {where()}", resumable=True) from None
        except (OSError, http.client.HTTPException):
            raise Failed(f"the connection dropped {where()}", resumable=True) from None

    return read


def _recheck(url: str, part: pathlib.Path, start: int, budget: _Budget):
    """The .part has no validator for this URL: fetch its first bytes again and compare. Returns
    ('same', validator), ('complete', validator), ('other', None), or ('whole', response) when the server
    ignored the Range and sent the whole file (the caller restarts from zero with it)."""
    k = min(start, _RECHECK)
    try:
        resp = _open(url, {**_headers(), "Range": f"bytes=0-{k - 1}"}, budget)
    except _RangeRefused:
        return "other", None
    if (getattr(resp, "status", None) or 200) != 206:
        return "whole", resp
    with resp:
        cr = _content_range(resp.headers.get("Content-Range"))
        if cr is None or cr[0] != 0:
            raise Failed(f"answered a range request with a bad Content-Range ({resp.headers.get('Content-Range')!r})")
        got = b""
        read = _reader(resp, budget, lambda: "while re-checking the partial download")
        while len(got) < k:
            chunk = read()
            if not chunk:
                break
            got += chunk
            budget.check()
        validator = _validator(resp.headers)
    mine = read_bytes(part, "partial download", limit=k)
    total = cr[1]
    if got[:k] != mine or (total is not None and total < start):
        return "other", None
    return ("complete" if total == start else "same"), validator


def _download_once(url: str, part: pathlib.Path, sizes: Sequence[int], needed_by: str, *, progress: bool,
                   budget: _Budget) -> None:
    """Stream ``url`` into ``part``, resuming it when it is provably a prefix of this URL's file. Raises Failed."""
    start = _part_size(part)
    state = _read_state(part) if start else {}
    validator = state.get("validator") if state.get("url") == url else None
    whole = None
    if start and not validator:
        verdict, value = _recheck(url, part, start, budget)
        if verdict == "whole":
            whole = value
        elif verdict == "other":  # not a prefix of this URL's file: never spliced. Start over; the old .part
            start = 0               # stays until this URL's first bytes are known to be the file's
        else:
            validator = value
            if state != {"url": url, "validator": validator}:
                _write_state(part, {"url": url, "validator": validator})
            if verdict == "complete":
                return
    if whole is not None:
        resp = whole
    else:
        headers = _headers()
        if start:
            headers["Range"] = f"bytes={start}-"
            if validator:
                headers["If-Range"] = validator
        try:
            resp = _open(url, headers, budget)
        except _RangeRefused as e:
            if start and e.total == start:  # the .part is the whole file already
                return
            _discard(part)
            raise Failed("refused to resume (HTTP 416); restarting", resumable=True) from None
    with resp:
        _stream(resp, url, part, start, sizes, needed_by, progress=progress, budget=budget)


def _stream(resp, url: str, part: pathlib.Path, start: int, sizes: Sequence[int], needed_by: str, *,
            progress: bool, budget: _Budget) -> None:
    status = getattr(resp, "status", None) or 200
    final_url = resp.geturl()
    where = "" if final_url == url else f" (redirected to {final_url})"
    ctype = (resp.headers.get("Content-Type") or "").lower()
    if ctype.startswith(("text/html", "application/xhtml")):
        raise Failed(f"serves an HTML page ({ctype.split(';')[0]}), not the file{where}")
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.strip().isdigit() else None
    if status == 206:
        cr = _content_range(resp.headers.get("Content-Range"))
        if not start or cr is None or cr[0] != start:
            raise Failed(f"answered the resume request with a bad Content-Range "
                         f"({resp.headers.get('Content-Range')!r})")
        total = cr[1] if cr[1] is not None else (start + length if length is not None else None)
        append = True
    else:  # 200: the whole file (a server that ignores Range, or a changed file under If-Range: from zero)
        start, total, append = 0, length, False
    limit = max(sizes) if sizes else None
    wrong_size = Failed(f"offers {total} bytes but {needed_by} needs {' or '.join(map(str, sizes))}{where}",
                        bad_part=append)
    if total is not None and limit is not None and total > limit:
        raise wrong_size  # refused before a byte of the body is read
    done = start
    read = _reader(resp, budget, lambda: f"after {done} of {total or '?'} bytes")
    chunk = read()
    if not append and looks_like_html(chunk[:64]):
        raise Failed(f"serves an HTML page, not the file{where}")
    if total is not None and sizes and total not in sizes:
        raise wrong_size  # too short: its first bytes were read only to tell an HTML page from a wrong file
    state = {"url": url, "validator": _validator(resp.headers)}
    if not append or _read_state(part) != state:
        _write_state(part, state)  # recorded before the first byte of a new .part is written
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
               desc=part.name[: -len(".part")], disable=not progress, leave=False)
    rate = _Rate(budget)
    try:
        with _open_part(part, append) as f:
            try:
                while chunk:
                    if limit is not None and done + len(chunk) > limit:
                        raise Failed(f"sent more than {limit} bytes, the largest size {needed_by} allows{where}",
                                     bad_part=True)
                    if total is not None and done + len(chunk) > total:
                        raise Failed(f"sent more than the {total} bytes it announced", bad_part=True)
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
                    rate.update(done - start)
                    budget.check()
                    chunk = read()
            finally:
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise _write_error(part, e) from None
    finally:
        bar.close()
    if total is not None and done < total:
        raise Failed(f"the connection closed after {done} of {total} bytes", resumable=True)


def _copy_local(url: str, part: pathlib.Path, sizes: Sequence[int], needed_by: str, budget: _Budget) -> None:
    """A file:// mirror: opened only when it is a regular file of a valid size, copied into a new .part."""
    path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    try:
        src, size = open_regular(path, "mirror", max_bytes=max(sizes) if sizes else None)
    except DarknetError as e:
        raise Failed(e.problem) from None
    with src:
        if sizes and size not in sizes:
            raise Failed(f"holds {size} bytes but {needed_by} needs {' or '.join(map(str, sizes))}")
        _unlink(state_path(part))
        done = 0
        try:
            with _open_part(part, append=False) as f:
                while done <= size:
                    chunk = src.read(min(_CHUNK, size + 1 - done))
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    budget.check()
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _write_error(part, e) from None
    if done != size:
        raise Failed(f"changed size while being copied ({size} -> {done} bytes)", bad_part=True)


def _fetch_url(url: str, dest: pathlib.Path, verify: Callable[[pathlib.Path], None], sizes: Sequence[int],
               needed_by: str, *, progress: bool, budget: _Budget) -> None:
    """Download, verify and move into place from one URL, resuming after dropped connections. Raises Failed."""
    part = part_path(dest)
    local = urllib.parse.urlsplit(url).scheme == "file"
    restarted = False
    for _ in range(_MAX_TRIES_PER_URL):
        before = _part_size(part)
        try:
            if local:
                _copy_local(url, part, sizes, needed_by, budget)
            else:
                _download_once(url, part, sizes, needed_by, progress=progress, budget=budget)
        except Failed as e:
            if e.bad_part:
                _discard(part)
                raise
            if e.resumable and _part_size(part) != before:
                continue  # progress was made, or a stale .part was dropped: resume / restart
            raise  # keep the .part for the next URL or the next run
        try:
            verify(part)
        except DarknetError as e:
            _discard(part)
            if before and not restarted and not local:  # a resumed prefix that went wrong: once more from zero
                restarted = True
                continue
            raise Failed(e.problem) from None
        check_cache_file(part)
        check_cache_file(dest)
        try:
            os.replace(part, dest)
        except OSError as e:
            raise _write_error(dest, e) from None
        _unlink(state_path(part))
        fsync_dir(dest.parent)
        return
    raise Failed(f"gave up after {_MAX_TRIES_PER_URL} tries")


class _Lock:
    """Advisory exclusive lock on ``<file>.lock`` so two processes do not write one .part (POSIX only);
    waiting for it counts against the deadline."""

    def __init__(self, path: pathlib.Path, budget: _Budget):
        self.path, self.budget = path, budget
        self.fd: int | None = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.fd = _open_cache_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if self.budget.end is not None else 0))
                    return self
                except BlockingIOError:
                    if time.monotonic() >= self.budget.end:
                        raise DarknetError(f"another process held this lock for the whole deadline of "
                                           f"{self.budget.deadline:g} s (downloading the same file?)",
                                           self.path) from None
                    time.sleep(0.05)
                except OSError as e:
                    raise DarknetError(f"cannot lock: {e.strerror or e}", self.path) from None
        except BaseException:
            os.close(self.fd)
            self.fd = None
            raise

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock; the lock file stays (deleting it would race)


def fetch(urls: Iterable[str], dest: str | os.PathLike, *, verify: Callable[[pathlib.Path], None],
          sizes: Sequence[int] = (), needed_by: str = "the caller", progress: bool = True,
          timeout: float = 30.0, deadline: float | None = None, min_rate: float | None = None,
          rate_window: float | None = None) -> pathlib.Path:
    """Download ``dest`` from the first of ``urls`` that serves a file passing ``verify`` (which raises
    DarknetError on a bad file); ``sizes``, when given, are the only sizes the file may have (a longer body
    is cut off at the largest; ``needed_by`` names who needs them, in the message). Returns ``dest``.

    Limits: ``timeout`` seconds per socket read; ``deadline`` seconds for the whole fetch; ``min_rate``
    bytes/s averaged over ``rate_window`` seconds (see ``download_limits`` for their environment variables
    and defaults). A ``dest`` already there that passes ``verify`` is returned at once (also after waiting
    for another process's download). Raises FetchError when no URL succeeds, DarknetError when the cache
    cannot be written or holds a link or a non-regular file where one of its files goes."""
    dest = pathlib.Path(dest)
    urls = list(dict.fromkeys(urls))
    budget = _Budget(timeout, *download_limits(deadline, min_rate, rate_window))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cache_dir_error(dest.parent, e) from None
    failures: list[tuple[str, str]] = []
    part = part_path(dest)
    with _Lock(dest.with_name(dest.name + ".lock"), budget):
        if check_cache_file(dest) is not None:  # another process may have finished it while we waited
            try:
                verify(dest)
                return dest
            except DarknetError:
                pass
        for i, url in enumerate(urls):
            try:
                _fetch_url(url, dest, verify, sizes, needed_by, progress=progress, budget=budget)
            except Failed as e:
                failures.append((url, e.problem))
                if e.abort:
                    raise FetchError(dest.name, failures, untried=len(urls) - i - 1,
                                     kept=_part_size(part)) from None
                continue
            if failures:
                warnings.warn(DarknetWarning(f"fetched {dest.name} from {short_url(url, dest.name)} after: "
                                             + FetchError(dest.name, failures).summary()), stacklevel=2)
            return dest
        raise FetchError(dest.name, failures, kept=_part_size(part))
