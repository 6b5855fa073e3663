"""Zoo registry and verified downloads: every cfg has an entry whose metadata is true; downloads resume,
survive servers that ignore Range, reject HTML / wrong sizes / bad checksums by URL, try mirrors first, and
fail with one message that says where the file must go. A local HTTP server on 127.0.0.1 only."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ZOO_CFG
from localhttp import LocalServer, Quiet
from pydarknet import zoo
from pydarknet.errors import DarknetError, DarknetWarning
from pydarknet.specs import load_specs
from pydarknet.weights import Header, weights_bytes
from pydarknet.zoo import Published, ZooEntry

# ---------------------------------------------------------------------------------------------------------
# registry


def test_every_cfg_has_an_entry():
    cfgs = sorted(p.name for p in ZOO_CFG.glob("*.cfg"))
    assert sorted(zoo.get(n).cfg for n in zoo.list_models()) == cfgs
    assert len(set(zoo.list_models())) == len(zoo.list_models())
    for name in zoo.list_models():
        e = zoo.get(name)
        assert e.name == name and e.cfg == f"{name}.cfg" and os.path.isfile(e.cfg_path)
        if e.converter:  # made from another framework's model: its own weights file, labels and preprocessing
            assert e.weights_file.startswith(name) and e.preprocess == "center_crop"
            assert e.labels == "imagenet1k-sorted"
            continue
        assert e.weights_file == f"{name}.weights" and e.preprocess == "letterbox"
        assert e.labels == ("fashion" if e.bundled else "imagenet1k")


def test_computed_sizes_and_ops_are_consistent():
    for name in zoo.list_models():
        e = zoo.get(name)
        spec = load_specs(e.cfg_path)
        assert e.spec is e.spec  # cached
        assert e.bflops == pytest.approx(spec.bflops)
        assert e.size_bytes == spec.weights_bytes
        assert e.size_mib == pytest.approx(spec.weights_bytes / 2 ** 20)
        assert e.valid_sizes == (e.size_bytes, e.size_bytes - 4)  # 0.2.0 header, or an old 16-byte one
        p = e.published
        assert p.top1 is not None and 50 < p.top1 < 100
        assert (p.top5 is None) == bool(e.converter)  # TensorFlow published no top-5 for EfficientNet-Lite
        assert p.top5 is None or p.top1 < p.top5 < 100
        # a published figure our cfg does not reproduce (beyond the page's rounding) carries a note saying why
        if abs(p.bflops - e.bflops) > 0.051 * max(1.0, p.bflops / 10):
            assert p.note, f"{name}: published {p.bflops} Bn vs cfg {e.bflops:.2f} Bn needs a note"
        if abs(p.size_mb - e.size_mib) > 0.6:
            assert p.note, f"{name}: published {p.size_mb} MB vs {e.size_mib:.2f} MiB needs a note"


def test_published_figures_from_the_pages():
    want = {"alexnet": (57.0, 80.3, 2.27, 238), "darknet": (61.1, 83.0, 0.81, 28), "vgg-16": (70.5, 90.0, 30.94, 528),
            "extraction": (72.5, 90.8, 8.52, 90), "darknet19": (72.9, 91.2, 5.58, 80),
            "darknet19_448": (76.4, 93.5, 22.33, 80), "resnet50": (75.8, 92.9, 10, 87),
            "resnet152": (77.6, 93.8, 29.4, 220), "densenet201": (77.0, 93.7, 10.9, 66),
            "squeezenet": (57.5, 80.3, 2.17, 4.8), "tiny": (58.7, 81.7, 0.98, 4.0)}
    for name, figures in want.items():
        p = zoo.get(name).published
        assert (p.top1, p.top5, p.bflops, p.size_mb) == figures
    assert "0.77" in zoo.get("darknet").published.note and "0.96" in zoo.get("darknet").published.note
    assert "1.67" in zoo.get("squeezenet").published.note
    assert "224x224" in zoo.get("darknet19").published.note
    assert "285" in zoo.get("alexnet").published.note


def test_urls_and_checksums():
    for name in zoo.list_models():
        e = zoo.get(name)
        if name == "squeezenet" or e.bundled or e.converter:
            assert e.urls == ()  # no darknet weights: none published, shipped in the package, or converted
            assert not e.bundled or e.sha256  # ours: its checksum is known
            continue
        assert e.urls == (f"https://data.pjreddie.com/files/{name}.weights",
                          f"https://pjreddie.com/media/files/{name}.weights")
        assert (e.sha256 is None) == (e.sha256_source is None)
        if e.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256)


def test_unknown_name_lists_known_ones():
    with pytest.raises(DarknetError) as ei:
        zoo.get("resnet9000")
    assert "resnet9000" in str(ei.value) and "tiny" in str(ei.value) and "darknet53" in str(ei.value)


def test_entry_validation():
    with pytest.raises(ValueError):
        ZooEntry(name="x", title="X", cfg="tiny.cfg", weights_file="x.weights", urls=(), sha256="abc",
                 sha256_source="somewhere", published=Published(None, None, None, None))
    with pytest.raises(ValueError):
        ZooEntry(name="x", title="X", cfg="tiny.cfg", weights_file="x.weights", urls=(), sha256="0" * 64,
                 sha256_source=None, published=Published(None, None, None, None))


# ---------------------------------------------------------------------------------------------------------
# cache location and mirrors


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYDARKNET_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert zoo.cache_dir() == tmp_path / "home" / ".cache" / "pydarknet"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == tmp_path / "xdg" / "pydarknet"
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "mine"))
    assert zoo.cache_dir() == tmp_path / "mine"
    assert zoo.cached_path(zoo.get("tiny")) == tmp_path / "mine" / "tiny.weights"
    assert not (tmp_path / "mine").exists()  # asking does not create it


def test_mirrors_from_env(monkeypatch):
    monkeypatch.delenv("PYDARKNET_MIRROR", raising=False)
    assert zoo.mirrors_from_env() == []
    monkeypatch.setenv("PYDARKNET_MIRROR", " http://a/x, http://b/y\n  http://c ,,")
    assert zoo.mirrors_from_env() == ["http://a/x", "http://b/y", "http://c"]


# ---------------------------------------------------------------------------------------------------------
# a fake model and a local server

FAKE_CFG = """[net]
width=8
height=8
channels=3
[convolutional]
batch_normalize=1
filters=16
size=3
pad=1
activation=leaky
[convolutional]
filters=10
size=1
activation=linear
[avgpool]
[softmax]
"""


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    """A tiny cfg, genuine weights bytes for it, an entry pointing at a local server, and an empty cache."""
    cfg = tmp_path / "fake.cfg"
    cfg.write_text(FAKE_CFG)
    spec = load_specs(cfg)
    rng = np.random.default_rng(0)
    params = {s.index: {n: rng.standard_normal(shape).astype(np.float32) for n, shape in s.layout()}
              for s in spec.layers if s.layout()}
    data = weights_bytes(spec, params, Header(0, 2, 0, 123))
    assert len(data) == spec.weights_bytes
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PYDARKNET_MIRROR", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")
    server = Server()
    server.routes["/orig/fake.weights"] = Route(data)
    entry = ZooEntry(name="fake", title="Fake Net", cfg=str(cfg), weights_file="fake.weights",
                     urls=(server.url("/orig/fake.weights"),), sha256=None, sha256_source=None,
                     published=Published(None, None, None, None))
    yield entry, data, server
    server.close()


class Route:
    def __init__(self, body: bytes, *, ctype: str = "application/octet-stream", ranges: bool = True,
                 status: int = 200, length: bool = True, drop_after: int | None = None,
                 location: str | None = None, etag: str | None = None):
        self.body, self.ctype, self.ranges, self.status, self.length = body, ctype, ranges, status, length
        self.etag = etag              # sent as ETag; an If-Range that does not match it gets the whole file
        self.drop_after = drop_after  # send only this many bytes of the next response, then hang up
        self.location = location      # answer with a 302 to here


class Server(LocalServer):
    """http.server in a thread on 127.0.0.1; records (path, Range header, bytes sent) per request."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None, int]] = []
        outer = self

        class Handler(Quiet):
            def do_GET(self):
                # each request is logged before any byte of its answer goes out, so the log's order is the
                # order the client made its requests in, even with one handler thread per request
                route = outer.routes.get(self.path)
                rng = self.headers.get("Range")
                if route is not None and route.location:
                    outer.log.append((self.path, rng, 0))
                    self.send_response(302)
                    self.send_header("Location", route.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route is None or route.status != 200:
                    outer.log.append((self.path, rng, 0))
                    self.send_error(route.status if route else 404)
                    return
                body, status = route.body, 200
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
                if_range = self.headers.get("If-Range")
                if route.ranges and m and (if_range is None or if_range == route.etag):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), len(body) - 1) if m.group(2) else len(body) - 1
                    if start >= len(body):
                        outer.log.append((self.path, rng, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                    part = body[start:end + 1]
                else:
                    part = body
                full = len(part)
                if route.drop_after is not None:
                    part, route.drop_after = part[:route.drop_after], None
                    self.close_connection = True
                outer.log.append((self.path, rng, len(part)))
                self.send_response(status)
                self.send_header("Content-Type", route.ctype)
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.length:
                    self.send_header("Content-Length", str(full))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                self.end_headers()
                self.wfile.write(part)

        self.start(Handler)

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.log]



def leftovers(entry) -> list[str]:
    """Files in the cache other than the lock file."""
    d = zoo.cache_dir()
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock")) if d.exists() else []


# ---------------------------------------------------------------------------------------------------------
# downloads


def test_download_success_then_cached(fake):
    entry, data, server = fake
    assert not zoo.is_cached(entry)
    path = zoo.fetch_weights(entry, progress=False)
    assert path == zoo.cached_path(entry) and path.read_bytes() == data
    assert leftovers(entry) == ["fake.weights", "fake.weights.json"]  # the weights and their facts
    assert zoo.is_cached(entry)
    zoo.verify_weights(entry, path)
    n = len(server.log)
    assert zoo.fetch_weights(entry, progress=False) == path  # cached: no request
    assert zoo.fetch_weights(entry, offline=True) == path
    assert len(server.log) == n


def test_progress_bar(fake, capsys):
    entry, data, _ = fake
    zoo.fetch_weights(entry, progress=True)
    assert "fake.weights" in capsys.readouterr().err


def test_resume_sends_range_and_only_the_rest(fake):
    entry, data, server = fake
    zoo.cache_dir().mkdir(parents=True)
    k = len(data) // 3
    (zoo.cache_dir() / "fake.weights.part").write_bytes(data[:k])
    path = zoo.fetch_weights(entry, progress=False)
    assert path.read_bytes() == data
    # no record of where the .part came from: its first bytes are fetched again and compared, then the rest
    assert server.log == [("/orig/fake.weights", f"bytes=0-{k - 1}", k),
                          ("/orig/fake.weights", f"bytes={k}-", len(data) - k)]
    assert leftovers(entry) == ["fake.weights", "fake.weights.json"]  # the weights and their facts


def test_dropped_connection_resumes(fake):
    entry, data, server = fake
    server.routes["/orig/fake.weights"].drop_after = 1000
    path = zoo.fetch_weights(entry, progress=False)
    assert path.read_bytes() == data
    # no validator from this server: the first 1000 bytes are checked again before the rest is appended
    assert server.log == [("/orig/fake.weights", None, 1000),
                          ("/orig/fake.weights", "bytes=0-999", 1000),
                          ("/orig/fake.weights", "bytes=1000-", len(data) - 1000)]


def test_redirect_to_an_html_page(fake):
    entry, data, server = fake
    server.routes["/home"] = Route(b"<!DOCTYPE html><html></html>", ctype="text/html")
    server.routes["/orig/fake.weights"] = Route(b"", location=server.url("/home"))
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(entry, progress=False)
    assert f"tried 1 URL: {server.url('/orig')[7:]} (serves an HTML page" in str(ei.value)
    assert f"redirected to {server.url('/home')}" in str(ei.value)
    assert leftovers(entry) == []


def test_server_ignoring_range_restarts(fake):
    entry, data, server = fake
    server.routes["/orig/fake.weights"].ranges = False
    zoo.cache_dir().mkdir(parents=True)
    (zoo.cache_dir() / "fake.weights.part").write_bytes(b"\xff" * 100)  # not even a prefix of the file
    path = zoo.fetch_weights(entry, progress=False)
    assert path.read_bytes() == data
    assert server.log == [("/orig/fake.weights", "bytes=0-99", len(data))]  # the check's 200 is the download


def test_resumed_prefix_of_another_file_restarts_from_zero(fake):
    entry, data, server = fake
    zoo.cache_dir().mkdir(parents=True)
    k = len(data) // 2
    (zoo.cache_dir() / "fake.weights.part").write_bytes(b"\x00" * 8 + b"\xff" * (k - 8))  # bad 'prefix'
    path = zoo.fetch_weights(entry, progress=False)
    assert path.read_bytes() == data  # sizes matched but the header did not: verified, dropped, refetched
    assert [r for _, r, _ in server.log] == [f"bytes=0-{k - 1}", None]  # first bytes differ: never spliced


def test_part_longer_than_file_restarts(fake):
    entry, data, server = fake
    zoo.cache_dir().mkdir(parents=True)
    (zoo.cache_dir() / "fake.weights.part").write_bytes(data + b"extra")
    assert zoo.fetch_weights(entry, progress=False).read_bytes() == data
    assert [r for _, r, _ in server.log] == [f"bytes=0-{len(data) + 4}", None]


def test_wrong_size_names_url_and_cleans_up(fake):
    entry, data, server = fake
    server.routes["/orig/fake.weights"] = Route(data + b"\0" * 8)
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(entry, progress=False)
    msg = str(ei.value)
    assert server.url("/orig/fake.weights") in msg and f"offers {len(data) + 8} bytes" in msg
    assert leftovers(entry) == []
    assert not zoo.is_cached(entry)


def test_wrong_size_without_content_length_caught_after_download(fake):
    entry, data, server = fake

    # a plausible header but 4 bytes short, sent without Content-Length: caught by the check after download
    server.routes["/orig/fake.weights"] = Route(data[:-4], length=False)
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(entry, progress=False)
    msg = str(ei.value)
    assert server.url("/orig/fake.weights") in msg and f"holds {len(data) - 4} bytes" in msg
    assert leftovers(entry) == []


def test_html_instead_of_weights(fake):
    entry, data, server = fake
    page = b"<!DOCTYPE html><html><head><title>Joseph Redmon</title></head></html>"
    server.routes["/orig/fake.weights"] = Route(page, ctype="text/html; charset=utf-8")
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(entry, progress=False)
    assert server.url("/orig/fake.weights") in str(ei.value) and "HTML" in str(ei.value)
    assert leftovers(entry) == []
    # the same page labelled as a binary is caught by its first byte
    server.routes["/orig/fake.weights"] = Route(b"\n  " + page)
    with pytest.raises(DarknetError, match="HTML"):
        zoo.fetch_weights(entry, progress=False)
    assert leftovers(entry) == []


def test_bad_sha256(fake):
    entry, data, server = fake
    bad = dataclasses.replace(entry, sha256="0" * 64, sha256_source="test")
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(bad, progress=False)
    assert "sha256" in str(ei.value) and server.url("/orig/fake.weights") in str(ei.value)
    assert leftovers(entry) == []
    good = dataclasses.replace(entry, sha256=hashlib.sha256(data).hexdigest(), sha256_source="test")
    assert zoo.fetch_weights(good, progress=False).read_bytes() == data


def test_mirror_tried_before_the_original(fake, monkeypatch):
    entry, data, server = fake
    server.routes["/mirror/fake.weights"] = Route(data)
    path = zoo.fetch_weights(entry, mirrors=[server.url("/mirror")], progress=False)
    assert path.read_bytes() == data
    assert server.paths() == ["/mirror/fake.weights"]


def test_env_mirror_and_fallback_order(fake, monkeypatch):
    entry, data, server = fake
    monkeypatch.setenv("PYDARKNET_MIRROR", f"{server.url('/env')}/ {server.url('/env2')}")
    server.routes["/arg/fake.weights"] = Route(b"", status=404)
    with pytest.warns(DarknetWarning, match="404"):
        path = zoo.fetch_weights(entry, mirrors=[server.url("/arg")], progress=False)
    assert path.read_bytes() == data
    # argument mirror, then the env mirrors (both missing here), then the published URL (first tries, in order;
    # a loaded machine may make the client retry one)
    assert list(dict.fromkeys(server.paths())) == ["/arg/fake.weights", "/env/fake.weights", "/env2/fake.weights", "/orig/fake.weights"]


def test_local_directory_mirror(fake, tmp_path):
    entry, data, server = fake
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "fake.weights").write_bytes(data)
    assert zoo.fetch_weights(entry, mirrors=[str(tmp_path / "dir")], progress=False).read_bytes() == data
    assert server.log == []


