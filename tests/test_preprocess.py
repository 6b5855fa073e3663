"""darknet's image geometry: bit-exact against the goldens (stb-decoded pixels) and the live libdarknet."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import GOLDEN, ZOO_CFG, golden_array
from cdarknet import CDarknet, find_library
from pydarknet.image import load_image
from pydarknet.preprocess import (center_crop_image, crop_image, letterbox_image, resize_image, resize_max,
                                  resize_min)


def digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()


def test_every_golden_input_is_bit_exact(manifest):
    images = {k: load_image(GOLDEN / v["decoded"]) for k, v in manifest["images"].items()}
    n = 0
    for case in manifest["cases"]:
        im = images[case["image"]]
        w, h = case["net_w"], case["net_h"]
        assert digest(letterbox_image(im, w, h)) == case["in_predict_sha256"], (case["model"], case["image"])
        assert digest(center_crop_image(im, w, h)) == case["in_valid_sha256"], (case["model"], case["image"])
        n += 2
    assert n == 70


def test_stored_input_tensors_equal(manifest):
    for case in manifest["cases"]:
        for mode, fn in (("predict", letterbox_image), ("valid", center_crop_image)):
            if f"in_{mode}" in case["files"]:
                im = load_image(GOLDEN / manifest["images"][case["image"]]["decoded"])
                want = golden_array(case["files"][f"in_{mode}"])
                assert np.array_equal(fn(im, case["net_w"], case["net_h"]), want)


def test_degenerate_geometry_gives_no_nan():
    """A 1000x5 image letterboxed to 224x224 collapses to one row: darknet divides by zero (NaN)."""
    im = np.random.default_rng(0).random((3, 5, 1000), dtype=np.float32)
    out = letterbox_image(im, 224, 224)
    assert np.isfinite(out).all()
    assert np.all(out[:, :111] == 0.5) and np.all(out[:, 112:] == 0.5)  # one image row, grey elsewhere
    assert np.allclose(out[:, 111, 0], im[:, 0, 0])
    for w, h in ((1, 1), (224, 1), (1, 224), (3, 2)):
        assert np.isfinite(resize_image(im, w, h)).all()
    tiny = np.random.default_rng(1).random((3, 1, 1), dtype=np.float32)
    assert np.array_equal(letterbox_image(tiny, 4, 4), np.broadcast_to(tiny, (3, 4, 4)))
    flat = np.random.default_rng(2).random((3, 2, 1000), dtype=np.float32)  # collapses to zero rows
    assert np.all(letterbox_image(flat, 224, 224) == 0.5)


def test_resize_identity_and_helpers():
    im = np.random.default_rng(3).random((3, 6, 8), dtype=np.float32)
    assert np.array_equal(resize_image(im, 8, 6), im)
    assert resize_min(im, 3).shape == (3, 3, 4)
    assert resize_max(im, 4).shape == (3, 3, 4)
    assert resize_min(im, 6) is im
    c = crop_image(im, -1, 4, 3, 3)  # outside positions repeat the border
    assert np.array_equal(c[:, :, 0], im[:, [4, 5, 5], 0])


SIZES = [(1, 1), (7, 5), (5, 7), (640, 424), (13, 300), (300, 13), (2, 2), (1000, 60), (17, 1), (1, 17)]


def same_as_darknet(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return np.array_equal(ours, theirs)


def one_row(h: int, w: int, tw: int, th: int, how: str) -> bool:
    """Would darknet resize to a single row? It divides by zero there and reads out of bounds (NaN or a
    crash), so those cases are left to test_degenerate_geometry_gives_no_nan."""
    if how == "letterbox_image":
        th = th if tw / w >= th / h else (h * tw) // w
    elif how == "resize_min":
        th = tw if w >= h else (h * tw) // w
    elif how == "resize_max":
        th = tw if w <= h else (h * tw) // w
    return th == 1


@pytest.mark.skipif(find_library() is None, reason="C darknet (libdarknet.so) not installed")
def test_geometry_bit_exact_with_live_darknet():
    rng = np.random.default_rng(4)
    dk = CDarknet(str(ZOO_CFG / "tiny.cfg"), None)
    checked = 0
    try:
        for w, h in SIZES:
            im = rng.random((3, h, w), dtype=np.float32)
            for tw, th in ((224, 224), (227, 227), (256, 200), (31, 64), (1, 40)):
                for name, fn in (("letterbox_image", letterbox_image), ("resize_image", resize_image),
                                 ("center_crop_image", center_crop_image)):
                    if one_row(h, w, tw, th, name):
                        continue
                    checked += 1
                    assert same_as_darknet(fn(im, tw, th), dk.image_op(name, im, tw, th)), (name, w, h, tw, th)
            for m in (32, 224, 257):
                for name, fn in (("resize_min", resize_min), ("resize_max", resize_max)):
                    if not one_row(h, w, m, m, name):
                        checked += 1
                        assert same_as_darknet(fn(im, m), dk.image_op(name, im, m)), (name, w, h, m)
            assert np.array_equal(crop_image(im, 1, -2, 9, 4), dk.image_op("crop_image", im, 1, -2, 9, 4))
    finally:
        dk.close()
    assert checked > 150
