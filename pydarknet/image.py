"""Image files -> darknet's pixels: (H, W, 3) uint8 (``decode_rgb8``), or (3, H, W) float32 in [0, 1]
(``load_image``), as ``load_image_color`` gives them.

Formats and their rules:

* stb_image's formats (``src/image.c`` load_image_stb, stb_image 2.19 with 3 requested channels): JPEG (an MPO
  gives its first image), PNG, BMP, GIF (first frame), TGA, PSD, binary PGM/PPM (P5/P6, maxval <= 255). stb's
  channel rules: grayscale is replicated to three channels, alpha is dropped without compositing, 16-bit PNG
  samples keep their high byte, palettes are expanded, EXIF orientation is ignored, CMYK JPEGs are converted
  with stb's formula, PGM/PPM samples are taken as stored (a maxval below 255 is not rescaled; Pillow would).
  JPEG pixels come from Pillow's libjpeg, which differs from stb's decoder by a few levels on some pixels.
* What only darknet's OpenCV build reads (``src/image_opencv.cpp``: ``cv::imread(path, IMREAD_COLOR)``),
  decoded as OpenCV 4.6 does it (checked against Debian's libdarknet, which is that build):

  - WebP, lossy or lossless, still images: alpha dropped as stored, no EXIF orientation (OpenCV's WebP
    reader has none). Animated WebP is refused: OpenCV cannot read it (darknet would classify a blank image).
  - TIFF, its first page, through libtiff's RGBA reader as OpenCV uses it: the Orientation tag is applied;
    gray (1-16 bits, min-is-white inverted; 16 bits keep the high byte) is replicated; palettes expanded;
    unassociated alpha is premultiplied (``(c * a + 127) // 255``) then dropped; CMYK is
    ``(255 - c) * (255 - k) // 255``; JPEG-compressed YCbCr is converted by libjpeg. Refused, with the reason:
    16-bit colour, 32-bit and floating-point samples, CIELab, uncompressed YCbCr, premultiplied alpha, more
    than 4 samples a pixel (OpenCV cannot read them, or rounds them in ways Pillow cannot reproduce).
  - PNM that stb does not read: plain (ASCII) P1-P3 with maxval 255, bitmaps (P1/P4), 16-bit PGM with maxval
    65535 (high byte).

  OpenCV also applies EXIF orientation to JPEG and PNG, which stb does not: for those, pydarknet keeps stb's
  rule (the reference darknet's).

Limits and refusals, each one DarknetError naming the file (or ``<bytes>``, or the caller's name):

* only regular files are opened (``atomic.open_regular``: a FIFO, a directory or a device is refused before
  a byte is read), and a file over ``max_file_bytes()`` is refused from its size;
* a picture over ``max_pixels()`` is refused from its header, before anything is decoded; both caps follow the
  memory budget (``budget.max_memory``: ``--max-memory``, ``$PYDARKNET_MAX_MEMORY``). Pillow's own
  decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, twice that refused) stays a second net;
* truncated files: a PNG must reach its IEND chunk header and a JPEG its EOI marker, as stb_image demands
  (checked here from the file's structure, whatever Pillow would accept); Pillow's own truncation errors
  (never ``ImageFile.LOAD_TRUNCATED_IMAGES``: decoding is refused while someone has set it) cover the rest;
* unknown or unsupported formats, zero-sized pictures, undecodable data.
"""
from __future__ import annotations

import io
import os
import re
import struct

import numpy as np

from .errors import DarknetError

#: Pillow format names of what stb_image 2.19 reads (JPEG, PNG, BMP, GIF, TGA, PSD, PNM). stb also reads
#: Radiance HDR and Softimage PIC, which Pillow cannot: those are refused with a message saying so.
STB_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF", "TGA", "PSD", "PPM"}
#: what only darknet's OpenCV build reads, decoded by OpenCV's rules (see the module docstring)
OPENCV_FORMATS = {"WEBP", "TIFF"}
#: the Pillow plugins tried, in this order: format name -> its plugin module (imported when first reached, so
#: a JPEG never imports the TIFF reader)
_PLUGINS = {"BMP": "BmpImagePlugin", "GIF": "GifImagePlugin", "JPEG": "JpegImagePlugin", "PPM": "PpmImagePlugin",
            "PNG": "PngImagePlugin", "WEBP": "WebPImagePlugin", "TIFF": "TiffImagePlugin", "PSD": "PsdImagePlugin",
            "TGA": "TgaImagePlugin"}
