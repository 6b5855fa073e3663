"""The Python API, in the spirit of timm: ``pydarknet.load("tiny")`` or ``pydarknet.load(cfg, weights)``
returns a ``Classifier``; ``Classifier.predict`` takes paths, encoded image bytes, PIL images, arrays or tensors.

>>> import pydarknet
>>> clf = pydarknet.load(pydarknet.zoo_cfg("tiny"), None)      # a cfg, random weights
>>> preds = clf.predict(torch.rand(3, 300, 200), top=3)        # doctest: +SKIP
>>> preds[0]                                                   # doctest: +SKIP
Prediction(index=372, name='power drill', prob=0.0021)
>>> clf.model                                                  # the torch.nn.Module  # doctest: +SKIP

The classifier's names, class order and preprocessing come from the model's facts (``pydarknet.model``),
whichever way the model was named, unless ``names=``/``preprocess=``/``data=`` say otherwise.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import numpy as np

from .errors import DarknetError, DarknetWarning
from .image import decode_rgb8, pil_to_rgb8, to_float_chw
from .model import Model, Preprocessing, Resolved, looks_like_cfg, resolve, resolve_model
from .predict import Prediction, rank

__all__ = ["Classifier", "as_chw", "as_pixels", "list_models", "load", "looks_like_cfg"]


class Classifier:
    """A darknet classifier: the network, its class names and order, and its preprocessing.

    ``model`` is the trainable ``torch.nn.Module`` (``pydarknet.Network``); ``names[i]`` names class i;
    ``preprocess`` is how an image is brought to the network's size (``Preprocessing``: darknet's letterbox
    as ``classifier predict`` does, or the centre crop ``classifier valid`` uses, and any normalisation).
    Inference runs on a fast engine built from ``model``'s parameters, rebuilt when they change
    (``load_state_dict``, ``.to()``, in-place edits; after writes through ``.data`` call ``refresh()``)."""

    def __init__(self, model, resolved: Resolved, *, device: str = "cpu", precision: str = "fp32",
                 source: Model | None = None):
        self.model = model.to(device)
        self.resolved = resolved
        self.device = device
        self.precision = precision
        self.source = source
        self._engine = None
        self._loaded_version = model.state_version()
        from .engines import engine_for_precision

        engine_for_precision(precision)
        if precision == "bf16":
            from .engines.torch_infer import bf16_support

            if (why := bf16_support(self.model.device)) is not None:
                raise DarknetError(f"precision bf16: {why}")
        if precision == "int8" and (source is None or not source.weights):
            raise DarknetError("precision int8 needs the weights file the int8 artifact was made from "
                               "(pydarknet quantize DATA CFG WEIGHTS --calibrate LIST)")

    @property
    def names(self) -> list[str]:
        return self.resolved.names

    @property
    def preprocess(self) -> Preprocessing:
        return self.resolved.preprocess

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the network takes."""
        c, h, w = self.model.spec.input_shape
        return w, h

    @property
    def engine(self):
        """The inference engine for the model's current parameters: a ``TorchEngine`` (fp32, bf16), or for
        int8 the ``OrtEngine`` on the artifact ``pydarknet quantize`` wrote beside the weights (which holds
        the weights as they were loaded: editing ``model`` afterwards is an error at the next inference)."""
        if self.precision == "int8":
            if self.model.state_version() != self._loaded_version:
                raise DarknetError("the model's parameters changed since it was loaded, and its int8 artifact holds "
                                   "the old ones: save the weights and run pydarknet quantize again",
                                   self.source.weights)
            if self._engine is None:
                self.refresh()
            return self._engine
        if self._engine is None or self._engine.is_stale() or str(self._engine.device) != str(self.model.device):
            self.refresh()
        return self._engine

    def refresh(self) -> None:
        """Rebuild the inference engine from the model's parameters as they are now."""
        from .engines import open_engine
        from .engines.torch_infer import TorchEngine

        if self._engine is not None:
            self._engine.close()
        if self.precision == "int8":
            c, h, w = self.model.spec.input_shape
            self._engine = open_engine(self.source.cfg, self.source.weights, engine="onnxruntime", precision="int8",
                                       width=w, height=h)
        else:
            self._engine = TorchEngine.from_network(self.model, precision=self.precision)

    def prepare(self, image: Any) -> np.ndarray:
        """One image (see ``as_chw`` for the forms taken) -> (3, H, W) float32 at the network's size,
        preprocessed as the model expects. Files, bytes, PIL images and uint8 arrays are preprocessed from
        their uint8 pixels (no full-size float copy; the same numbers as from ``as_chw``'s floats)."""
        from .preprocess import float_chw, image_hw

        pixels = as_pixels(image)
        w, h = self.input_size
        pre = self.preprocess
        if tuple(image_hw(pixels)) == (h, w) and pre.resize != "center_crop":
            return pre.normalize(float_chw(pixels))
        return pre(pixels, w, h)

    def probabilities(self, images: Any) -> np.ndarray:
        """(N, classes) network outputs for one image or a list of images, in the classifier's class order."""
        batch = np.stack([self.prepare(im) for im in _as_list(images)])
        return self.resolved.reorder(self.engine.infer(batch))

    def predict(self, images: Any, top: int = 5) -> list[Prediction] | list[list[Prediction]]:
        """Top-``top`` predictions for one image (a list of Prediction) or a list of images (a list of lists).

        >>> clf.predict("data/dog.jpg", top=1)                       # doctest: +SKIP
        [Prediction(index=235, name='malamute', prob=0.19)]
        """
        single = not isinstance(images, (list, tuple)) and not _is_batch(images)
        out = [rank(p, self.names, top) for p in self.probabilities(images)]
        return out[0] if single else out

    def __repr__(self) -> str:
        w, h = self.input_size
        return (f"Classifier({os.path.basename(self.model.spec.path)}, {w}x{h}, {len(self.names)} classes, "
                f"preprocess={self.preprocess.resize!r}, device={self.device!r}, precision={self.precision!r})")


