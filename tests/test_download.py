"""Hardened downloads (issue 10, item 7) against a hostile HTTP server on 127.0.0.1: bodies that never end or
announce too much, servers that trickle or stall, dropped connections, servers that ignore Range or changed
the file, links planted in the cache, a cache that cannot be written, mirror files that are not regular
files, and the overall deadline. Every limit is made small through fetch's arguments, so each test takes a
few seconds at most; each asserts the bytes that end up in the cache and the message."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import threading
import time
from pathlib import Path

import pytest

from localhttp import LocalServer, Quiet
from pydarknet import download, zoo
from pydarknet.download import FetchError, fetch, part_path, state_path
from pydarknet.errors import DarknetError, DarknetWarning

PAYLOAD = b"DKNT" + random.Random(0).randbytes(200_000 - 4)
OTHER = b"DKNT" + random.Random(1).randbytes(200_000 - 4)  # the same size: a changed file on the server
SIZES = (len(PAYLOAD), len(PAYLOAD) - 4)


def verify_payload(path: Path) -> None:
    data = Path(path).read_bytes()
    if hashlib.sha256(data).digest() != hashlib.sha256(PAYLOAD).digest():
        raise DarknetError(f"not the file ({len(data)} bytes)", path)


def verify_other(path: Path) -> None:
    if Path(path).read_bytes() != OTHER:
        raise DarknetError("not the new file", path)


class Hostile(LocalServer):
    """http.server in daemon threads on 127.0.0.1; ``routes`` maps a path to ``fn(handler, server)``; ``log``
    holds (path, Range, If-Range) per request; ``stop`` ends every slow handler at shutdown."""

    def __init__(self):
        self.routes: dict = {}
        self.log: list[tuple[str, str | None, str | None]] = []
        self.stop = threading.Event()
        outer = self

        class Handler(Quiet):
            def do_GET(self):
                outer.log.append((self.path, self.headers.get("Range"), self.headers.get("If-Range")))
                fn = outer.routes.get(self.path)
                try:
                    if fn is None:
                        self.send_error(404)
                    else:
                        fn(self, outer)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.start(Handler)

    def close(self):
        self.stop.set()
        super().close()


def serve(h, body: bytes, *, etag: str | None = None, ranges: bool = True, length: bool = True,
          drop_after: int | None = None):
    """A well-behaved answer (Range with If-Range, as RFC 9110 has it), optionally cut short."""
    rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
    if_range = h.headers.get("If-Range")
    status, start, end = 200, 0, len(body) - 1
    if ranges and rng and (if_range is None or if_range == etag):
        start = int(rng.group(1))
        end = min(int(rng.group(2)), end) if rng.group(2) else end
        status = 206
    part = body[start:end + 1]
    h.send_response(status)
    h.send_header("Content-Type", "application/octet-stream")
    if etag:
        h.send_header("ETag", etag)
    if length:
        h.send_header("Content-Length", str(len(part)))
    if status == 206:
        h.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
    h.end_headers()
    h.wfile.write(part if drop_after is None else part[:drop_after])
    h.wfile.flush()


@pytest.fixture()
def srv(monkeypatch):
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    for var in ("PYDARKNET_DOWNLOAD_DEADLINE", "PYDARKNET_DOWNLOAD_MIN_RATE", "PYDARKNET_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    server = Hostile()
    yield server
    server.close()


@pytest.fixture()
def cache(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    return d


def within(seconds: float, fn, *args, **kwargs):
    """fn's result or exception, failing the test if it takes longer than ``seconds`` (a hang)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    out["elapsed"] = time.monotonic() - t0
    return out


def get(urls, dest, verify=verify_payload, **kw):
    kw.setdefault("timeout", 5.0)
    return fetch(urls, dest, verify=verify, sizes=SIZES, needed_by="test.cfg", progress=False, **kw)


def failure(seconds, urls, dest, **kw) -> FetchError:
    out = within(seconds, get, urls, dest, **kw)
    assert isinstance(out.get("error"), FetchError), out
    msg = str(out["error"])
    assert "\n" not in msg
    return out["error"]


def record(dest: Path, url: str, validator: str | None) -> None:
    state_path(part_path(dest)).write_text(json.dumps({"url": url, "validator": validator}))


# ---------------------------------------------------------------------------------------------------------
# bounded bodies


