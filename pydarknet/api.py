"""The Python API, in the spirit of timm: ``pydarknet.load("tiny")`` or ``pydarknet.load(cfg, weights)``
returns a ``Classifier``; ``Classifier.predict`` takes paths, PIL images, arrays or tensors.

>>> import pydarknet
>>> clf = pydarknet.load(pydarknet.zoo_cfg("tiny"), None)      # a cfg, random weights
>>> preds = clf.predict(torch.rand(3, 300, 200), top=3)        # doctest: +SKIP
>>> preds[0]                                                   # doctest: +SKIP
Prediction(index=372, name='power drill', prob=0.0021)
>>> clf.model                                                  # the torch.nn.Module  # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .datacfg import builtin_data, read_label_list
from .errors import DarknetError
from .image import load_image, pil_to_rgb8, to_float_chw
from .predict import Prediction, rank
from .preprocess import PREPROCESS


def looks_like_cfg(name: str | os.PathLike) -> bool:
    name = os.fspath(name)
    return os.path.isfile(name) or name.endswith(".cfg") or os.sep in name


def resolve_model(model: str | os.PathLike, weights: str | os.PathLike | None = None, *, mirrors: Sequence[str] = (),
                  offline: bool = False, progress: bool = True):
    """A cfg path or zoo name (+ optional weights) -> (cfg path, weights path or None, zoo entry or None).

    For a zoo name without weights, the published weights are fetched into the cache (verified)."""
    if looks_like_cfg(model):
        return os.fspath(model), (None if weights is None else os.fspath(weights)), None
    from . import zoo

    entry = zoo.get(os.fspath(model))
    if weights is None:
        weights = zoo.fetch_weights(entry, mirrors=tuple(mirrors),
                                    offline=offline, progress=progress)
    return entry.cfg_path, os.fspath(weights), entry


def default_names(outputs: int, entry=None) -> list[str]:
    label_set = getattr(entry, "labels", None) or ("imagenet1k" if outputs == 1000 else None)
    if label_set is None:
        return [str(i) for i in range(outputs)]
    return builtin_data(label_set).load_names(outputs)


class Classifier:
    """A darknet classifier: the network, its class names and its preprocessing.

    ``model`` is the underlying ``torch.nn.Module`` (``pydarknet.Network``); ``names[i]`` names output i;
    ``preprocess`` is the darknet function that brings an image to the network's size ("letterbox" as
    darknet's ``classifier predict``, "center_crop" as ``classifier valid``)."""

    def __init__(self, model, names: list[str], *, preprocess: str = "letterbox", device: str = "cpu"):
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {sorted(PREPROCESS)}")
        if len(names) < model.spec.outputs:
            raise DarknetError(f"{len(names)} class names for {model.spec.outputs} outputs")
        self.model = model.to(device)
        self.names = names
        self.preprocess = preprocess
        self.device = device

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the network takes."""
        c, h, w = self.model.spec.input_shape
        return w, h

    def prepare(self, image: Any) -> np.ndarray:
        """One image (path, PIL image, HWC uint8 array, CHW float array/tensor in [0, 1]) -> (3, H, W) float32
        at the network's size, preprocessed as darknet does."""
        chw = as_chw(image)
        w, h = self.input_size
        if chw.shape[1:] == (h, w) and self.preprocess != "center_crop":
            return chw
        return PREPROCESS[self.preprocess](chw, w, h)

    def probabilities(self, images: Any) -> np.ndarray:
        """(N, outputs) network outputs for one image or a list of images."""
        return self.model.infer(np.stack([self.prepare(im) for im in _as_list(images)]), self.device)

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
                f"preprocess={self.preprocess!r}, device={self.device!r})")


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


def as_chw(image: Any) -> np.ndarray:
    """Any supported image form -> (3, H, W) float32 in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if _is_pil(image):
        image.load()
        return to_float_chw(pil_to_rgb8(image))
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.dtype.kind == "f":
        a = a.astype(np.float32)
        return np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)):
        if a.dtype != np.uint8:
            raise ValueError("HWC arrays must be uint8 (0..255); float images must be CHW in [0, 1]")
        a = a[:, :, None] if a.ndim == 2 else a
        rgb = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3]
        return to_float_chw(rgb)
    raise ValueError(f"cannot interpret an array of shape {a.shape} and dtype {a.dtype} as an image")


def load(model: str | os.PathLike, weights: str | os.PathLike | None = None, *, names: str | list[str] | None = None,
         preprocess: str | None = None, device: str = "cpu", fuse: bool = True, mirrors: Sequence[str] = (),
         offline: bool = False, progress: bool = True) -> Classifier:
    """A ready classifier from a zoo name (weights downloaded and verified on first use) or a cfg path.

    >>> clf = pydarknet.load("tiny")                                    # doctest: +SKIP
    >>> clf = pydarknet.load("my.cfg", "my.weights", names="my.names")  # doctest: +SKIP
    """
    from .network import load_network

    cfg, weights_path, entry = resolve_model(model, weights, mirrors=mirrors, offline=offline, progress=progress)
    net = load_network(cfg, weights_path, fuse=fuse)
    outputs = net.spec.outputs
    if names is None:
        label_names = default_names(outputs, entry)
    elif isinstance(names, (str, os.PathLike)):
        label_names = read_label_list(os.fspath(names), minimum=outputs)
    else:
        label_names = list(names)
    pre = preprocess or (entry.preprocess if entry is not None else "letterbox")
    return Classifier(net, label_names, preprocess=pre, device=device)


def list_models() -> list[str]:
    """Names accepted by ``load`` (the zoo)."""
    from . import zoo

    return zoo.list_models()
