"""The fast uint8 preparation path (preprocess._resize_rgb8 and its callers) against the float path it
replaces, bit for bit, on random sizes, windows and memory layouts; and the JPEG structure walk's faster
marker search against the pattern it replaced."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pydarknet import image as I
from pydarknet.image import to_float_chw
from pydarknet.preprocess import (_resize_rgb8, center_crop_image, letterbox_image, resize_image, resize_max,
                                  resize_min)


def _same(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, what
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), what  # the same bits, -0.0 included


def _image(draw, max_side: int = 120) -> np.ndarray:
    ih = draw(st.integers(1, max_side))
    iw = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):  # extremes: 0 and 255 next to each other
        return rng.choice(np.array([0, 1, 254, 255], np.uint8), (ih, iw, 3))
    return rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)


@st.composite
def window_case(draw):
    im8 = _image(draw)
    ih, iw = im8.shape[:2]
    top = draw(st.integers(0, ih - 1))
    left = draw(st.integers(0, iw - 1))
    wh = draw(st.integers(1, ih - top)), draw(st.integers(1, iw - left))
    size = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    return im8, top, left, wh, size


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window_case())
@example((np.full((1, 1, 3), 255, np.uint8), 0, 0, (1, 1), (5, 3)))
@example((np.full((2, 3, 3), 7, np.uint8), 1, 2, (1, 1), (1, 1)))
def test_resize_of_any_window_is_bit_exact(case):
    """Any window of any image to any size: the uint8 path equals resize_image on the float copy of the
    window (the rows reused or not, the last pixel of the buffer read as 4 bytes)."""
    im8, top, left, (ih, iw), (w, h) = case
    want = resize_image(to_float_chw(im8[top:top + ih, left:left + iw]), w, h)
    _same(_resize_rgb8(im8, top, left, ih, iw, w, h), want, f"{im8.shape} [{top}:+{ih}, {left}:+{iw}] -> {w}x{h}")


@st.composite
def layout_case(draw):
    """A uint8 (H, W, 3) image in a layout other than a fresh C-ordered array."""
    im8 = _image(draw, 60)
    kind = draw(st.sampled_from(["flipped", "strided", "transposed", "readonly", "channels-of-4"]))
    if kind == "flipped":
        im = im8[::-1, ::-1]
    elif kind == "strided":
        im = im8[::2, ::3]
    elif kind == "transposed":
        im = im8.transpose(1, 0, 2)
    elif kind == "readonly":
        im = np.frombuffer(im8.tobytes(), np.uint8).reshape(im8.shape)
    else:
        im = np.dstack([im8, np.zeros(im8.shape[:2], np.uint8)])[:, :, :3]
    return im, (draw(st.integers(1, 80)), draw(st.integers(1, 80)))


@settings(max_examples=200, deadline=None)
@given(layout_case())
def test_every_preprocessing_takes_any_memory_layout(case):
    im, (w, h) = case
    f = to_float_chw(np.ascontiguousarray(im))
    for name, fn, args in (("resize", resize_image, (w, h)), ("letterbox", letterbox_image, (w, h)),
                           ("center_crop", center_crop_image, (w, h)), ("resize_min", resize_min, (min(w, h),)),
                           ("resize_max", resize_max, (max(w, h),))):
        _same(fn(im, *args), fn(f, *args), name)


def test_out_writes_into_a_view_and_returns_it():
    rng = np.random.default_rng(0)
    im8 = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    canvas = np.full((3, 40, 40), 0.5, np.float32)
    view = canvas[:, 5:35, 3:33]
    got = _resize_rgb8(im8, 0, 0, 50, 70, 30, 30, out=view)
    assert got is view
    _same(canvas[:, 5:35, 3:33].copy(), resize_image(to_float_chw(im8), 30, 30))
    assert np.all(canvas[:, :5] == 0.5) and np.all(canvas[:, :, :3] == 0.5)


def test_plans_are_cached_and_read_only():
    from pydarknet.preprocess import _plan

    a, b = _plan(576, 768, 224, 168), _plan(576, 768, 224, 168)
    assert a is b
    for arr in a:
        if isinstance(arr, np.ndarray):
            with pytest.raises(ValueError):
                arr[...] = 0


@pytest.mark.parametrize("ih,iw,w,h", [(576, 768, 224, 168), (28, 28, 224, 224), (900, 1352, 224, 149),
                                       (1, 500, 224, 224), (500, 1, 224, 224), (3, 2, 1, 1)])
def test_downscale_and_upscale_plans(ih, iw, w, h):
    """Both ways of ordering the x pass's rows (each output row's two rows in turn, or each source row
    once then gathered) give darknet's numbers."""
    im8 = np.random.default_rng(ih * iw).integers(0, 256, (ih, iw, 3), dtype=np.uint8)
    _same(resize_image(im8, w, h), resize_image(to_float_chw(im8), w, h))


