"""darknet's image geometry, one function per C function in ``src/image.c``, on (C, H, W) float32 arrays.

Bit-exact with darknet: the same float32 operations in the same order (NumPy float32 arithmetic is IEEE
single precision, as darknet's). Where darknet's arithmetic breaks down (resizing to a single row divides
by zero and yields NaN), we take the limit it was meant to have and say so in a NOTE.
"""
from __future__ import annotations

import functools

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


@functools.lru_cache(maxsize=256)
def _plan(ih: int, iw: int, w: int, h: int) -> tuple:
    """resize_image's taps for ``iw`` x ``ih`` -> ``w`` x ``h`` as the uint8 path uses them (cached: a list of
    photos repeats a few sizes, and a plan costs a few dozen small-array operations):

    - ``rows``: the source rows the y pass reads, in the order the x pass computes them; ``y0``, ``y1``: where
      each output row's two rows sit among them (slices when ``rows`` is ``iy`` then ``iy + 1``: a downscale,
      where few rows are read twice; else index arrays into the distinct rows, computed once each);
    - ``cols``: the two source columns of each output column (``ix0``, then ``ix1``);
    - weights: ``wx`` (2w, 1) on those columns, ``(1-dx, dx)`` (1 and 0 where the output column copies the
      last source column); ``wy0``, ``wy1`` (h,) for the y pass (``dy`` 0 on the row with no second tap).

    The weights 1 and 0 keep darknet's arithmetic: ``1*a + 0*b == a`` and ``p + 0*q == p`` exactly in float32
    for the finite non-negative pixels here, so one formula covers the copied last column, the last row, and
    1-pixel sources."""
    ix0, ix1, dx, last_col = _x_taps(iw, w)
    wx = np.concatenate([np.where(last_col, F32(1), F32(1) - dx), np.where(last_col, F32(0), dx)]).astype(F32)
    iy, dy, _ = _axis_weights(ih, h)
    iy = np.minimum(iy, ih - 1)
    second = np.arange(h) != h - 1
    if ih == 1:
        second[:] = False
    iy1 = np.where(second, np.minimum(iy + 1, ih - 1), iy)
    wy0 = (F32(1) - dy).astype(F32)
    wy1 = np.where(second, dy, F32(0)).astype(F32)
    need = np.unique(np.concatenate([iy, iy1]))
    if 2 * h <= len(need) + len(need) // 4:
        rows, y0, y1 = np.concatenate([iy, iy1]), slice(0, h), slice(h, 2 * h)
    else:
        rows, y0, y1 = need, np.searchsorted(need, iy), np.searchsorted(need, iy1)
    plan = (rows, y0, y1, np.concatenate([ix0, ix1]), wx[:, None], wy0, wy1)
    for a in plan:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return plan


def _resize_rgb8(im8: np.ndarray, top: int, left: int, ih: int, iw: int, w: int, h: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """resize_image of the window ``im8[top:top+ih, left:left+iw]`` of a uint8 (H, W, 3) image to (3, h, w)
    float32, bit-exact with ``resize_image(to_float_chw(window))``, converting only the pixels it reads.

    Steps (``_plan`` has the taps): copy the source rows the y pass reads (whole rows: a memcpy each) into one
    buffer with a spare byte at its end, so each pixel can be read as 4 bytes (a uint32 view at a 3-byte
    stride; the 4th byte is the next pixel's, ignored); gather each output column's two source pixels as
    uint32 (a third of the items of a byte gather); convert those bytes, ``v/255`` in float32 as to_float_chw
    does; then resize_image's float32 operations in its order, x pass then y pass. The work is done transposed,
    (channel, column, row): NumPy's column gather comes out in that order, so the conversion reads memory in
    order, and the result is transposed as the last addition writes it.
    ``out``: a (3, h, w) float32 array (a view: the letterbox canvas) to write the result into."""
    if w <= 0 or h <= 0:
        return np.zeros((3, max(h, 0), max(w, 0)), F32)
    rows, y0, y1, cols, wx, wy0, wy1 = _plan(ih, iw, w, h)
    n, width = len(rows), im8.shape[1]
    buf = np.empty(n * width * 3 + 1, np.uint8)
    band = buf[:-1].reshape(n, width, 3)  # (n, W, 3): the rows read, whole
    if im8.flags.c_contiguous:
        np.take(im8, rows + top if top else rows, axis=0, out=band)
    else:
        band[...] = im8[rows + top]
    pixels = np.ndarray((n, width), np.uint32, buffer=buf, strides=(width * 3, 3))  # 4 bytes at each pixel
    # a[:, idx] gathers column by column (a Fortran-ordered result): its transpose is C-ordered
    picked = pixels[:, cols + left if left else cols].T.view(np.uint8).reshape(2 * w, n, 4)  # (2w, n, RGB+1)
    f = np.empty((3, 2 * w, n), F32)
    np.divide(picked[:, :, :3].transpose(2, 0, 1), F32(255), out=f, dtype=F32)  # to_float_chw's v/255
    np.multiply(f, wx, out=f)  # pass 1 (x): (1-dx)*im[ix] + dx*im[ix+1], (3, w, n)
    part = np.add(f[:, :w], f[:, w:], out=f[:, :w])
    if isinstance(y0, slice):
        top_rows, low_rows = part[:, :, y0], part[:, :, y1]  # (3, w, h) each: views of part
    else:  # gathered copies
        top_rows, low_rows = np.take(part, y0, axis=2), np.take(part, y1, axis=2)
    np.multiply(top_rows, wy0, out=top_rows)  # pass 2 (y): (1-dy)*part[iy] + dy*part[iy+1]
    np.multiply(low_rows, wy1, out=low_rows)
    out = np.empty((3, h, w), F32) if out is None else out
    np.add(top_rows, low_rows, out=out.transpose(0, 2, 1))
    return out


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's two-pass bilinear resize to ``w`` x ``h``.

    ``im`` is (C, H, W) float, or the decoded (H, W, 3) uint8 (``image.decode_rgb8``): then only the pixels
    the resize reads are converted (no full-size float copy), with the same result bit for bit.

    NOTE: matches resize_image (src/image.c): first along x, where the last column copies the source's
    last column; then along y as ``(1-dy)*row[iy]`` plus ``dy*row[iy+1]`` except on the last row. Not PIL's
    or OpenCV's bilinear (those sample at pixel centres).
    """
    if _is_rgb8(im):
        return _resize_rgb8(im, 0, 0, im.shape[0], im.shape[1], w, h)
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
    boxed = np.full((c, h, w), LETTERBOX_FILL, F32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    if _is_rgb8(im) and 0 < new_w <= w and 0 < new_h <= h:  # resized straight into the canvas
        _resize_rgb8(im, 0, 0, ih, iw, new_w, new_h, out=boxed[:, dy:dy + new_h, dx:dx + new_w])
    else:
        embed_image(resize_image(im, new_w, new_h), boxed, dx, dy)
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
        return _resize_rgb8(im, (ih - m) // 2, (iw - m) // 2, m, m, w, h)  # the crop: a window, never copied
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
