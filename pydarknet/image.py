"""Image files -> darknet's pixels: (3, H, W) float32 in [0, 1], as ``load_image_color`` gives them
(``src/image.c`` load_image_stb, which calls stb_image with 3 requested channels).

Decoding is Pillow's, restricted to the formats stb_image reads, with stb's channel rules: grayscale is
replicated to three channels, alpha is dropped without compositing, 16-bit samples keep their high byte,
palettes are expanded, an animation gives its first frame, EXIF orientation is ignored, CMYK JPEGs are
converted with stb's formula. Refusals (missing file, directory, FIFO, unknown format, truncated data,
decompression bomb) are one DarknetError naming the file.
"""
from __future__ import annotations

import os
import stat
import warnings

import numpy as np

from .errors import DarknetError

#: Pillow format names of what stb_image 2.19 reads (JPEG, PNG, BMP, GIF, TGA, PSD, PNM). stb also reads
#: Radiance HDR and Softimage PIC, which Pillow cannot: those are refused with a message saying so.
STB_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "DIB", "GIF", "TGA", "PSD", "PPM", "PBM", "PGM", "PNM"}
_UNSUPPORTED_STB = {b"#?RADIANCE": "Radiance HDR", b"#?RGBE": "Radiance HDR", b"\x53\x80\xf6\x34": "Softimage PIC"}


def _check_regular_file(path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DarknetError("no such image file", path) from None
    except OSError as e:
        raise DarknetError(f"cannot read image: {e.strerror}", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise DarknetError("is a directory, not an image", path)
    if not stat.S_ISREG(st.st_mode):
        raise DarknetError("is not a regular file (a FIFO, socket or device?)", path)


def decode_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 exactly as stb_image's 3-channel load would."""
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    _check_regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombWarning as e:
        raise DarknetError(f"refused: {e}", path) from None
    except Image.DecompressionBombError as e:
        raise DarknetError(f"refused as a decompression bomb: {e}", path) from None
    except UnidentifiedImageError:
        with open(path, "rb") as f:
            head = f.read(16)
        for magic, name in _UNSUPPORTED_STB.items():
            if head.startswith(magic):
                raise DarknetError(f"{name} images are not supported (convert it to PNG)", path) from None
        raise DarknetError("unknown image type (not JPEG, PNG, BMP, GIF, TGA, PSD or PNM)", path) from None
    except OSError as e:
        raise DarknetError(f"cannot decode image: {e}", path) from None
    with im:
        if im.format not in STB_FORMATS:
            raise DarknetError(f"{im.format} images are not read by darknet (use JPEG, PNG, BMP, GIF, TGA, "
                               "PSD or PNM)", path)
        w, h = im.size
        if w * h > Image.MAX_IMAGE_PIXELS:
            raise DarknetError(f"refused: {w}x{h} pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS} "
                               "(a decompression bomb?)", path)
        if w == 0 or h == 0:
            raise DarknetError(f"image has no pixels ({w}x{h})", path)
        try:
            im.seek(0)
            im.load()
            return pil_to_rgb8(im)
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise DarknetError(f"cannot decode image: {e}", path) from None


def _blinn_8x8(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    t = x.astype(np.uint32) * y.astype(np.uint32) + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)


def pil_to_rgb8(im) -> np.ndarray:
    """A loaded PIL image -> (H, W, 3) uint8 by stb_image's rules (see the module docstring)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit samples: stbi__convert_16_to_8 keeps the high byte (PIL's convert('L') would clip).
        a = np.asarray(im, dtype=np.uint32)
        a = (a >> 8).astype(np.uint8) if mode != "I" or a.max(initial=0) > 255 else a.astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "CMYK":
        # stb_image (Adobe CMYK JPEG): R = blinn(C, K) on the stored, inverted samples; Pillow un-inverts.
        raw = 255 - np.asarray(im, dtype=np.uint8)
        k = raw[:, :, 3]
        return np.stack([_blinn_8x8(raw[:, :, i], k) for i in range(3)], axis=2)
    if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        return np.ascontiguousarray(np.asarray(im.convert("RGBA") if mode == "RGBa" else im)[:, :, :3])
    if mode in ("L", "LA", "La", "1"):
        g = np.asarray(im.convert("L") if mode in ("1", "La") else im)
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


def load_image(path: str | os.PathLike) -> np.ndarray:
    """darknet's load_image_color(path, 0, 0): (3, H, W) float32 in [0, 1]."""
    return to_float_chw(decode_rgb8(path))