_UNSUPPORTED_STB = {b"#?RADIANCE": "Radiance HDR", b"#?RGBE": "Radiance HDR", b"\x53\x80\xf6\x34": "Softimage PIC"}
_READS = "JPEG, PNG, BMP, GIF, TGA, PSD, PNM, WebP or TIFF"

#: What one decoded pixel may cost, in bytes, for the pixel cap: a decode peaks near 7 bytes a pixel
#: (Pillow's 4-byte RGB store and the 3-byte array; measured 299 MiB for 42.75 Mpx), training's augmentation
#: 3 more (its zero-bordered uint8 copy), and up to 4 decoding workers run at once; the rest is headroom. 100 bytes a
#: pixel gives 42.9 Mpx under the default budget of 4 GiB, half of Pillow's 89.5 Mpx warning level.
IMAGE_BYTES_PER_PIXEL = 100
#: the largest image file read: this fraction of the memory budget (1 GiB under the default 4 GiB)
FILE_BUDGET_FRACTION = 4


def max_pixels() -> int:
    """The largest picture (width x height) decoded: the memory budget / ``IMAGE_BYTES_PER_PIXEL``."""
    from .budget import max_memory

    return max(1, max_memory() // IMAGE_BYTES_PER_PIXEL)


def max_file_bytes() -> int:
    """The largest image file read: the memory budget / ``FILE_BUDGET_FRACTION``."""
    from .budget import max_memory

    return max(1, max_memory() // FILE_BUDGET_FRACTION)


def _raise_hint() -> str:
    from .budget import human, max_memory

    return f"from the memory budget of {human(max_memory())}; raise it with --max-memory or $PYDARKNET_MAX_MEMORY"


# -- the source: a regular file or bytes ---------------------------------------------------------------


def decode_rgb8(source: str | os.PathLike | bytes | bytearray | memoryview, name: str | None = None) -> np.ndarray:
    """Decode an image file (a path, or the file's bytes) to (H, W, 3) uint8 by the module's rules.

    ``name`` names the image in error messages (default: the path, or ``<bytes>``)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B") if isinstance(source, memoryview) else source
        name = "<bytes>" if name is None else name
        _check_file_size(len(data), name)
        return _decode(io.BytesIO(data), len(data), name)
    from .atomic import open_regular

    path = os.fspath(source)
    name = path if name is None else name
    f, size = open_regular(path, "image")
    with f:
        _check_file_size(size, name)
        return _decode(f, size, name)


def _check_file_size(size: int, name: str) -> None:
    if size == 0:
        raise DarknetError("empty file, not an image", name)
    cap = max_file_bytes()
    if size > cap:
        raise DarknetError(f"image file is {size:,} bytes, over the limit of {cap:,} ({_raise_hint()})", name)


# -- structure checks before decoding: truncation as stb_image sees it -----------------------------------


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _check_png_complete(f, size: int, name: str) -> None:
    """stb_image decodes a PNG when it reaches the IEND chunk's header; a file that ends first (any cut before
    IEND, even one that leaves every IDAT byte) is "corrupt" to stb: refused here as truncated. IEND's CRC may
    be missing (stb never reads it). Pillow alone would accept a PNG missing its IEND."""
    pos = 8
    while True:
        if pos + 8 > size:
            break
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            return
        pos += 12 + length
    raise DarknetError(f"truncated PNG: the file ends ({size:,} bytes) before its IEND chunk", name)


#: the end of a marker inside or after entropy-coded data: 0xFF (the last of any fill bytes) then neither a
#: stuffed 0x00, nor a restart marker (RSTn lives inside the scan), nor another 0xFF. The match's end is the one
#: of ``\xff+[^\x00\xd0-\xd7\xff]`` (the first such 0xFF is the last of its run), but a pattern that starts with
#: a literal byte lets the regex engine skip ahead to each 0xFF: 1.0 ms instead of 19.5 ms for kite.jpg's 1.4 MB
#: (the leading repeat made it try every position)
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
#: the most scans a JPEG may have: encoders write 1 (baseline) or about 10 (progressive); each scan is a pass
#: over the whole image, so thousands of tiny scans make a small file that decodes for minutes
MAX_JPEG_SCANS = 100
_FF = re.compile(rb"\xff")


def _check_jpeg_complete(f, size: int, name: str) -> None:
    """stb_image 2.19 (stbi__decode_jpeg_image) decodes scans until it meets the EOI marker; when the data ends
    first, stbi__get_marker finds no marker and the load fails ("expected marker"), so darknet refuses a JPEG
    whose data ends before its EOI (even when only EOI is missing). The same walk here: segment by segment,
    entropy-coded data skipped to its next marker, until EOI."""
    def truncated(where: str) -> DarknetError:
        return DarknetError(f"truncated JPEG: the file ends ({size:,} bytes) {where} before its EOI marker", name)

    pos = 2
    scans = 0
    while True:
        f.seek(pos)
        head = f.read(4)
        if len(head) < 2:
            raise truncated("between segments")
        if head[0] != 0xFF:  # junk between segments: stb skips to the next 0xFF; so do we
            nxt = _find(f, pos, size, _FF)
            if nxt is None:
                raise truncated("in junk between segments")
            pos = nxt - 1
            continue
        marker = head[1]
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if len(head) < 4:
            raise truncated("in a segment header")
        length = struct.unpack(">H", head[2:4])[0]
        pos += 2 + length
        if pos > size:
            raise truncated(f"inside its {_JPEG_MARKERS.get(marker, f'0x{marker:02X}')} segment")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise DarknetError(f"JPEG with more than {MAX_JPEG_SCANS} scans (a decompression bomb?)", name)
            end = _find(f, pos, size, _SCAN_END)
            if end is None:
                raise truncated("inside the compressed data")
            pos = end - 2  # the marker's last 0xFF


_JPEG_MARKERS = {0xC0: "SOF0", 0xC1: "SOF1", 0xC2: "SOF2", 0xC4: "DHT", 0xDA: "SOS", 0xDB: "DQT", 0xDD: "DRI",
                 0xE0: "APP0", 0xE1: "APP1 (EXIF)", 0xE2: "APP2", 0xFE: "COM"}


def _find(f, pos: int, size: int, pattern: re.Pattern, block: int = 1 << 20) -> int | None:
    """The file offset just past the first match of ``pattern`` at or after ``pos`` (None: no match), read in
    bounded blocks; a run of 0xFF at a block's end is carried into the next (it may begin a marker)."""
    carry = b""
    base = pos
    while base < size:
        f.seek(base)
        chunk = f.read(block)
        if not chunk:
            return None
        data = carry + chunk
        m = pattern.search(data)
        if m:
            return base - len(carry) + m.end()
        keep = len(data) - len(data.rstrip(b"\xff"))
        carry = data[len(data) - keep:] if keep else b""
        base += len(chunk)
    return None


def _webp_animated(head: bytes) -> bool:
    """The VP8X header's animation flag (OpenCV 4.6's WebP reader refuses such files)."""
    return head[12:16] == b"VP8X" and len(head) > 20 and bool(head[20] & 0x02)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP's first chunk header, or None. Checked against the pixel cap before Pillow
    opens the file: its WebP reader makes libwebp's decoder (and its canvas) when it opens."""
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if kind == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF)
    if kind == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# -- opening: identify among the formats read, header only -----------------------------------------------