def test_endless_body_without_content_length_stops_at_largest_size(srv, cache):
    sent = []

    def endless(h, s):
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        n = 0
        while not s.stop.is_set():
            h.wfile.write(b"\x01" * 65536)
            n += 65536
            sent.append(n)

    srv.routes["/f"] = endless
    dest = cache / "f.bin"
    e = failure(5, [srv.url("/f")], dest)
    assert e.failures == [(srv.url("/f"), f"sent more than {max(SIZES)} bytes, the largest size test.cfg allows")]
    assert not dest.exists() and not part_path(dest).exists()  # its content was wrong: no .part is kept
    assert not state_path(part_path(dest)).exists()


def test_exact_body_without_content_length_is_fine(srv, cache):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD, length=False)
    dest = cache / "f.bin"
    assert get([srv.url("/f")], dest) == dest and dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["f.bin", "f.bin.lock"]


def test_oversize_content_length_refused_before_reading(srv, cache):
    def huge(h, s):
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(10 ** 12))
        h.end_headers()
        while not s.stop.is_set():
            h.wfile.write(b"\x01" * 65536)

    srv.routes["/f"] = huge
    dest = cache / "f.bin"
    e = failure(5, [srv.url("/f")], dest)
    assert e.failures == [(srv.url("/f"), f"offers {10 ** 12} bytes but test.cfg needs {SIZES[0]} or {SIZES[1]}")]
    assert not part_path(dest).exists() and not state_path(part_path(dest)).exists()  # nothing was written


# ---------------------------------------------------------------------------------------------------------
# slow, stalled and dropped connections


def trickle(h, s, every=0.05, step=100):
    h.send_response(200)
    h.send_header("Content-Type", "application/octet-stream")
    h.send_header("Content-Length", str(len(PAYLOAD)))
    h.end_headers()
    for i in range(0, len(PAYLOAD), step):
        if s.stop.wait(every):
            return
        h.wfile.write(PAYLOAD[i:i + step])
        h.wfile.flush()


def test_trickling_server_is_dropped_below_the_minimum_rate(srv, cache):
    srv.routes["/f"] = trickle  # about 2 kB/s
    dest = cache / "f.bin"
    e = failure(5, [srv.url("/f")], dest, min_rate=50_000, rate_window=0.5, deadline=30)
    (url, problem), = e.failures
    assert re.fullmatch(r"too slow: \d+ B/s over 0\.\d+ s, under the minimum 50000 B/s", problem), problem
    assert len(srv.log) == 1  # a slow server is not retried at once
    # a network failure: the .part is a good prefix and is kept, with the record of where it came from
    got = part_path(dest).read_bytes()
    assert 0 < len(got) < len(PAYLOAD) and PAYLOAD.startswith(got)
    assert json.loads(state_path(part_path(dest)).read_text()) == {"url": srv.url("/f"), "validator": None}
    assert f"the partial download ({len(got)} bytes) is kept to resume" in str(e)


def test_stalled_server_times_out_and_keeps_the_part(srv, cache):
    def stall(h, s):
        h.send_response(206)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Range", f"bytes 1000-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        h.end_headers()
        s.stop.wait(10)  # not one byte

    srv.routes["/f"] = stall
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:1000])
    record(dest, srv.url("/f"), '"v1"')
    e = failure(5, [srv.url("/f")], dest, timeout=0.5)
    assert e.failures == [(srv.url("/f"), "timed out, no data for 0.5 s after 1000 of 200000 bytes")]
    assert srv.log == [("/f", "bytes=1000-", '"v1"')]
    assert part_path(dest).read_bytes() == PAYLOAD[:1000]  # kept, untouched


def test_dropped_connection_resumes_with_if_range(srv, cache):
    calls = []

    def flaky(h, s):
        calls.append(1)
        serve(h, PAYLOAD, etag='"v1"', drop_after=50_000 if len(calls) == 1 else None)

    srv.routes["/f"] = flaky
    dest = cache / "f.bin"
    assert get([srv.url("/f")], dest).read_bytes() == PAYLOAD
    assert srv.log == [("/f", None, None), ("/f", "bytes=50000-", '"v1"')]  # 206: only the rest
    assert sorted(p.name for p in cache.iterdir()) == ["f.bin", "f.bin.lock"]  # .part and its record gone


def test_resume_in_a_later_run_uses_the_record(srv, cache):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD, etag='"v1"')
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:70_000])
    record(dest, srv.url("/f"), '"v1"')
    assert get([srv.url("/f")], dest).read_bytes() == PAYLOAD
    assert srv.log == [("/f", "bytes=70000-", '"v1"')]


def test_server_ignoring_range_restarts_from_zero(srv, cache):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD, etag='"v1"', ranges=False)
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:70_000])
    record(dest, srv.url("/f"), '"v1"')
    assert get([srv.url("/f")], dest).read_bytes() == PAYLOAD
    assert srv.log == [("/f", "bytes=70000-", '"v1"')]  # one request: its 200 was written from zero, not appended


