"""ctypes binding to an installed C darknet (``libdarknet.so``, e.g. Debian's ``darknet`` package).

Not part of the pydarknet package (an oracle, not runtime code): the live oracle for conformance tests and the
baseline for benchmarks. ``find_library()`` returns None where no darknet is installed, and callers skip.
"""
from __future__ import annotations

import ctypes
import os
import shutil

import numpy as np

LIBRARY_PATHS = ("/usr/lib/darknet/libdarknet.so", "/usr/local/lib/libdarknet.so", "/usr/lib/libdarknet.so")


class _Image(ctypes.Structure):
    _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_float))]


def find_library() -> str | None:
    env = os.environ.get("PYDARKNET_LIBDARKNET")
    for path in ((env,) if env else ()) + LIBRARY_PATHS:
        if path and os.path.isfile(path):
            return path
    return None


def find_binary() -> str | None:
    """The darknet command (Debian installs /usr/bin/darknet)."""
    return os.environ.get("PYDARKNET_DARKNET_BIN") or shutil.which("darknet")


class CDarknet:
    """A loaded C darknet network. ``predict`` takes a (C, H, W) float32 array in [0, 1]."""

    def __init__(self, cfg: str, weights: str | None, library: str | None = None):
        lib_path = library or find_library()
        if lib_path is None:
            raise RuntimeError("libdarknet.so not found (install Debian's 'darknet' package)")
        lib = ctypes.CDLL(lib_path)
        lib.load_network.restype = ctypes.c_void_p
        lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        lib.set_batch_network.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.network_predict.restype = ctypes.POINTER(ctypes.c_float)
        lib.network_predict.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
        lib.network_outputs.restype = ctypes.c_int
        lib.network_outputs.argtypes = [ctypes.c_void_p]
        lib.network_width.restype = lib.network_height.restype = ctypes.c_int
        lib.network_width.argtypes = lib.network_height.argtypes = [ctypes.c_void_p]
        lib.free_network.argtypes = [ctypes.c_void_p]
        lib.load_image_color.restype = _Image
        lib.load_image_color.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.free_image.argtypes = [_Image]
        self._lib = lib
        self._net = lib.load_network(cfg.encode(), weights.encode() if weights else None, 0)
        lib.set_batch_network(self._net, 1)
        self.outputs = lib.network_outputs(self._net)
        self.width = lib.network_width(self._net)
        self.height = lib.network_height(self._net)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self._lib.network_predict(self._net, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return np.ctypeslib.as_array(out, shape=(self.outputs,)).copy()

    def load_image_color(self, path: str) -> np.ndarray:
        """darknet's own decoding of an image file: (3, H, W) float32 in [0, 1]."""
        im = self._lib.load_image_color(path.encode(), 0, 0)
        try:
            return np.ctypeslib.as_array(im.data, shape=(im.c, im.h, im.w)).copy()
        finally:
            self._lib.free_image(im)

    def image_op(self, name: str, im: np.ndarray, *args: int) -> np.ndarray:
        """Call one of darknet's image functions (resize_image, letterbox_image, center_crop_image,
        resize_min, resize_max, crop_image) on a (C, H, W) float32 array."""
        fn = getattr(self._lib, name)
        fn.restype = _Image
        fn.argtypes = [_Image] + [ctypes.c_int] * len(args)
        src = np.ascontiguousarray(im, dtype=np.float32)
        c, h, w = src.shape
        out = fn(_Image(w, h, c, src.ctypes.data_as(ctypes.POINTER(ctypes.c_float))), *args)
        try:
            if out.w * out.h * out.c == 0:
                return np.zeros((out.c, out.h, out.w), np.float32)
            return np.ctypeslib.as_array(out.data, shape=(out.c, out.h, out.w)).copy()
        finally:
            if ctypes.cast(out.data, ctypes.c_void_p).value != src.ctypes.data:
                self._lib.free_image(out)

    def close(self) -> None:
        if self._net:
            self._lib.free_network(self._net)
            self._net = None

    def __enter__(self) -> "CDarknet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