def _open(f, name: str, head: bytes):
    """The Pillow image of the first format among ``_PLUGINS`` whose header parses (nothing decoded yet).

    Image.open would run Pillow's decompression-bomb check before the pixel cap could name the limit that
    binds; so the plugins are tried here as Image.open tries them (``Image.OPEN``, the registry plugins
    register in), restricted to the formats read."""
    import importlib

    from PIL import Image

    for fmt, module in _PLUGINS.items():
        try:
            importlib.import_module(f"PIL.{module}")
        except ImportError:  # a Pillow built without this codec
            continue
        if fmt not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[fmt]
        ok = True if accept is None else accept(head)
        if not ok or isinstance(ok, str):
            continue
        f.seek(0)
        try:
            return factory(f, name)
        except (SyntaxError, IndexError, TypeError, struct.error, ValueError, KeyError, EOFError):
            continue
        except OSError as e:
            raise _decode_error(e, fmt, name) from None
        except Image.DecompressionBombError as e:  # a GIF frame larger than its screen, found at open
            raise DarknetError(f"refused as a decompression bomb: {e}", name) from None
    f.seek(0)
    for magic, kind in _UNSUPPORTED_STB.items():
        if head.startswith(magic):
            raise DarknetError(f"{kind} images are not supported (convert it to PNG)", name)
    known = _sniff(head)
    if known:
        raise DarknetError(f"cannot read the {known} header (corrupt or truncated file)", name)
    other = _other_format(f)
    if other:
        raise DarknetError(f"{other} images are not read by darknet (use {_READS})", name)
    raise DarknetError(f"unknown image type (not {_READS})", name)