def test_changed_file_on_the_server_is_never_spliced(srv, cache):
    srv.routes["/f"] = lambda h, s: serve(h, OTHER, etag='"v2"')  # the file changed since the .part began
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:70_000])
    record(dest, srv.url("/f"), '"v1"')
    assert get([srv.url("/f")], dest, verify=verify_other).read_bytes() == OTHER
    assert srv.log == [("/f", "bytes=70000-", '"v1"')]  # If-Range did not match: a 200, written from zero


def test_part_without_a_validator_is_checked_by_its_first_bytes(srv, cache):
    srv.routes["/f"] = lambda h, s: serve(h, OTHER)  # no ETag, no Last-Modified
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:70_000])  # a prefix of another file of the same size
    assert get([srv.url("/f")], dest, verify=verify_other).read_bytes() == OTHER
    assert srv.log == [("/f", "bytes=0-65535", None), ("/f", None, None)]  # mismatch: discarded, from zero


def test_part_from_another_mirror_resumes_only_after_the_check(srv, cache):
    srv.routes["/b/f.bin"] = lambda h, s: serve(h, PAYLOAD, etag='"b1"')
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:70_000])
    record(dest, srv.url("/a/f.bin"), '"a1"')  # started on another mirror: its validator means nothing here
    assert get([srv.url("/b/f.bin")], dest).read_bytes() == PAYLOAD
    assert srv.log == [("/b/f.bin", "bytes=0-65535", None), ("/b/f.bin", "bytes=70000-", '"b1"')]


def test_complete_part_is_verified_without_downloading_again(srv, cache):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD, etag='"v1"')
    dest = cache / "f.bin"
    part_path(dest).write_bytes(PAYLOAD)
    record(dest, srv.url("/f"), '"v1"')

    def answer_416(h, s):
        h.send_response(416)
        h.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
        h.send_header("Content-Length", "0")
        h.end_headers()

    srv.routes["/f"] = answer_416
    assert get([srv.url("/f")], dest).read_bytes() == PAYLOAD
    assert srv.log == [("/f", f"bytes={len(PAYLOAD)}-", '"v1"')]


def test_network_failure_keeps_the_part_but_bad_content_drops_it(srv, cache):
    dest = cache / "f.bin"
    srv.routes["/404/f.bin"] = lambda h, s: h.send_error(404)
    srv.routes["/html/f.bin"] = lambda h, s: serve(h, b"<html>" + b" " * 100)
    part_path(dest).write_bytes(PAYLOAD[:1000])
    record(dest, srv.url("/elsewhere/f.bin"), '"x"')
    e = failure(5, [srv.url("/404/f.bin"), srv.url("/html/f.bin")], dest)
    assert part_path(dest).read_bytes() == PAYLOAD[:1000]  # neither failure was about the .part's content
    assert [p for _, p in e.failures] == ["HTTP 404 Not Found", "serves an HTML page, not the file"]
    assert [(p, r) for p, r, _ in srv.log] == [("/404/f.bin", "bytes=0-999"), ("/html/f.bin", "bytes=0-999"),
                                              ("/html/f.bin", None)]  # checked, did not match, not appended
    assert json.loads(state_path(part_path(dest)).read_text())["url"] == srv.url("/elsewhere/f.bin")


# ---------------------------------------------------------------------------------------------------------
# the overall deadline and its settings


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_deadline_covers_the_whole_fetch(srv, cache, monkeypatch, how):
    srv.routes["/a/f.bin"] = lambda h, s: trickle(h, s, every=0.01, step=200)  # 20 kB/s: fast enough
    srv.routes["/b/f.bin"] = lambda h, s: serve(h, PAYLOAD)
    dest = cache / "f.bin"
    kw = {"min_rate": 1000, "rate_window": 0.2}
    if how == "argument":
        kw["deadline"] = 1.0
    else:
        monkeypatch.setenv("PYDARKNET_DOWNLOAD_DEADLINE", "1")
    e = failure(4, [srv.url("/a/f.bin"), srv.url("/b/f.bin")], dest, **kw)
    assert e.failures == [(srv.url("/a/f.bin"), "the deadline of 1 s for the whole download passed")]
    assert e.untried == 1 and "1 more not tried" in str(e)
    assert [p for p, _, _ in srv.log] == ["/a/f.bin"]
    got = part_path(dest).read_bytes()
    assert 0 < len(got) < len(PAYLOAD) and PAYLOAD.startswith(got)  # kept to resume


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.delenv("PYDARKNET_DOWNLOAD_DEADLINE", raising=False)
    monkeypatch.delenv("PYDARKNET_DOWNLOAD_MIN_RATE", raising=False)
    assert download.download_limits() == (download.DEFAULT_DEADLINE, download.DEFAULT_MIN_RATE,
                                           download.DEFAULT_RATE_WINDOW)
    monkeypatch.setenv("PYDARKNET_DOWNLOAD_DEADLINE", "90")
    monkeypatch.setenv("PYDARKNET_DOWNLOAD_MIN_RATE", "2048/10")
    assert download.download_limits() == (90.0, 2048.0, 10.0)
    assert download.download_limits(deadline=5, min_rate=0, rate_window=3) == (5.0, 0.0, 3.0)  # arguments win
    monkeypatch.setenv("PYDARKNET_DOWNLOAD_MIN_RATE", "fast")
    with pytest.raises(DarknetError, match=r"PYDARKNET_DOWNLOAD_MIN_RATE must be a number >= 0 .* not 'fast'"):
        download.download_limits()
    with pytest.raises(DarknetError, match="deadline must be a number"):
        download.download_limits(deadline=-1, min_rate=1)


