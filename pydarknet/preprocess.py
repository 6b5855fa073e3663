"""darknet's image geometry, one function per C function in ``src/image.c``, on (C, H, W) float32 arrays.

Bit-exact with darknet: the same float32 operations in the same order (NumPy float32 arithmetic is IEEE
single precision, as darknet's). Where darknet's arithmetic breaks down (resizing to a single row divides
by zero and yields NaN), we take the limit it was meant to have and say so in a NOTE.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source index, fractional weight and 'has a second tap' mask for each output position."""
    # NOTE: darknet computes the scale as (float)(in-1)/(out-1); with out == 1 that is x/0 and the
    # position 0*inf is NaN. We use scale 0 there (position 0, weight 0): the first row/column.
    scale = F32(n_in - 1) / F32(n_out - 1) if n_out > 1 else F32(0)
    pos = np.arange(n_out, dtype=F32) * scale
    idx = pos.astype(np.int64)  # (int) truncation; pos >= 0
    frac = pos - idx.astype(F32)
    return idx, frac, scale


def _x_taps(iw: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """resize_image's first pass (along x) for ``iw`` -> ``w`` columns: the two source columns each output
    column reads, its weight ``dx`` on the second, and the output columns that copy the last source column
    (the last one; every one when ``iw == 1``)."""
    ix, dx, _ = _axis_weights(iw, w)
    last_col = np.arange(w) == w - 1
    if iw == 1:
        last_col[:] = True
    ix0 = np.where(last_col, iw - 1, ix)
    return ix0, np.minimum(ix0 + 1, iw - 1), dx, last_col


#: every byte's float: to_float_chw's ``v / 255`` in float32 (image.to_float_chw), as a lookup table
_U8_TO_F32 = np.arange(256, dtype=F32) / F32(255)


def _is_rgb8(im: np.ndarray) -> bool:
    return im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3


def float_chw(im: np.ndarray) -> np.ndarray:
    """The (C, H, W) float32 image of either form: a decoded (H, W, 3) uint8 image converted (``v/255``, as
    image.to_float_chw), a float image as it is."""
    return _U8_TO_F32[np.ascontiguousarray(im.transpose(2, 0, 1))] if _is_rgb8(im) else im


def image_hw(im: np.ndarray) -> tuple[int, int]:
    """(height, width) of a (C, H, W) float or (H, W, 3) uint8 image."""
    return im.shape[:2] if _is_rgb8(im) else im.shape[1:]


def _resize_rgb8(im8: np.ndarray, rows: np.ndarray, cols: np.ndarray, w: int, h: int) -> np.ndarray:
    """resize_image of the (virtual) image ``im8[rows][:, cols]``, from uint8 (H, W, 3): gathers only the
    rows the second pass reads and, in them, the two columns each output column reads; converts only those
    (``v/255`` in float32, as to_float_chw), then does resize_image's float32 operations in its order (on
    (H, W, C) arrays: the same element-wise operations), so the result is bit-exact with
    ``resize_image(to_float_chw(...))``."""
    ih, iw = len(rows), len(cols)
    if w <= 0 or h <= 0:
        return np.zeros((3, max(h, 0), max(w, 0)), F32)
    ix0, ix1, dx, last_col = _x_taps(iw, w)
    iy, dy, _ = _axis_weights(ih, h)
    iy = np.minimum(iy, ih - 1)
    second = np.arange(h) != h - 1
    if ih == 1:
        second[:] = False
    iy1 = np.minimum(iy + 1, ih - 1)
    need_r = np.unique(np.concatenate([iy, iy1[second]]))
    band = im8[rows[need_r]]  # (r, W, 3) uint8: only the rows read

    def taps(cx):  # the band's columns cx, as floats
        return band[:, cols[cx]].astype(F32) / F32(255)

    part = (F32(1) - dx)[None, :, None] * taps(ix0) + dx[None, :, None] * taps(ix1)
    part[:, last_col] = taps(np.array([iw - 1]))
    r0, r1 = np.searchsorted(need_r, iy), np.searchsorted(need_r, iy1)
    out = (F32(1) - dy)[:, None, None] * part[r0]
    if second.any():
        sel = np.nonzero(second)[0]
        out[sel] += dy[sel][:, None, None] * part[r1[sel]]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def _full(n: int) -> np.ndarray:
    return np.arange(n)


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's two-pass bilinear resize to ``w`` x ``h``.

    ``im`` is (C, H, W) float, or the decoded (H, W, 3) uint8 (``image.decode_rgb8``): then only the pixels
    the resize reads are converted (no full-size float copy), with the same result bit for bit.

    NOTE: matches resize_image (src/image.c): first along x, where the last column copies the source's
    last column; then along y as ``(1-dy)*row[iy]`` plus ``dy*row[iy+1]`` except on the last row. Not PIL's
    or OpenCV's bilinear (those sample at pixel centres).
    """
    if _is_rgb8(im):
        return _resize_rgb8(im, _full(im.shape[0]), _full(im.shape[1]), w, h)
    c, ih, iw = im.shape
    if w <= 0 or h <= 0:
        return np.zeros((c, max(h, 0), max(w, 0)), F32)
    im = im.astype(F32, copy=False)
    # pass 1: along x
    ix0, ix1, dx, last_col = _x_taps(iw, w)
    part = (F32(1) - dx) * im[:, :, ix0] + dx * im[:, :, ix1]
    part[:, :, last_col] = im[:, :, iw - 1: iw]
    # pass 2: along y
    iy, dy, _ = _axis_weights(ih, h)
    iy = np.minimum(iy, ih - 1)
    out = (F32(1) - dy)[None, :, None] * part[:, iy, :]
    second = np.arange(h) != h - 1
    if ih == 1:
        second[:] = False
    if second.any():
        rows = np.nonzero(second)[0]
        out[:, rows, :] += dy[rows][None, :, None] * part[:, np.minimum(iy[rows] + 1, ih - 1), :]
    return out


def embed_image(source: np.ndarray, dest: np.ndarray, dx: int, dy: int) -> None:
    """embed_image (src/image.c): copy ``source`` into ``dest`` at (dx, dy), clipped to ``dest``."""
    _, sh, sw = source.shape
    _, dh, dw = dest.shape
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + sw, dw), min(dy + sh, dh)
    if x1 > x0 and y1 > y0:
        dest[:, y0:y1, x0:x1] = source[:, y0 - dy: y1 - dy, x0 - dx: x1 - dx]


LETTERBOX_FILL = 0.5


def letterbox_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize keeping the aspect ratio, centred on a ``w`` x ``h`` canvas of 0.5 grey.

    NOTE: matches letterbox_image (src/image.c): the new size uses integer division, the fill is .5, and
    the offset is (w-new_w)/2, (h-new_h)/2. What ``classifier predict`` and ``classify`` feed the network.
    Takes (C, H, W) float or (H, W, 3) uint8 (see resize_image).
    """
    c, ih, iw = (3,) + im.shape[:2] if _is_rgb8(im) else im.shape
    if F32(w) / F32(iw) < F32(h) / F32(ih):
        new_w, new_h = w, (ih * w) // iw
    else:
        new_w, new_h = (iw * h) // ih, h
    resized = resize_image(im, new_w, new_h)
    boxed = np.full((c, h, w), LETTERBOX_FILL, F32)
    embed_image(resized, boxed, (w - new_w) // 2, (h - new_h) // 2)
    return boxed


def crop_image(im: np.ndarray, dx: int, dy: int, w: int, h: int) -> np.ndarray:
    """crop_image (src/image.c): a ``w`` x ``h`` window at (dx, dy); outside positions repeat the border."""
    _, ih, iw = im.shape
    rows = np.clip(np.arange(h) + dy, 0, ih - 1)
    cols = np.clip(np.arange(w) + dx, 0, iw - 1)
    return np.ascontiguousarray(im[:, rows][:, :, cols])


def center_crop_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """center_crop_image (src/image.c): the centred square of side min(w, h) of the image, resized to w x h.
    What ``classifier valid`` feeds the network. Takes (C, H, W) float or (H, W, 3) uint8: then the crop is
    index arithmetic and only the pixels the resize reads are converted (bit-exact, see resize_image)."""
    if _is_rgb8(im):
        ih, iw = im.shape[:2]
        m = min(iw, ih)
        rows = np.clip(np.arange(m) + (ih - m) // 2, 0, ih - 1)
        cols = np.clip(np.arange(m) + (iw - m) // 2, 0, iw - 1)
        return _resize_rgb8(im, rows, cols, w, h)
    _, ih, iw = im.shape
    m = min(iw, ih)
    return resize_image(crop_image(im, (iw - m) // 2, (ih - m) // 2, m, m), w, h)


def resize_min(im: np.ndarray, min_side: int) -> np.ndarray:
    """resize_min (src/image.c), on (C, H, W) float or (H, W, 3) uint8: scale so the shorter side is ``min_side`` (integer arithmetic)."""
    h, w = image_hw(im)
    if w < h:
        nh, nw = (h * min_side) // w, min_side
    else:
        nw, nh = (w * min_side) // h, min_side
    if (nw, nh) == (w, h):
        return float_chw(im)
    return resize_image(im, nw, nh)


def resize_max(im: np.ndarray, max_side: int) -> np.ndarray:
    """resize_max (src/image.c), on (C, H, W) float or (H, W, 3) uint8: scale so the longer side is ``max_side`` (integer arithmetic)."""
    h, w = image_hw(im)
    if w > h:
        nh, nw = (h * max_side) // w, max_side
    else:
        nw, nh = (w * max_side) // h, max_side
    if (nw, nh) == (w, h):
        return float_chw(im)
    return resize_image(im, nw, nh)


def flip_image(im: np.ndarray) -> np.ndarray:
    """flip_image (src/image.c): mirror left-right."""
    return np.ascontiguousarray(im[:, :, ::-1])


#: preprocessing name -> function(image, net_w, net_h)
PREPROCESS = {
    "letterbox": letterbox_image,
    "center_crop": center_crop_image,
    "resize": resize_image,
}