def _other_format(f) -> str | None:
    """The name of a format Pillow knows but darknet does not read (for the message), else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            return im.format
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, IndexError, struct.error,
            EOFError, Image.DecompressionBombError):
        return None


def _decode_error(e: Exception, fmt: str, name: str) -> DarknetError:
    text = str(e) or type(e).__name__
    if "truncat" in text.lower() or isinstance(e, EOFError):
        return DarknetError(f"truncated {fmt} file: {text}", name)
    if text.startswith("decoder error"):
        return DarknetError(f"corrupt {fmt} data ({text})", name)
    return DarknetError(f"cannot decode {fmt} image: {text}", name)


def _check_pixels(w: int, h: int, name: str) -> None:
    from PIL import Image

    if w <= 0 or h <= 0:
        raise DarknetError(f"image has no pixels ({w}x{h})", name)
    cap = max_pixels()
    if w * h > cap:
        raise DarknetError(f"image is {w}x{h} ({w * h:,} pixels), over the limit of {cap:,} pixels "
                           f"({IMAGE_BYTES_PER_PIXEL} bytes a pixel {_raise_hint()})", name)
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow and w * h > 2 * pillow:  # Pillow's DecompressionBombError level, as the second net
        raise DarknetError(f"refused as a decompression bomb: {w}x{h} is over Pillow's limit of {2 * pillow:,} "
                           "pixels (PIL.Image.MAX_IMAGE_PIXELS)", name)


def _decode(f, size: int, name: str) -> np.ndarray:
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise DarknetError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: pydarknet does not decode with it (a "
                           "truncated file would pass for a whole one); set it back to False", name)
    head = f.read(32)
    kind = _sniff(head)
    complete = {"PNG": _check_png_complete, "JPEG": _check_jpeg_complete}.get(kind)
    if kind == "WEBP":
        if _webp_animated(head):
            raise DarknetError("animated WebP: darknet's OpenCV reader cannot read it (extract a frame as PNG)",
                               name)
        size_wh = _webp_size(head)
        if size_wh:
            _check_pixels(*size_wh, name)
    f.seek(0)
    try:
        im = _open(f, name, head)  # the header only
    except DarknetError:
        if complete:  # a header cut short: say so
            complete(f, size, name)
        raise
    try:
        fmt = im.format or "image"
        w, h = im.size
        _check_pixels(w, h, name)  # before the structure walk, which reads the whole file
        if complete:
            complete(f, size, name)
        try:
            convert = _plan(im, f, name)
            im.seek(0)
            im.load()
            return convert(im)
        except DarknetError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, TypeError) as e:
            raise _decode_error(e, fmt, name) from None
        except Image.DecompressionBombError as e:  # Pillow's checks inside a decoder (GIF frames)
            raise DarknetError(f"refused as a decompression bomb: {e}", name) from None
    finally:
        im.close()


# -- format rules --------------------------------------------------------------------------------------


def _plan(im, f, name: str):
    """Check the format's header against what darknet reads; return the conversion of the loaded image."""
    fmt = im.format
    if fmt == "TIFF":
        return _tiff_plan(im, name)
    if fmt == "PPM":
        return _pnm_plan(im, f, name)
    if fmt == "WEBP":
        if getattr(im, "n_frames", 1) > 1:
            raise DarknetError("animated WebP: darknet's OpenCV reader cannot read it (extract a frame as PNG)",
                               name)
        return pil_to_rgb8
    if fmt not in STB_FORMATS:
        raise DarknetError(f"{fmt} images are not read by darknet (use {_READS})", name)
    return pil_to_rgb8


