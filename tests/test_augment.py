"""Training augmentation against libdarknet's own functions (rotate_crop_image, rgb_to_hsv, hsv_to_rgb,
distort_image), and the random draws' ranges."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from pydarknet.augment import (augment, distort_image, hsv_to_rgb, rand_scale, rgb_to_hsv, rotate_crop_image)
from cdarknet import _Image, find_library

need_lib = pytest.mark.skipif(find_library() is None, reason="C darknet (libdarknet.so) not installed")


def _lib():
    lib = ctypes.CDLL(find_library())
    lib.rotate_crop_image.restype = _Image
    lib.rotate_crop_image.argtypes = [_Image, ctypes.c_float, ctypes.c_float, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_float, ctypes.c_float, ctypes.c_float]
    for name in ("rgb_to_hsv", "hsv_to_rgb"):
        getattr(lib, name).argtypes = [_Image]
    lib.distort_image.argtypes = [_Image, ctypes.c_float, ctypes.c_float, ctypes.c_float]
    return lib


def _img(a):
    c, h, w = a.shape
    return _Image(w, h, c, a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))


def _arr(im):
    return np.ctypeslib.as_array(im.data, shape=(im.c, im.h, im.w)).copy()


@need_lib
@pytest.mark.parametrize("rad,s,w,h,dx,dy,aspect", [(0.0, 1.0, 9, 7, 0.0, 0.0, 1.0), (0.1, 1.3, 12, 12, 2.5, -1.5, 0.8),
                                                     (-0.12, 0.7, 16, 10, -3.0, 4.0, 1.25), (0.0, 2.0, 5, 5, 0.0, 0.0, 1.0)])
def test_rotate_crop_matches_darknet(rad, s, w, h, dx, dy, aspect):
    im = np.random.default_rng(0).random((3, 11, 13), dtype=np.float32)
    theirs = _arr(_lib().rotate_crop_image(_img(im), rad, s, w, h, dx, dy, aspect))
    ours = rotate_crop_image(im, np.float32(rad), np.float32(s), w, h, np.float32(dx), np.float32(dy),
                             np.float32(aspect))
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 2e-5  # darknet evaluates the coordinates in float32


@need_lib
def test_hsv_and_distort_match_darknet():
    lib = _lib()
    im = np.random.default_rng(1).random((3, 6, 7), dtype=np.float32)
    im[:, 0, 0] = 0.5  # grey: no hue
    hsv = im.copy()
    lib.rgb_to_hsv(_img(hsv))
    ours = rgb_to_hsv(im)
    grey = np.isnan(hsv)  # darknet's hue of a grey pixel is 0/0; ours is 0 (the hue never matters there)
    assert grey.sum() == 1 and ours[grey][0] == 0
    hsv[grey] = 0
    assert np.abs(ours - hsv).max() < 1e-6
    back = hsv.copy()
    lib.hsv_to_rgb(_img(back))
    assert np.abs(hsv_to_rgb(hsv) - back).max() < 1e-6
    for hue, sat, val in ((0.1, 1.5, 0.7), (-0.2, 0.5, 1.4)):
        theirs = im.copy()
        lib.distort_image(_img(theirs), hue, sat, val)
        assert np.abs(distort_image(im, hue, sat, val) - theirs).max() < 1e-5


def test_identity_settings_change_nothing():
    im = np.random.default_rng(2).random((3, 8, 8), dtype=np.float32)
    assert np.allclose(rotate_crop_image(im, 0.0, 1.0, 8, 8, 0.0, 0.0, 1.0), im)
    assert np.allclose(hsv_to_rgb(rgb_to_hsv(im)), im, atol=1e-6)


def test_random_draws_stay_in_darknets_ranges():
    rng = np.random.default_rng(3)
    scales = [rand_scale(rng, 1.5) for _ in range(2000)]
    assert min(scales) >= 1 / 1.5 - 1e-9 and max(scales) <= 1.5 + 1e-9
    assert 0.3 < np.mean([s > 1 for s in scales]) < 0.7
    im = np.random.default_rng(4).random((3, 40, 60), dtype=np.float32)
    out = [augment(im, rng, size=32, min_crop=32, max_crop=64, angle=7, aspect=0.75, hue=0.1, saturation=0.75,
                   exposure=0.75) for _ in range(20)]
    assert all(o.shape == (3, 32, 32) and o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1 for o in out)