def _is_batch(x: Any) -> bool:
    return hasattr(x, "ndim") and x.ndim == 4


def _as_list(images: Any) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    if _is_batch(images):
        return [images[i] for i in range(images.shape[0])]
    return [images]


def _is_pil(x: Any) -> bool:
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def as_pixels(image: Any) -> np.ndarray:
    """Any supported image form -> its pixels as the preprocessing takes them: (H, W, 3) uint8 for encoded
    images and 8-bit arrays, (3, H, W) float32 for float images. The forms:

    * a path (``str``/``os.PathLike``) or the bytes of an image file (``bytes``, ``bytearray``,
      ``memoryview``), decoded as ``pydarknet.image.decode_rgb8`` does (darknet's rules, its limits);
    * a PIL image;
    * a uint8 NumPy array, HWC (``(H, W)``, ``(H, W, 1|3|4)``; alpha dropped), as Pillow and OpenCV give them
      (mind OpenCV's BGR order);
    * a uint8 torch tensor, CHW (``(1|3|4, H, W)``; as torchvision's ``read_image`` gives it), or HW;
    * a float array or tensor, CHW (``(1|3, H, W)``) in [0, 1]: darknet's own form. Pixels above 1 (a 0..255
      image passed as floats) draw a warning.
    """
    if isinstance(image, (str, os.PathLike)):
        return decode_rgb8(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_rgb8(image)
    if _is_pil(image):
        image.load()
        return pil_to_rgb8(image)
    is_tensor = hasattr(image, "detach")
    if is_tensor:  # torch tensor
        image = image.detach().cpu()
        image = (image.float() if image.dtype.is_floating_point else image).numpy()  # bfloat16 has no NumPy twin
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.dtype.kind == "f":
        a = a.astype(np.float32)
        _warn_above_one(a)
        return np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a
    if a.dtype == np.uint8 and is_tensor and a.ndim == 3 and a.shape[0] in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # CHW -> HWC: a view; the pixels are gathered as the resize reads them
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)):
        if a.dtype != np.uint8:
            raise ValueError("HWC arrays must be uint8 (0..255); float images must be CHW in [0, 1]")
        a = a[:, :, None] if a.ndim == 2 else a
        return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3])
    raise ValueError(f"cannot interpret an array of shape {a.shape} and dtype {a.dtype} as an image")


def _warn_above_one(a: np.ndarray) -> None:
    top = float(a.max(initial=0.0))
    if top > 1.0:
        warnings.warn(f"float image pixels go up to {top:g}: darknet takes floats in [0, 1] (divide a 0..255 "
                      "image by 255, or pass it as uint8)", DarknetWarning, stacklevel=3)


def as_chw(image: Any) -> np.ndarray:
    """Any supported image form (see ``as_pixels``) -> (3, H, W) float32 in [0, 1] (darknet's
    load_image_color: ``v/255`` of the uint8 pixels). A full-size float copy: ``Classifier.prepare``
    preprocesses from the uint8 pixels instead."""
    pixels = as_pixels(image)
    return to_float_chw(pixels) if pixels.dtype == np.uint8 else pixels


def load(model: str | os.PathLike, weights: str | os.PathLike | None = None, *,
         names: str | os.PathLike | Sequence[str] | None = None, data: str | os.PathLike | None = None,
         preprocess: str | Preprocessing | None = None, device: str = "cpu", precision: str = "fp32",
         mirrors: Sequence[str] = (), offline: bool = False, progress: bool = True,
         max_memory: int | str | None = None) -> Classifier:
    """A ready classifier from a zoo name (weights downloaded and verified on first use) or a cfg path.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. ``precision``: ``fp32`` (darknet's numbers within
    1e-5), ``bf16`` (oneDNN's bfloat16 kernels where the CPU has them, or CUDA; refused elsewhere) or ``int8``
    (the artifact ``pydarknet quantize`` wrote beside the weights, on ONNX Runtime). ``max_memory``: the memory budget the network is
    checked against before anything is allocated (bytes or ``"8G"``; default: ``pydarknet.budget``'s).

    Names, class order and preprocessing: ``names``/``preprocess`` > ``data`` (a darknet .data file) > the
    model's facts (its zoo entry, or the sidecar beside its weights) > darknet's default.

    >>> clf = pydarknet.load("tiny")                                    # doctest: +SKIP
    >>> clf = pydarknet.load("my.cfg", "my.weights", names="my.names")  # doctest: +SKIP
    """
    from . import budget
    from .datacfg import read_data_cfg
    from .engines import resolve_device
    from .engines.network import load_network

    device = resolve_device(device)
    m = resolve_model(model, weights, mirrors=mirrors, offline=offline, progress=progress)
    previous = budget._explicit
    try:
        if max_memory is not None:
            budget.set_max_memory(max_memory)
        net = load_network(m.cfg, m.weights)
    finally:
        budget.set_max_memory(previous)
    data_cfg = read_data_cfg(data) if data is not None else None
    resolved = resolve(m, net.spec, data_cfg, names=names, preprocess=preprocess)
    return Classifier(net, resolved, device=device, precision=precision, source=m)


def list_models() -> list[str]:
    """Names accepted by ``load`` (the zoo)."""
    from . import zoo

    return zoo.list_models()