def _pnm_plan(im, f, name: str):
    """stb_image reads binary PGM/PPM with maxval <= 255 and takes the samples as stored; Pillow rescales a
    maxval below 255 to 0..255, so those are read raw here. OpenCV reads the rest of the family."""
    mode = im.mode
    if mode not in ("1", "L", "RGB", "I"):
        raise DarknetError(f"PNM variant of mode {mode} is not read by darknet", name)
    if mode == "1":
        return pil_to_rgb8
    tile = im.tile[0]
    codec, offset, args = tile[0], tile[2], tile[3]
    maxval = args[1] if isinstance(args, tuple) and len(args) > 1 and codec in ("ppm", "ppm_plain") else None
    if mode == "I":
        if args != "I;16B":
            raise DarknetError(f"16-bit PNM with maxval {maxval}: only 8-bit PNM and 16-bit PGM with maxval "
                               "65535 are read", name)
        return pil_to_rgb8
    if codec == "ppm_plain":
        if maxval not in (None, 255):
            raise DarknetError(f"plain (ASCII) PNM with maxval {maxval}: only maxval 255 is read", name)
        return pil_to_rgb8
    if codec == "ppm":
        if maxval is None or maxval > 255:
            raise DarknetError(f"16-bit colour PNM (maxval {maxval}) is not read by darknet", name)
        channels = 3 if mode == "RGB" else 1
        w, h = im.size

        def raw(_im):
            f.seek(offset)
            data = f.read(w * h * channels)
            if len(data) < w * h * channels:
                raise DarknetError(f"truncated PNM file: {len(data):,} of {w * h * channels:,} pixel bytes", name)
            a = np.frombuffer(data, np.uint8).reshape(h, w, channels)
            return np.ascontiguousarray(np.repeat(a, 3, axis=2) if channels == 1 else a)

        return raw
    return pil_to_rgb8


#: TIFF tags
_BITS, _PHOTOMETRIC, _SAMPLES, _EXTRA, _FORMAT, _ORIENTATION = 258, 262, 277, 338, 339, 274