# -- the JPEG walk's marker search -------------------------------------------------------------------------


_OLD_SCAN_END = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300).map(lambda b: bytes(0xFF if x % 3 == 0 else x for x in b)),
       st.integers(0, 40), st.sampled_from([1, 2, 3, 7, 64]))
def test_scan_end_search_matches_the_old_pattern(data, pos, block):
    """The literal-led pattern finds the same end as the old one, across block boundaries too (a run of
    0xFF cut by a block is carried over)."""
    f = io.BytesIO(data)
    assert I._find(f, pos, len(data), I._SCAN_END, block) == I._find(f, pos, len(data), _OLD_SCAN_END, block)


# -- decoding threads beside the network ---------------------------------------------------------------------


def test_several_decoding_threads_keep_the_order(tmp_path):
    import threading

    from PIL import Image

    from pydarknet import pipeline

    rng = np.random.default_rng(7)
    paths = []
    for i in range(24):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (9 + i, 13, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    names: set = set()

    def fn(im):
        names.add(threading.current_thread().name)
        return letterbox_image(im, 16, 12)

    want = [letterbox_image(to_float_chw(I.decode_rgb8(p)), 16, 12) for p in paths]
    got = list(pipeline.prepared_images(paths, fn, threads=3))
    assert [g[1] for g in got] == paths  # in order, whichever thread decoded
    for (_, _, arr, err), w in zip(got, want):
        assert err is None
        _same(arr, w)
    assert 1 <= len(names) <= 3 and all(n.startswith("pydarknet-decode") for n in names)
    names.clear()
    list(pipeline.prepared_images(paths, fn))  # the default: one thread
    assert len(names) == 1


def test_ordered_map_keeps_order_bounds_and_raises_in_place():
    import threading
    import time

    from pydarknet import pipeline

    started = []

    def slow_square(x):
        started.append(x)
        time.sleep(0.002 * ((7 * x) % 5))  # finish out of order
        if x == 13:
            raise ValueError("thirteen")
        return x * x, threading.current_thread().name

    it = pipeline.ordered_map(slow_square, range(20), threads=3, ahead=4, name="pd-test")
    got = [next(it) for _ in range(13)]
    assert [g[0] for g in got] == [x * x for x in range(13)]
    assert all(g[1].startswith("pd-test") for g in got)
    assert len(started) <= 13 + 4
    with pytest.raises(ValueError, match="thirteen"):
        next(it)


def test_inference_calls_policy(monkeypatch):
    from pydarknet import pipeline

    monkeypatch.setattr(pipeline, "cpu_count", lambda: 2)
    assert pipeline.default_inference_calls(0.98, workers=0) == 2
    assert pipeline.default_inference_calls(5.58, workers=0) == 1
    assert pipeline.default_inference_calls(0.98, workers=2) == 1
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 1)
    assert pipeline.default_inference_calls(0.98, workers=0) == 1