def test_offline_with_nothing_cached(fake):
    entry, data, server = fake
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(entry, offline=True, mirrors=["http://127.0.0.1:9/m"])
    msg = str(ei.value)
    path = str(zoo.cached_path(entry))
    assert ei.value.path == path and msg.startswith(path + ": ")
    assert "fake.weights" in msg and "offline" in msg
    assert server.url("/orig/fake.weights") in msg and "PYDARKNET_MIRROR" in msg and "--mirror" in msg
    assert "\n" not in msg
    assert server.log == [] and not zoo.cache_dir().exists()


def test_all_urls_fail_one_error(fake):
    entry, data, server = fake
    server.routes["/orig/fake.weights"] = Route(b"", status=404)
    server.routes["/m/fake.weights"] = Route(b"<html>nope</html>", ctype="text/html")
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights(entry, mirrors=[server.url("/m")], progress=False)
    msg = str(ei.value)
    assert msg.startswith(str(zoo.cached_path(entry)) + ": ")
    # one line, each URL tried compactly (no scheme, no repeated file name) with its problem
    assert "\n" not in msg
    assert (f"could not download it (tried 2 URLs: {server.url('/m')[7:]} (serves an HTML page (text/html), not "
            f"the file), {server.url('/orig')[7:]} (HTTP 404 Not Found))") in msg
    assert "PYDARKNET_MIRROR" in msg and leftovers(entry) == []


