"""Issue 10, images: every image read is bounded and refused in one line naming the file (special files, a
file-size cap, a pixel cap from the memory budget checked from the header, decompression bombs, truncated
files by stb's rules), the formats darknet's OpenCV build adds (WebP, TIFF, more PNM) decoded as it does
(checked against Debian's libdarknet, which is that build), bytes and uint8 tensors through the API, and the
uint8 preprocessing path bit-exact with the float path it replaced."""
from __future__ import annotations

import csv
import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from conftest import GOLDEN, REFERENCE_DATA, ZOO_CFG
from cdarknet import CDarknet, find_library
from peakrss import peak_growth
from pydarknet import budget
from pydarknet.augment import augment
from pydarknet.cli import main
from pydarknet.errors import DarknetError, DarknetWarning
from pydarknet.image import decode_rgb8, load_image, max_file_bytes, max_pixels
from pydarknet.preprocess import (center_crop_image, crop_image, letterbox_image, resize_image, resize_max,
                                  resize_min)
from pydarknet.validate import MODES

RNG = np.random.default_rng(10)
RGB = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
TINY = "[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n\n" \
       "[avgpool]\n\n[softmax]\n"


@pytest.fixture(autouse=True)
def default_budget():
    budget.set_max_memory(None)
    yield
    budget.set_max_memory(None)


def refused(source, *words, name=None):
    with pytest.raises(DarknetError) as e:
        decode_rgb8(source, name)
    msg = str(e.value)
    where = name or (source if isinstance(source, (str, Path)) else "<bytes>")
    assert msg.startswith(f"{where}: ") and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def photo_jpeg() -> bytes:
    """A real photo as JPEG: darknet's dog.jpg where Debian's darknet is installed, else matplotlib's."""
    p = REFERENCE_DATA / "dog.jpg"
    if p.is_file():
        return p.read_bytes()
    from matplotlib import cbook
    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


def photo_png() -> bytes:
    """A real photo as PNG (scikit-image's astronaut where installed, else the JPEG photo re-encoded)."""
    try:
        import skimage.data
        p = Path(skimage.data.__file__).parent / "astronaut.png"
        if p.is_file():
            return p.read_bytes()
    except ImportError:
        pass
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg())).save(buf, "PNG")
    return buf.getvalue()


def with_sof_size(jpeg: bytes, w: int, h: int) -> bytes:
    """The JPEG with its frame header declaring w x h (the data stays the small picture's)."""
    i = jpeg.index(b"\xff\xc0") if b"\xff\xc0" in jpeg else jpeg.index(b"\xff\xc2")
    return jpeg[: i + 5] + struct.pack(">HH", h, w) + jpeg[i + 9:]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int = 50_000, h: int = 50_000) -> bytes:
    """A PNG declaring w x h RGB, its IDAT a few KB of zlib-compressed zero rows."""
    rows = zlib.compress(b"\0" * (1 << 22), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def tiff(a: np.ndarray, photometric: int, *, extra: tuple = (), orientation: int | None = None,
         sample_format: int | None = None) -> bytes:
    """A minimal little-endian, uncompressed, one-strip TIFF of ``a`` ((H, W) or (H, W, S); uint8, uint16 or
    float32), to make the variants Pillow cannot write."""
    a = a if a.ndim == 3 else a[:, :, None]
    h, w, spp = a.shape
    data = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()
    bits = a.dtype.itemsize * 8
    entries = [(256, 4, [w]), (257, 4, [h]), (258, 3, [bits] * spp), (259, 3, [1]), (262, 3, [photometric]),
               (273, 4, [8]), (277, 3, [spp]), (278, 4, [h]), (279, 4, [len(data)]), (284, 3, [1])]
    if orientation is not None:
        entries.append((274, 3, [orientation]))
    if extra:
        entries.append((338, 3, list(extra)))
    if sample_format is not None:
        entries.append((339, 3, [sample_format] * spp))
    entries.sort()
    ifd_at = 8 + len(data) + (len(data) & 1)
    blob_at = ifd_at + 2 + 12 * len(entries) + 4
    ifd, blobs = struct.pack("<H", len(entries)), b""
    for tag, typ, values in entries:
        packed = struct.pack(f"<{len(values)}{'H' if typ == 3 else 'I'}", *values)
        if len(packed) <= 4:
            ifd += struct.pack("<HHI", tag, typ, len(values)) + packed.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, len(values), blob_at + len(blobs))
            blobs += packed
    return b"II*\0" + struct.pack("<I", ifd_at) + data + b"\0" * (len(data) & 1) + ifd + b"\0\0\0\0" + blobs


