"""Decoding by stb_image's rules, and the refusals, each naming the file."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from PIL import Image

from conftest import GOLDEN, sha256
from pydarknet.errors import DarknetError
from pydarknet.image import decode_rgb8, load_image, to_float_chw
from cdarknet import CDarknet, find_library

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)


def save(tmp_path, name, im, **kw):
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_rgb_png_bmp_tga_ppm_exact(tmp_path):
    for name in ("a.png", "a.bmp", "a.tga", "a.ppm"):
        p = save(tmp_path, name, Image.fromarray(RGB))
        assert np.array_equal(decode_rgb8(p), RGB), name


def test_float_conversion_is_v_over_255(tmp_path):
    p = save(tmp_path, "a.png", Image.fromarray(RGB))
    x = load_image(p)
    assert x.shape == (3, 7, 9) and x.dtype == np.float32
    assert np.array_equal(x, (RGB.transpose(2, 0, 1) / 255.0).astype(np.float32))
    every_byte = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert np.array_equal(to_float_chw(every_byte), (every_byte.transpose(2, 0, 1) / 255.0).astype(np.float32))


def test_gray_is_replicated(tmp_path):
    g = RGB[:, :, 0]
    for mode in ("L", "LA"):
        im = Image.fromarray(g) if mode == "L" else Image.merge("LA", [Image.fromarray(g), Image.fromarray(g[::-1])])
        out = decode_rgb8(save(tmp_path, f"g{mode}.png", im))
        assert np.array_equal(out, np.repeat(g[:, :, None], 3, 2)), mode


def test_alpha_dropped_without_compositing(tmp_path):
    rgba = np.dstack([RGB, np.zeros((7, 9), np.uint8)])  # fully transparent: colours must survive
    out = decode_rgb8(save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(out, RGB)


def test_16bit_keeps_high_byte(tmp_path):
    v = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    im = Image.fromarray(v)
    out = decode_rgb8(save(tmp_path, "d.png", im))
    assert np.array_equal(out, np.repeat((v >> 8).astype(np.uint8)[:, :, None], 3, 2))
    # 16-bit RGB PNG written by hand (Pillow cannot write it): stb keeps each sample's high byte
    rgb16 = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png(rgb16))
    assert np.array_equal(decode_rgb8(p), (rgb16 >> 8).astype(np.uint8))


def _png(rgb16):
    import zlib
    h, w, _ = rgb16.shape
    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_palette_expanded(tmp_path):
    im = Image.fromarray(RGB).quantize(16)
    out = decode_rgb8(save(tmp_path, "p.png", im))
    assert np.array_equal(out, np.asarray(im.convert("RGB")))
    im.info["transparency"] = 0
    out = decode_rgb8(save(tmp_path, "pt.png", im, transparency=0))
    assert np.array_equal(out, np.asarray(im.convert("RGB")))


def test_cmyk_jpeg_uses_stb_formula(tmp_path):
    cmyk = Image.fromarray(RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8), "CMYK")
    p = save(tmp_path, "c.jpg", cmyk, quality=100)
    decoded = np.asarray(Image.open(p)).astype(np.uint32)  # Pillow's (un-inverted) CMYK
    raw = 255 - decoded
    t = raw[:, :, :3] * raw[:, :, 3:4] + 128
    want = ((t + (t >> 8)) >> 8).astype(np.uint8)
    assert np.array_equal(decode_rgb8(p), want)


def test_exif_orientation_ignored(tmp_path):
    im = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": stb ignores it
    p = save(tmp_path, "e.jpg", im, exif=exif, quality=100)
    assert decode_rgb8(p).shape == (7, 9, 3)


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    out = decode_rgb8(p)
    assert out.shape == (4, 4, 3) and int(out[0, 0, 0]) == 10


def refused(path, *words):
    with pytest.raises(DarknetError) as e:
        load_image(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: "), msg
    for w in words:
        assert w in msg, msg


def test_refusals(tmp_path):
    refused(tmp_path / "missing.jpg", "no such image file")
    refused(tmp_path, "is a directory")
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    refused(fifo, "is a FIFO, not an image file")  # and it returns at once: no open() on the FIFO
    pcx = save(tmp_path, "a.pcx", Image.fromarray(RGB))
    refused(pcx, "PCX images are not read by darknet")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    refused(text, "unknown image type")
    hdr = tmp_path / "sky.hdr"
    hdr.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\0\0\0\0")
    refused(hdr, "Radiance HDR")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused(empty, "empty file")


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_files_are_refused(tmp_path, fmt):
    big = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    p = save(tmp_path, f"t.{fmt}", Image.fromarray(big))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    refused(p, "truncated")


def test_decompression_bomb_refused_from_header(tmp_path, monkeypatch):
    p = save(tmp_path, "big.png", Image.fromarray(np.zeros((40, 50, 3), np.uint8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 999)  # Pillow's error level is twice this: 1998 < 2000
    refused(p, "decompression bomb", "PIL.Image.MAX_IMAGE_PIXELS")


def test_golden_decoded_pngs_are_stbs_pixels(manifest):
    for name, info in manifest["images"].items():
        rgb = decode_rgb8(GOLDEN / info["decoded"])
        import hashlib
        assert hashlib.sha256(rgb.tobytes()).hexdigest() == info["decoded_sha256"], name


@pytest.mark.skipif(find_library() is None, reason="C darknet (libdarknet.so) not installed")
def test_png_and_bmp_variants_decode_as_the_live_darknet(tmp_path):
    """Debian's darknet decodes with OpenCV; for lossless files it must agree with us exactly."""
    from conftest import ZOO_CFG
    g = RGB[:, :, 1]
    v16 = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
    files = [save(tmp_path, "rgb.png", Image.fromarray(RGB)), save(tmp_path, "rgb.bmp", Image.fromarray(RGB)),
             save(tmp_path, "g.png", Image.fromarray(g)),
             save(tmp_path, "rgba.png", Image.fromarray(np.dstack([RGB, RGB[:, :, 0]]), "RGBA")),
             save(tmp_path, "p.png", Image.fromarray(RGB).quantize(8)),
             save(tmp_path, "d16.png", Image.fromarray(v16))]
    c = CDarknet(str(ZOO_CFG / "tiny.cfg"), None)
    try:
        for f in files:
            assert np.array_equal(load_image(f), c.load_image_color(str(f))), f.name
    finally:
        c.close()