def _tiff_plan(im, name: str):
    """OpenCV 4.6 reads TIFF into 8 bits through libtiff's TIFFRGBAImage: its rules, or a refusal naming what
    it cannot read (or what it rounds in ways Pillow's decoding cannot give back)."""
    tags = im.tag_v2
    photometric = tags.get(_PHOTOMETRIC)
    samples = int(tags.get(_SAMPLES, 1))
    bits = tags.get(_BITS, (1,))
    bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
    extra = tags.get(_EXTRA)
    extra = tuple(extra) if isinstance(extra, (tuple, list)) else (() if extra is None else (extra,))
    sample_format = tags.get(_FORMAT, 1)
    sample_format = sample_format[0] if isinstance(sample_format, (tuple, list)) else sample_format
    compression = im.info.get("compression")
    if samples > 4:
        raise DarknetError(f"TIFF with {samples} samples a pixel: darknet's OpenCV reads at most 4", name)
    if sample_format not in (1, None) or max(bits) > 16:
        kind = {2: "signed", 3: "floating-point"}.get(sample_format, "integer")
        raise DarknetError(f"TIFF with {max(bits)}-bit {kind} samples is not read by darknet's OpenCV", name)
    if photometric in (8, 9, 10):
        raise DarknetError("CIELab TIFF is not read by pydarknet (libtiff's colour conversion); convert it to RGB",
                           name)
    if photometric == 6 and compression != "jpeg":
        raise DarknetError("uncompressed YCbCr TIFF is not read by pydarknet (libtiff's conversion differs from "
                           "Pillow's); convert it to RGB", name)
    gray = photometric in (0, 1)
    if max(bits) > 8 and not (gray and samples == 1):
        raise DarknetError(f"{max(bits)}-bit colour TIFF is not read by pydarknet (darknet's OpenCV rounds its "
                           "samples to 8 bits in a way Pillow cannot reproduce); convert it to 8 bits", name)
    if extra and extra[0] == 1 and not gray:
        raise DarknetError("TIFF with premultiplied alpha is not read by pydarknet; save it with straight alpha "
                           "or none", name)
    orientation = tags.get(_ORIENTATION, 1)
    mode = im.mode

    def strip(im):
        if mode.startswith("I;16"):
            a = (np.asarray(im).astype(np.uint16) >> 8).astype(np.uint8)
            if photometric == 0:  # min-is-white: libtiff inverts; Pillow's 16-bit modes do not
                a = 255 - a
            return np.repeat(a[:, :, None], 3, axis=2)
        if mode == "RGBA" and extra and extra[0] == 2:  # unassociated alpha: libtiff premultiplies
            a = np.asarray(im)
            return ((a[:, :, :3].astype(np.uint16) * a[:, :, 3:4] + 127) // 255).astype(np.uint8)
        if mode == "CMYK":  # libtiff's putRGBcontig8bitCMYKtile
            a = np.asarray(im).astype(np.uint16)
            k = 255 - a[:, :, 3:4]
            return ((255 - a[:, :, :3]) * k // 255).astype(np.uint8)
        return _rgb8(im, False)

    def convert(im):
        if mode in ("I", "F", "I;16S") or mode.startswith("I;32"):
            raise DarknetError(f"TIFF of mode {mode} is not read by darknet's OpenCV", name)
        rgb = _by_strips(im, strip)
        # Pillow >= 10 applies the Orientation tag itself while loading (and then drops the tag); older
        # versions leave it to the caller
        return rgb if im.tag_v2.get(_ORIENTATION) != orientation else _orient(rgb, orientation)

    return convert


def _orient(a: np.ndarray, orientation) -> np.ndarray:
    """The TIFF Orientation tag applied as OpenCV applies it (PIL.ImageOps.exif_transpose's transforms)."""
    ops = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
           5: lambda x: x.transpose(1, 0, 2), 6: lambda x: np.rot90(x, -1),
           7: lambda x: np.rot90(x, 2).transpose(1, 0, 2), 8: lambda x: np.rot90(x, 1)}
    op = ops.get(orientation if isinstance(orientation, int) else 1)
    return a if op is None else np.ascontiguousarray(op(a))


def quiet_codec_messages() -> bool:
    """Stop Pillow's libtiff from printing its warnings and errors on stderr (its default handlers do), and
    Pillow's plugins' log records (logging's last-resort handler prints them): the failures still reach
    pydarknet as exceptions, one error line each. Process-wide, so the ``pydarknet`` command calls it, the
    library does not. True when a libtiff was found (Linux: /proc/self/maps)."""
    import ctypes
    import logging

    pil_log = logging.getLogger("PIL")
    if not pil_log.handlers:
        pil_log.addHandler(logging.NullHandler())

    from PIL import _imaging  # noqa: F401 - loads Pillow's codecs

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line and os.path.basename(
                line.split()[-1]).startswith("libtiff")}
    except OSError:
        return False
    done = False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            for setter in (lib.TIFFSetWarningHandler, lib.TIFFSetErrorHandler):
                setter.restype = ctypes.c_void_p
                setter.argtypes = [ctypes.c_void_p]
                setter(None)
            done = True
        except (OSError, AttributeError):
            continue
    return done