def test_no_published_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PYDARKNET_MIRROR", raising=False)
    with pytest.raises(DarknetError) as ei:
        zoo.fetch_weights("squeezenet", progress=False)
    assert "no SqueezeNet weights" in str(ei.value) and str(tmp_path / "cache" / "squeezenet.weights") in str(ei.value)


def test_invalid_cached_file_is_replaced(fake):
    entry, data, server = fake
    zoo.cache_dir().mkdir(parents=True)
    zoo.cached_path(entry).write_bytes(data[:50])
    assert not zoo.is_cached(entry)
    with pytest.raises(DarknetError, match="not valid"):
        zoo.fetch_weights(entry, offline=True)
    assert zoo.fetch_weights(entry, progress=False).read_bytes() == data


def test_is_cached_and_verify(fake):
    entry, data, _ = fake
    final = zoo.cached_path(entry)
    assert not zoo.is_cached(entry)
    final.parent.mkdir(parents=True)
    final.write_bytes(data[:-4])
    assert not zoo.is_cached(entry)
    with pytest.raises(DarknetError, match="needs"):
        zoo.verify_weights(entry, final)
    final.write_bytes(data)
    assert zoo.is_cached(entry)
    # an old-format file (16-byte header, 32-bit seen) is 4 bytes shorter and just as valid
    final.write_bytes(Header(0, 1, 0, 7).pack() + data[20:])
    assert len(final.read_bytes()) == entry.valid_sizes[1] and zoo.is_cached(entry)
    zoo.verify_weights(entry, final)
    # text where the header should be
    final.write_bytes(b"this is not a darknet file at all!!" + b"\0" * (len(data) - 35))
    assert not zoo.is_cached(entry)
    with pytest.raises(DarknetError, match="header"):
        zoo.verify_weights(entry, final)


# ---------------------------------------------------------------------------------------------------------
# the table


def test_zoo_table(monkeypatch, tmp_path):
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path))
    tiny = zoo.get("tiny")
    (tmp_path / "tiny.weights").write_bytes(Header(0, 2, 0).pack() + b"\0" * (tiny.size_bytes - 20))
    text = zoo.zoo_table()
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["name", "title"]
    rows = {ln.split()[0]: ln for ln in lines[2:2 + len(zoo.list_models())]}
    assert list(rows) == zoo.list_models()
    for name in zoo.list_models():
        e = zoo.get(name)
        assert e.title in rows[name] and f"{e.size_mib:.2f} MiB" in rows[name] and f"{e.bflops:.2f} Bn" in rows[name]
    assert re.search(r"\byes\b", rows["tiny"]) and re.search(r"\bno\b", rows["alexnet"])
    assert "0.81 Bn" in rows["darknet"] and "0.96 Bn" in rows["darknet"]
    assert "Notes:" in text
    for name in zoo.list_models():
        if zoo.get(name).published.note:
            assert f"] {name}: {zoo.get(name).published.note}" in text
    widths = {len(ln) for ln in lines[:2]}
    assert len(widths) == 1  # header and rule aligned
