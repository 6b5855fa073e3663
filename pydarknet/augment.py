"""darknet's training-time augmentation for classifiers (``src/data.c`` load_image_augment_paths,
``src/image.c`` random_augment_image, rotate_crop_image, bilinear_interpolate, random_distort_image), on
(C, H, W) float32 arrays with a NumPy random Generator in place of C's rand(). The image may also be the
decoded (H, W, 3) uint8 array (``image.decode_rgb8``): only the pixels the crop samples are converted to
float, with the same result bit for bit (no full-size float copy)."""
from __future__ import annotations

import numpy as np

from .preprocess import _U8_TO_F32, _is_rgb8, image_hw

F32 = np.float32


def rand_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """rand_uniform (src/utils.c): bounds in either order."""
    if high < low:
        low, high = high, low
    return float(rng.uniform(low, high)) if high > low else low


def rand_scale(rng: np.random.Generator, s: float) -> float:
    """rand_scale (src/utils.c): a factor in [1, s], inverted half of the time."""
    scale = rand_uniform(rng, 1, s)
    return scale if rng.integers(2) else 1.0 / scale


def bilinear_sample(im: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """bilinear_interpolate (src/image.c) at float positions; pixels outside the image count as 0
    (get_pixel_extend). A zero border around the image stands for everything outside it. From uint8 (H, W, 3)
    the border is added in uint8 and only the four taps read are converted (the same floats as ``v/255``)."""
    if _is_rgb8(im):
        h, w = im.shape[:2]
        pad8 = np.zeros((h + 2, w + 2, 3), np.uint8)
        pad8[1:-1, 1:-1] = im

        def at(yy, xx):
            return _U8_TO_F32[pad8[yy, xx]].transpose(2, 0, 1)
    else:
        c, h, w = im.shape
        pad = np.zeros((c, h + 2, w + 2), F32)
        pad[:, 1:-1, 1:-1] = im

        def at(yy, xx):
            return pad[:, yy, xx]
    fx, fy = np.floor(x), np.floor(y)
    dx, dy = (x - fx).astype(F32), (y - fy).astype(F32)
    x0 = np.clip(fx + 1, 0, w + 1).astype(np.intp)
    y0 = np.clip(fy + 1, 0, h + 1).astype(np.intp)
    x1 = np.clip(fx + 2, 0, w + 1).astype(np.intp)
    y1 = np.clip(fy + 2, 0, h + 1).astype(np.intp)
    return ((1 - dy) * ((1 - dx) * at(y0, x0) + dx * at(y0, x1))
            + dy * ((1 - dx) * at(y1, x0) + dx * at(y1, x1))).astype(F32)


def rotate_crop_image(im: np.ndarray, rad: float, s: float, w: int, h: int, dx: float, dy: float,
                      aspect: float) -> np.ndarray:
    """rotate_crop_image (src/image.c): a w x h view rotated by ``rad``, scaled by ``s``, shifted (dx, dy)."""
    ih, iw = image_hw(im)
    cx, cy = iw / 2.0, ih / 2.0
    xs = ((np.arange(w) - w / 2.0) / s * aspect + dx / s * aspect)[None, :]
    ys = ((np.arange(h) - h / 2.0) / s + dy / s)[:, None]
    cos, sin = np.cos(rad), np.sin(rad)
    rx = cos * xs - sin * ys + cx
    ry = sin * xs + cos * ys + cy
    return bilinear_sample(im, rx, ry)


def random_augment_image(im: np.ndarray, rng: np.random.Generator, angle: float, aspect: float, low: int,
                         high: int, size: int) -> np.ndarray:
    """random_augment_image (src/image.c): random aspect, a random shorter side in [low, high], a random
    rotation within +-angle degrees and a random offset, cropped to size x size."""
    ih, iw = image_hw(im)
    aspect = rand_scale(rng, aspect)
    r = int(rng.integers(low, high + 1)) if high > low else low
    shorter = min(ih, iw * aspect)
    scale = r / shorter
    rad = rand_uniform(rng, -angle, angle) * 2 * np.pi / 360.0
    dx = (iw * scale / aspect - size) / 2.0
    dy = (ih * scale - size) / 2.0
    dx = rand_uniform(rng, -dx, dx)
    dy = rand_uniform(rng, -dy, dy)
    return rotate_crop_image(im, rad, scale, size, size, dx, dy, aspect)


def rgb_to_hsv(im: np.ndarray) -> np.ndarray:
    """rgb_to_hsv (src/image.c): h in [0, 1), s, v in [0, 1]."""
    r, g, b = im
    mx, mn = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    delta = mx - mn
    v = mx
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1), 0)
    safe = np.where(delta > 0, delta, 1)
    h = np.where(r == mx, (g - b) / safe, np.where(g == mx, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = np.where(delta > 0, h, 0)
    h = np.where(h < 0, h + 6, h) / 6
    return np.stack([h, s, v]).astype(F32)


def hsv_to_rgb(im: np.ndarray) -> np.ndarray:
    """hsv_to_rgb (src/image.c)."""
    h, s, v = im
    h6 = h * 6
    index = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    r = np.choose(index, choices_r)
    g = np.choose(index, choices_g)
    b = np.choose(index, choices_b)
    gray = s == 0
    return np.stack([np.where(gray, v, r), np.where(gray, v, g), np.where(gray, v, b)]).astype(F32)


def distort_image(im: np.ndarray, hue: float, sat: float, val: float) -> np.ndarray:
    """distort_image (src/image.c): shift hue (wrapping), scale saturation and value, clip to [0, 1]."""
    hsv = rgb_to_hsv(im)
    hsv[1] *= sat
    hsv[2] *= val
    hsv[0] += hue
    hsv[0] = np.where(hsv[0] > 1, hsv[0] - 1, np.where(hsv[0] < 0, hsv[0] + 1, hsv[0]))
    return np.clip(hsv_to_rgb(hsv), 0, 1)


def random_distort_image(im: np.ndarray, rng: np.random.Generator, hue: float, saturation: float,
                         exposure: float) -> np.ndarray:
    """random_distort_image (src/image.c)."""
    dhue = rand_uniform(rng, -hue, hue)
    dsat = rand_scale(rng, saturation)
    dexp = rand_scale(rng, exposure)
    if dhue == 0 and dsat == 1 and dexp == 1:
        return im
    return distort_image(im, dhue, dsat, dexp)


def augment(im: np.ndarray, rng: np.random.Generator, *, size: int, min_crop: int, max_crop: int, angle: float,
            aspect: float, hue: float, saturation: float, exposure: float, center: bool = False) -> np.ndarray:
    """One training image as load_image_augment_paths makes it: crop (random or centred), random flip,
    random colour distortion."""
    if center:
        from .preprocess import center_crop_image

        crop = center_crop_image(im, size, size)
    else:
        crop = random_augment_image(im, rng, angle, aspect, min_crop, max_crop, size)
    if rng.integers(2):
        crop = crop[:, :, ::-1]
    return np.ascontiguousarray(random_distort_image(crop, rng, hue, saturation, exposure), dtype=F32)