def test_min_rate_from_the_environment_applies(srv, cache, monkeypatch):
    srv.routes["/f"] = trickle
    monkeypatch.setenv("PYDARKNET_DOWNLOAD_MIN_RATE", "50000/0.3")
    e = failure(4, [srv.url("/f")], cache / "f.bin")
    assert e.failures[0][1].startswith("too slow: ") and "under the minimum 50000 B/s" in e.failures[0][1]


def test_lock_held_by_another_process_ends_at_the_deadline(srv, cache):
    dest = cache / "f.bin"
    fd = os.open(cache / "f.bin.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        out = within(4, get, [srv.url("/f")], dest, deadline=0.3)
    finally:
        os.close(fd)
    assert isinstance(out["error"], DarknetError)
    assert str(out["error"]) == (f"{cache / 'f.bin.lock'}: another process held this lock for the whole "
                                 "deadline of 0.3 s (downloading the same file?)")
    assert srv.log == []


# ---------------------------------------------------------------------------------------------------------
# links and other things planted in the cache; a cache that cannot be written


@pytest.mark.parametrize("planted", ["f.bin.part", "f.bin", "f.bin.lock", "f.bin.part.json"])
def test_symlink_planted_in_the_cache_is_never_followed(srv, cache, tmp_path, planted):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD, etag='"v1"')
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = cache / "f.bin"
    if planted == "f.bin.part.json":
        part_path(dest).write_bytes(PAYLOAD[:1000])
    (cache / planted).symlink_to(victim)
    out = within(5, get, [srv.url("/f")], dest)
    assert isinstance(out.get("error"), DarknetError) and not isinstance(out["error"], FetchError), out
    assert str(out["error"]) == (f"{cache / planted}: is a symbolic link; pydarknet never follows links in its "
                                 "cache: remove it")
    assert victim.read_bytes() == b"precious" and (cache / planted).is_symlink()


@pytest.mark.parametrize("planted", ["f.bin.part", "f.bin.lock"])
@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_fifo_or_directory_as_the_part_or_lock_is_one_error(srv, cache, kind, planted):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD)
    dest = cache / "f.bin"
    os.mkfifo(cache / planted) if kind == "fifo" else (cache / planted).mkdir()
    out = within(5, get, [srv.url("/f")], dest)
    what = "a FIFO" if kind == "fifo" else "a directory"
    assert str(out["error"]) == f"{cache / planted}: is {what}, not a regular file: remove it"
    assert not dest.exists()


def test_cache_under_a_regular_file_is_one_clear_error(srv, tmp_path):
    (tmp_path / "afile").write_bytes(b"x")
    dest = tmp_path / "afile" / "cache" / "f.bin"
    out = within(5, get, [srv.url("/f")], dest)
    err = out["error"]
    assert isinstance(err, DarknetError) and err.path == str(tmp_path / "afile" / "cache")
    assert str(err) == (f"{tmp_path / 'afile' / 'cache'}: cannot write to the cache directory: Not a directory "
                        "(set PYDARKNET_CACHE to a writable directory)")
    assert srv.log == []


def test_read_only_cache_is_one_clear_error(srv, cache, unprivileged):
    srv.routes["/f"] = lambda h, s: serve(h, PAYLOAD)
    cache.chmod(0o555)
    try:
        with unprivileged():
            out = within(5, get, [srv.url("/f")], cache / "f.bin")
    finally:
        cache.chmod(0o755)
    assert str(out["error"]) == (f"{cache}: cannot write to the cache directory: Permission denied "
                                 "(set PYDARKNET_CACHE to a writable directory)")