# -- pixels --------------------------------------------------------------------------------------------


def _blinn_8x8(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    t = x.astype(np.uint32) * y.astype(np.uint32) + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)


#: rows converted at a time: Pillow's tobytes (behind np.asarray) holds its output twice while it joins it,
#: so a whole 40 Mpx picture would cost 6 more bytes a pixel; strips of about 16 MiB (4 Mpx) cost at most
#: 24 MiB, and leave a photo up to 4 Mpx in one piece (each strip is a crop, a copy: 0.7 ms of kite.jpg's
#: 17.6 ms decode at 4 MiB)
_STRIP_BYTES = 16 << 20


def _by_strips(im, fn) -> np.ndarray:
    """``fn`` (a PIL image -> (h, W, 3) uint8) applied to horizontal strips of ``im``, into one array."""
    w, h = im.size
    rows = max(1, _STRIP_BYTES // max(1, 4 * w))
    if h <= rows:
        return np.ascontiguousarray(fn(im))
    out = np.empty((h, w, 3), np.uint8)
    for y in range(0, h, rows):
        with im.crop((0, y, w, min(h, y + rows))) as part:
            out[y:y + rows] = fn(part)
    return out


def pil_to_rgb8(im) -> np.ndarray:
    """A loaded PIL image -> (H, W, 3) uint8 by stb_image's rules (see the module docstring)."""
    shift = False
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        shift = True
    elif im.mode == "I":  # 32-bit: 16-bit samples widened (PNM, some PNG readers), else values already 0..255
        shift = im.format == "PPM" or (im.getextrema()[1] or 0) > 255
    return _by_strips(im, lambda part: _rgb8(part, shift))


def _rgb8(im, shift16: bool) -> np.ndarray:
    """pil_to_rgb8 of one strip (``shift16``: keep the high byte of 16-bit samples)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit samples: stbi__convert_16_to_8 keeps the high byte (PIL's convert('L') would clip).
        a = np.asarray(im, dtype=np.uint32)
        a = (a >> 8).astype(np.uint8) if shift16 else a.astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "CMYK":
        # stb_image (Adobe CMYK JPEG): R = blinn(C, K) on the stored, inverted samples; Pillow un-inverts.
        raw = 255 - np.asarray(im, dtype=np.uint8)
        k = raw[:, :, 3]
        return np.stack([_blinn_8x8(raw[:, :, i], k) for i in range(3)], axis=2)
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        return np.ascontiguousarray(np.asarray(im.convert("RGBA") if mode == "RGBa" else im)[:, :, :3])
    if mode in ("L", "LA", "La", "1"):
        g = np.asarray(im.convert("L") if mode == "1" else im)  # La (premultiplied): the stored gray
        g = g[:, :, 0] if g.ndim == 3 else g
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("P", "PA"):
        return np.ascontiguousarray(np.asarray(im.convert("RGBA"))[:, :, :3])
    if mode in ("I;16S", "F"):
        raise ValueError(f"unsupported sample format {mode}")
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def to_float_chw(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32 ``v/255.`` (load_image_stb: float divided by a double).

    NOTE: for the 256 possible bytes, float32 ``v/255`` rounds to the same float as darknet's double
    division cast to float (tests/test_image.py checks all of them), so the cheaper float32 division is exact.
    """
    return np.ascontiguousarray(rgb8.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)


def load_image(source: str | os.PathLike | bytes | bytearray | memoryview, name: str | None = None) -> np.ndarray:
    """darknet's load_image_color(path, 0, 0): (3, H, W) float32 in [0, 1]. This is the full-size float copy;
    the preprocessing functions take ``decode_rgb8``'s uint8 image directly and convert only what they read."""
    return to_float_chw(decode_rgb8(source, name))