# -- special files, the size caps --------------------------------------------------------------------------


@pytest.mark.parametrize("special", ["fifo", "directory", "/dev/zero", "/dev/urandom"])
def test_special_files_are_one_error_at_once(tmp_path, special):
    path = {"fifo": tmp_path / "f.jpg", "directory": tmp_path / "d.png"}.get(special, special)
    if special == "fifo":
        os.mkfifo(path)
    elif special == "directory":
        path.mkdir()
    start = time.monotonic()
    msg = refused(path, "not an image file")
    assert time.monotonic() - start < 1
    assert any(w in msg for w in ("FIFO", "directory", "character device")), msg


def test_file_size_cap_from_the_budget(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.write(png_bomb(10, 10))
        f.truncate(max_file_bytes() + 1)  # sparse
    with peak_growth() as peak:
        refused(big, "bytes, over the limit of", "--max-memory")
    assert peak.kib < 20_000
    refused(b"", "empty file")


# -- the pixel cap, decompression bombs --------------------------------------------------------------------


def test_decompression_bomb_refused_from_the_header_fast_and_small(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    assert bomb.stat().st_size < 20_000
    start = time.monotonic()
    with peak_growth() as peak:
        refused(bomb, "50000x50000 (2,500,000,000 pixels), over the limit of 42,949,672 pixels", "--max-memory")
    assert time.monotonic() - start < 2
    assert peak.kib < 30_000, peak.kib


def test_jpeg_over_the_cap_is_refused_from_its_header():
    big = with_sof_size(photo_jpeg(), 12_000, 8_000)  # 96 Mpx declared, a photo's worth of data
    with peak_growth() as peak:
        refused(big, "12000x8000 (96,000,000 pixels), over the limit of", "--max-memory", name="huge.jpg")
    assert peak.kib < 30_000


def test_the_cap_follows_the_memory_budget(tmp_path, monkeypatch):
    assert max_pixels() == budget.DEFAULT_MAX_MEMORY // 100  # 42.9 Mpx under 4 GiB, Pillow warns at 89.5
    p = tmp_path / "a.png"
    Image.fromarray(RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(p)  # 0.12 Mpx
    assert decode_rgb8(p).shape == (300, 400, 3)
    budget.set_max_memory("8M")  # 83,886 px
    assert max_pixels() == (8 << 20) // 100
    refused(p, "400x300 (120,000 pixels), over the limit of 83,886 pixels", "memory budget of 8.0 MiB")
    budget.set_max_memory(None)
    monkeypatch.setenv("PYDARKNET_MAX_MEMORY", "8M")
    refused(p, "over the limit")
    monkeypatch.setenv("PYDARKNET_MAX_MEMORY", "16G")
    assert max_pixels() == (16 << 30) // 100 and decode_rgb8(p).shape == (300, 400, 3)


def test_pillows_own_limit_stays_a_second_net(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    Image.fromarray(RGB).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 63 pixels > twice 20
    refused(p, "decompression bomb", "PIL.Image.MAX_IMAGE_PIXELS")


def test_a_jpeg_scan_bomb_is_refused_before_decoding():
    jpeg = photo_jpeg()
    sos = jpeg.index(b"\xff\xda")
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 4
    start = time.monotonic()
    refused(jpeg[:sos] + scan * 101 + b"\xff\xd9", "more than 100 scans")
    assert time.monotonic() - start < 1


# -- truncated files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "png", "progressive jpeg"])
def test_truncated_files_are_refused_at_every_cut(tmp_path, kind):
    data = photo_png() if kind == "png" else photo_jpeg()
    if kind == "progressive jpeg":
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buf, "JPEG", progressive=True, quality=90)
        data = buf.getvalue()
    n = len(data)
    assert decode_rgb8(data).ndim == 3
    path = tmp_path / f"cut.{kind[-3:]}"
    for cut in (n - (5 if kind == "png" else 2), n - 13, n - 100, n * 9 // 10, n // 2, n // 10, 2_000, 300, 100, 40, 33, 20, 8):
        path.write_bytes(data[:cut])
        msg = refused(path, "truncated")
        assert ("PNG" if kind == "png" else "JPEG") in msg


def test_truncation_follows_stbs_rules():
    png, jpeg = photo_png(), photo_jpeg()
    # stb decodes a PNG on reaching IEND's header: the CRC after it may be missing, IEND itself may not
    assert decode_rgb8(png[:-4]).shape == decode_rgb8(png).shape
    refused(png[:-12], "truncated PNG", "IEND")
    # stb needs the EOI marker after the scans: a JPEG missing only its last byte, or EOI, is refused
    refused(jpeg[:-1], "truncated JPEG", "EOI")
    refused(jpeg[:-2], "truncated JPEG", "EOI")
    # bytes after the image's end are never read (by stb either)
    assert np.array_equal(decode_rgb8(jpeg + b"trailer" * 100), decode_rgb8(jpeg))
    assert np.array_equal(decode_rgb8(png + b"\0" * 100), decode_rgb8(png))


def test_a_truncation_flag_set_by_someone_else_is_refused(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    refused(photo_png(), "LOAD_TRUNCATED_IMAGES")


# -- bytes input --------------------------------------------------------------------------------------------


def test_bytes_input_decodes_like_the_file(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(photo_jpeg())
    want = decode_rgb8(p)
    data = p.read_bytes()
    for src in (data, bytearray(data), memoryview(data), memoryview(bytearray(data))):
        assert np.array_equal(decode_rgb8(src), want)
    assert np.array_equal(load_image(data), load_image(p))
    refused(data[:1000], "truncated")
    refused(data[:1000], "truncated", name="upload #3")
    refused(b"hello world", "unknown image type")


# -- WebP, TIFF, PNM: darknet's OpenCV build's rules ------------------------------------------------------


def _webp(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "WEBP", **kw)
    return buf.getvalue()


def _tiff_pil(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "TIFF", **kw)
    return buf.getvalue()


def _variants() -> dict[str, tuple[bytes, np.ndarray | None]]:
    """name -> (file bytes, the pixels OpenCV's IMREAD_COLOR gives, where known without the oracle)."""
    g = RGB[:, :, 0]
    alpha = RNG.integers(0, 256, (7, 9), dtype=np.uint8)
    alpha[0, :4] = 0  # fully transparent pixels keep their colour in WebP (exact) and premultiply to 0 in TIFF
    rgba = np.dstack([RGB, alpha])
    v16 = RNG.integers(0, 65536, (7, 9), dtype=np.uint16)
    cmyk = RNG.integers(0, 256, (7, 9, 4), dtype=np.uint8)
    premul = ((RGB.astype(np.uint16) * alpha[:, :, None] + 127) // 255).astype(np.uint8)
    gray3 = np.repeat(g[:, :, None], 3, 2)
    photo = np.asarray(Image.open(io.BytesIO(photo_jpeg())).convert("RGB"))[:120, :160]
    pal = Image.fromarray(RGB).quantize(8)
    frames = [Image.fromarray(np.full((4, 5, 3), v, np.uint8)) for v in (10, 200)]
    pages = io.BytesIO()
    frames[0].save(pages, "TIFF", save_all=True, append_images=frames[1:])
    out = {
        "webp lossless": (_webp(Image.fromarray(RGB), lossless=True), RGB),
        "webp lossless alpha": (_webp(Image.fromarray(rgba, "RGBA"), lossless=True, exact=True), RGB),
        "webp lossy": (_webp(Image.fromarray(photo), quality=80), None),
        "webp lossy alpha": (_webp(Image.fromarray(np.dstack([photo, photo[:, :, 1]]), "RGBA"), quality=80), None),
        "tiff rgb": (_tiff_pil(Image.fromarray(RGB)), RGB),
        "tiff lzw": (_tiff_pil(Image.fromarray(RGB), compression="tiff_lzw"), RGB),
        "tiff deflate": (_tiff_pil(Image.fromarray(RGB), compression="tiff_adobe_deflate"), RGB),
        "tiff jpeg": (_tiff_pil(Image.fromarray(photo), compression="jpeg"), None),
        "tiff gray": (_tiff_pil(Image.fromarray(g)), gray3),
        "tiff bilevel": (_tiff_pil(Image.fromarray(g > 128)), np.repeat(np.where(g > 128, 255, 0).astype(np.uint8)[:, :, None], 3, 2)),
        "tiff palette": (_tiff_pil(pal), np.asarray(pal.convert("RGB"))),
        "tiff rgba (alpha premultiplied)": (_tiff_pil(Image.fromarray(rgba, "RGBA")), premul),
        "tiff cmyk": (_tiff_pil(Image.fromarray(cmyk, "CMYK")),
                      ((255 - cmyk[:, :, :3].astype(np.uint16)) * (255 - cmyk[:, :, 3:4]) // 255).astype(np.uint8)),
        "tiff gray16 (high byte)": (_tiff_pil(Image.fromarray(v16)), np.repeat((v16 >> 8).astype(np.uint8)[:, :, None], 3, 2)),
        "tiff gray16 min-is-white": (tiff(v16, 0), np.repeat(255 - (v16 >> 8).astype(np.uint8)[:, :, None], 3, 2)),
        "tiff gray min-is-white": (tiff(g, 0), np.repeat(255 - g[:, :, None], 3, 2)),
        "tiff gray+alpha (dropped)": (tiff(np.dstack([g, alpha]), 1, extra=(2,)), gray3),
        "tiff rgb+unspecified extra": (tiff(rgba, 2, extra=(0,)), RGB),
        "tiff first page": (pages.getvalue(), np.full((4, 5, 3), 10, np.uint8)),
        "pnm maxval 15 (raw, as stb)": (b"P6\n9 7\n15\n" + (RGB >> 4).tobytes(), RGB >> 4),
        "pgm maxval 200": (b"P5 9 7 200 " + (g // 2).tobytes(), np.repeat(g[:, :, None] // 2, 3, 2)),
        "pgm 16-bit (high byte)": (b"P5\n9 7\n65535\n" + v16.astype(">u2").tobytes(),
                                   np.repeat((v16 >> 8).astype(np.uint8)[:, :, None], 3, 2)),
        "plain ppm": (b"P3\n9 7\n255\n" + " ".join(map(str, RGB.reshape(-1))).encode() + b"\n", RGB),
        "pbm": (b"P4\n9 7\n" + np.packbits(g > 128, axis=1).tobytes(),
                np.repeat(np.where(g > 128, 0, 255).astype(np.uint8)[:, :, None], 3, 2)),
    }
    T = Image.Transpose
    turns = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
             6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}
    for o, turn in turns.items():  # TIFF orientation: OpenCV applies it (as PIL.ImageOps.exif_transpose)
        im = Image.fromarray(RGB)
        out[f"tiff orientation {o}"] = (_tiff_pil(im, tiffinfo={274: o}), np.asarray(im if turn is None else im.transpose(turn)))
    return out


@pytest.fixture(scope="module")
def variants():
    return _variants()


def test_webp_tiff_pnm_decoded_by_opencvs_rules(variants, tmp_path):
    for name, (data, want) in variants.items():
        got = decode_rgb8(data, name)
        assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, name
        if want is not None:
            assert got.shape == want.shape and np.array_equal(got, want), name


@pytest.mark.skipif(find_library() is None, reason="C darknet (libdarknet.so) not installed")
def test_webp_tiff_pnm_equal_the_live_darknets_opencv_decode(variants, tmp_path):
    """Debian's darknet is built with OpenCV: load_image_color reads these formats with cv::imread."""
    c = CDarknet(str(ZOO_CFG / "tiny.cfg"), None)
    try:
        for i, (name, (data, _)) in enumerate(variants.items()):
            path = tmp_path / f"v{i}.{'webp' if name.startswith('webp') else 'tif' if 'tiff' in name else 'pnm'}"
            path.write_bytes(data)
            assert np.array_equal(load_image(path), c.load_image_color(str(path))), name
    finally:
        c.close()


def test_what_darknets_opencv_cannot_read_is_refused_with_the_reason():
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    refused(buf.getvalue(), "animated WebP")
    rgb16 = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    refused(tiff(rgb16, 2), "16-bit colour TIFF")
    refused(tiff(RNG.random((5, 6), dtype=np.float32), 1, sample_format=3), "32-bit floating-point")
    refused(tiff(RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8), 2, extra=(1,)), "premultiplied alpha")
    refused(tiff(RNG.integers(0, 256, (5, 6, 5), dtype=np.uint8), 2, extra=(2, 0)), "5 samples")
    refused(_tiff_pil(Image.fromarray(RGB).convert("LAB")), "CIELab")
    refused(b"P2\n2 1\n15\n1 2\n", "maxval 15")
    pcx = io.BytesIO()
    Image.fromarray(RGB).save(pcx, "PCX")
    refused(pcx.getvalue(), "PCX images are not read by darknet")


# -- the API: uint8 tensors, bytes, the float warning -----------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import pydarknet
    cfg = tmp_path_factory.mktemp("api") / "tiny.cfg"
    cfg.write_text(TINY)
    return pydarknet.load(cfg, None, names=["a", "b", "c", "d"], preprocess="center_crop")


def test_api_takes_uint8_chw_tensors_and_bytes(classifier, tmp_path):
    import torch

    from pydarknet.api import as_chw
    p = tmp_path / "a.png"
    rgb = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(p)
    want = load_image(p)
    chw8 = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    for form in (p, str(p), p.read_bytes(), bytearray(p.read_bytes()), memoryview(p.read_bytes()), rgb, chw8,
                 torch.from_numpy(want), Image.open(p)):
        assert np.array_equal(as_chw(form), want), type(form)
        assert np.array_equal(classifier.prepare(form), classifier.prepare(want)), type(form)
    rgba = torch.from_numpy(np.ascontiguousarray(np.dstack([rgb, rgb[:, :, :1]]).transpose(2, 0, 1)))
    assert np.array_equal(as_chw(rgba), want)
    batch = classifier.predict(torch.stack([chw8, chw8]), top=2)
    assert len(batch) == 2 and [q.index for q in batch[0]] == [q.index for q in batch[1]]
    assert classifier.predict(chw8, top=2) == classifier.predict(p.read_bytes(), top=2) == classifier.predict(p, top=2)
    with pytest.raises(DarknetError, match="<bytes>: truncated PNG"):
        classifier.predict(p.read_bytes()[:100])


def test_float_pixels_above_1_warn_once_in_one_line(classifier):
    from pydarknet.api import as_chw
    x = RNG.random((3, 20, 20), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        as_chw(x)
        classifier.prepare(x)
    assert not caught
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        as_chw(x * 255)
    assert len(caught) == 1 and caught[0].category is DarknetWarning
    msg = str(caught[0].message)
    assert "\n" not in msg and "[0, 1]" in msg and "255" in msg


# -- the uint8 path is bit-exact with the float path ------------------------------------------------------


def _all_views(im, w, h):
    """Every preprocessing of a decoded image the commands use, by name."""
    out = {"resize": resize_image(im, w, h), "letterbox": letterbox_image(im, w, h),
           "center_crop": center_crop_image(im, w, h), "resize_min": resize_min(im, min(w, h)),
           "resize_max": resize_max(im, max(w, h))}
    for mode, views in MODES.items():
        if mode == "validmulti":
            continue  # five fixed resizes up to 384 whatever the size: once per golden image, below
        for i, v in enumerate(views(im, w, h)):
            out[f"{mode}[{i}]"] = v
    return out


def _same(a, b, what):
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a, b), what


def test_uint8_path_is_bit_exact_with_the_float_path_random_sizes():
    rng = np.random.default_rng(2024)
    for case in range(150):
        ih, iw = (int(v) for v in rng.integers(1, 90, 2))
        w, h = (int(v) for v in rng.integers(1, 70, 2))
        im8 = rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)
        f = load_image(_png_bytes(im8))
        want, got = _all_views(f, w, h), _all_views(im8, w, h)
        for k in want:
            _same(got[k], want[k], f"case {case}: {iw}x{ih} -> {w}x{h} {k}")
        _same(crop_image(f, -3, 2, w, h), crop_image(resize_image(im8, iw, ih), -3, 2, w, h), f"crop {case}")
        kw = dict(size=int(rng.integers(4, 40)), min_crop=int(rng.integers(4, 40)), max_crop=int(rng.integers(40, 90)),
                  angle=float(rng.uniform(0, 30)), aspect=float(rng.uniform(1, 1.5)), hue=.1, saturation=1.5,
                  exposure=1.5, center=bool(case % 5 == 0))
        _same(augment(im8, np.random.default_rng(case), **kw), augment(f, np.random.default_rng(case), **kw),
              f"augment {case}")


def _png_bytes(im8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(im8).save(buf, "PNG")
    return buf.getvalue()


def test_uint8_path_is_bit_exact_on_the_golden_images_and_darknets_inputs(manifest):
    import hashlib
    sizes = sorted({(c["net_w"], c["net_h"]) for c in manifest["cases"]})
    for key, info in manifest["images"].items():
        im8 = decode_rgb8(GOLDEN / info["decoded"])
        f = load_image(GOLDEN / info["decoded"])
        for w, h in sizes:
            want, got = _all_views(f, w, h), _all_views(im8, w, h)
            for k in want:
                _same(got[k], want[k], f"{key} {w}x{h} {k}")
            for case in (c for c in manifest["cases"] if c["image"] == key and (c["net_w"], c["net_h"]) == (w, h)):
                for mode, fn in (("predict", letterbox_image), ("valid", center_crop_image)):
                    x = np.ascontiguousarray(fn(im8, w, h), dtype="<f4")
                    assert hashlib.sha256(x.tobytes()).hexdigest() == case[f"in_{mode}_sha256"], (key, mode)
        for i, (a, b) in enumerate(zip(MODES["validmulti"](im8, 224, 224), MODES["validmulti"](f, 224, 224))):
            _same(a, b, f"{key} validmulti[{i}]")


# -- through the command line --------------------------------------------------------------------------------


@pytest.fixture()
def tiny(tmp_path):
    import pydarknet
    import torch

    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY)
    weights = tmp_path / "tiny.weights"
    torch.manual_seed(0)
    pydarknet.load_network(cfg).save_weights(weights)
    return cfg, weights


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_one_image_over_the_cap_is_one_line_exit_2(capsys, tiny, tmp_path):
    cfg, weights = tiny
    big = tmp_path / "huge.jpg"
    big.write_bytes(with_sof_size(photo_jpeg(), 12_000, 8_000))
    code, out, err = cli(capsys, "classify", cfg, weights, big)
    assert code == 2 and out == "" and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("pydarknet: error:")]
    assert len(lines) == 1 and str(big) in lines[0] and "--max-memory" in lines[0], err
    ok = tmp_path / "ok.png"
    Image.fromarray(RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(ok)
    assert cli(capsys, "classify", cfg, weights, ok)[0] == 0
    code, out, err = cli(capsys, "classify", cfg, weights, ok, "--max-memory", "8M")
    assert code == 2 and "over the limit of 83,886 pixels" in err and "8.0 MiB" in err


def test_cli_in_a_list_only_the_image_over_the_cap_is_skipped(capsys, tiny, tmp_path):
    cfg, weights = tiny
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(RNG.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    big = folder / "1b.jpg"
    big.write_bytes(with_sof_size(photo_jpeg(), 12_000, 8_000))
    bomb = folder / "2b.png"
    bomb.write_bytes(png_bomb())
    out_csv = tmp_path / "out.csv"
    code, out, err = cli(capsys, "classify", cfg, weights, folder, "--out", out_csv, "-q", "--workers", "0")
    assert code == 3 and "Traceback" not in err
    rows = {r["path"]: r for r in csv.DictReader(out_csv.open())}
    assert len(rows) == 5
    assert rows[str(big)]["error"] and rows[str(bomb)]["error"] and "over the limit" in rows[str(big)]["error"]
    assert all(rows[str(folder / f"{i}.png")]["top1_name"] for i in range(3))
    errors = [ln for ln in err.splitlines() if ln.startswith("pydarknet: error:")]
    assert len(errors) == 2 and "2 of 5 images could not be read" in err
    # several images on the command line: the same
    code, out, err = cli(capsys, "classify", cfg, weights, folder / "0.png", big, folder / "1.png")
    assert code == 3 and out.count(":\n") == 2 and str(big) in err


def test_cli_a_corrupt_compressed_tiff_is_one_line_on_stderr(capfd, tiny, tmp_path):
    """libtiff prints its own warnings on stderr (fd 2) unless told not to: the command silences them."""
    cfg, weights = tiny
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(buf, "TIFF", compression="tiff_lzw")
    data = bytearray(buf.getvalue())
    data[8:400] = bytes(range(256)) + bytes(136)  # the LZW strip's codes scrambled
    bad = tmp_path / "bad.tif"
    bad.write_bytes(bytes(data))
    capfd.readouterr()
    code = main(["classify", str(cfg), str(weights), str(bad), "-q"])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith(f"pydarknet: error: {bad}: corrupt TIFF"), err