def test_read_only_cache_via_zoo_with_a_file_as_cache(monkeypatch, tmp_path):
    (tmp_path / "afile").write_bytes(b"x")
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "afile"))
    monkeypatch.setenv("PYDARKNET_MIRROR", str(tmp_path))  # a local directory: no network needed
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights("tiny", progress=False)
    assert str(ei.value).startswith(f"{tmp_path / 'afile'}: cannot write to the cache directory: ")
    assert "PYDARKNET_CACHE" in str(ei.value) and "\n" not in str(ei.value)


# ---------------------------------------------------------------------------------------------------------
# mirror files and cached files that are not regular files


@pytest.mark.parametrize("kind", ["fifo", "dir", "devzero"])
def test_mirror_file_that_is_not_a_regular_file(srv, cache, tmp_path, kind):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    if kind == "fifo":
        os.mkfifo(mirror / "f.bin")
        url, what = (mirror / "f.bin").as_uri(), "a FIFO"
    elif kind == "dir":
        (mirror / "f.bin").mkdir()
        url, what = (mirror / "f.bin").as_uri(), "a directory"
    else:
        url, what = "file:///dev/zero", "a character device"
    srv.routes["/f.bin"] = lambda h, s: serve(h, PAYLOAD)
    dest = cache / "f.bin"
    with pytest.warns(DarknetWarning, match=re.escape(f"(is {what}, not a mirror file)")):
        out = within(5, get, [url, srv.url("/f.bin")], dest)  # refused at once, then the next URL
    assert out.get("value") == dest and dest.read_bytes() == PAYLOAD
    assert srv.log == [("/f.bin", None, None)]
    e = failure(5, [url], cache / "g.bin")
    assert e.failures == [(url, f"is {what}, not a mirror file")]


def test_local_mirror_copies_a_regular_file(cache, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "f.bin").write_bytes(PAYLOAD)
    (mirror / "big.bin").write_bytes(PAYLOAD + b"x")
    dest = cache / "f.bin"
    assert get([download.mirror_url(str(mirror), "f.bin")], dest).read_bytes() == PAYLOAD
    e = failure(5, [download.mirror_url(str(mirror), "big.bin")], cache / "big.bin")
    assert e.failures[0][1] == f"mirror file is {len(PAYLOAD) + 1:,} bytes, over the limit of {len(PAYLOAD):,}"


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink"])
def test_cached_zoo_file_that_is_not_a_regular_file(monkeypatch, tmp_path, kind):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PYDARKNET_CACHE", str(cache))
    monkeypatch.delenv("PYDARKNET_MIRROR", raising=False)
    final = cache / "tiny.weights"
    if kind == "fifo":
        os.mkfifo(final)
        what = "is a FIFO, not a regular file: remove it"
    elif kind == "dir":
        final.mkdir()
        what = "is a directory, not a regular file: remove it"
    else:
        (tmp_path / "elsewhere").write_bytes(b"\0" * 100)
        final.symlink_to(tmp_path / "elsewhere")
        what = "is a symbolic link; pydarknet never follows links in its cache: remove it"
    assert within(5, zoo.is_cached, "tiny")["value"] is False
    out = within(5, zoo.fetch_weights, "tiny", offline=True)
    assert str(out["error"]) == f"{final}: {what}"


# ---------------------------------------------------------------------------------------------------------
# the one-line message


def test_failed_fetch_is_one_compact_line(srv, monkeypatch, tmp_path):
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    srv.routes["/slow/tiny.weights"] = lambda h, s: s.stop.wait(10)  # not even a status line
    entry = zoo.ZooEntry(name="fake", title="Fake Net", cfg=zoo.get("tiny").cfg_path, weights_file="tiny.weights",
                         urls=(srv.url("/slow/tiny.weights"), srv.url("/gone/tiny.weights"),
                               "http://127.0.0.1:9/x/tiny.weights"), sha256=None, sha256_source=None)
    out = within(5, zoo.fetch_weights, entry, progress=False, timeout=0.5)
    final = tmp_path / "cache" / "tiny.weights"
    port = srv.httpd.server_address[1]
    assert str(out["error"]) == (
        f"{final}: tiny.weights: could not download it (tried 3 URLs: 127.0.0.1:{port}/slow (no answer within "
        f"0.5 s), 127.0.0.1:{port}/gone (HTTP 404 Not Found), 127.0.0.1:9/x (cannot connect: Connection refused)); "
        f"place the Fake Net weights at exactly this path (get it by hand from {' or '.join(entry.urls)}), or set "
        "PYDARKNET_MIRROR (or pass --mirror URL) to a server or directory that holds tiny.weights")
