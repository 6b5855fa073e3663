"""Probabilities -> ranked predictions, and darknet's printed form of them (``src/utils.c`` top_k,
``src/classifier.c`` predict_classifier)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Prediction(NamedTuple):
    """One ranked class: its index in the network output, its name and its probability."""
    index: int
    name: str
    prob: float


def top_k(probs: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest values, largest first.

    NOTE: matches top_k (src/utils.c): a later index only overtakes on a strictly larger value, so ties keep
    ascending index order (a stable descending sort). ``k`` is clamped to the number of classes, where darknet
    would read past its array.
    """
    probs = np.asarray(probs).reshape(-1)
    k = max(0, min(int(k), probs.size))
    order = np.argsort(-probs.astype(np.float64), kind="stable")
    return [int(i) for i in order[:k]]


def rank(probs: np.ndarray, names: list[str], k: int) -> list[Prediction]:
    probs = np.asarray(probs, dtype=np.float32).reshape(-1)
    return [Prediction(i, names[i], float(probs[i])) for i in top_k(probs, k)]


def darknet_line(p: Prediction) -> str:
    """``%5.2f%%: name`` of the probability times 100 computed in float32, as darknet's printf."""
    return f"{float(np.float32(p.prob) * np.float32(100)):5.2f}%: {p.name}"


@dataclass(frozen=True)
class ImageResult:
    """Batch output row: an image path and its ranked predictions (or the error that stopped it)."""
    path: str
    predictions: tuple[Prediction, ...] = ()
    error: str | None = None


# -- the library calls behind `classifier predict` and `classify` ------------------------------------------


def classify_file(engine, resolved, path: str, top: int) -> tuple[list[Prediction], float]:
    """One image file through ``engine`` with ``resolved``'s preprocessing, class order and names: its top
    ``top`` predictions and the seconds the network took (what darknet's ``Predicted in`` line reports)."""
    import time

    from .image import decode_rgb8
    from .model import Prepare

    c, h, w = engine.spec.input_shape
    x = Prepare(resolved.preprocess, w, h)(decode_rgb8(path))[None]
    start = time.perf_counter()
    probs = resolved.reorder(engine.infer(x))[0]
    return rank(probs, resolved.names, top), time.perf_counter() - start


def predict_files(engine, resolved, paths, *, top: int, batch: int = 16, workers: int = 0,
                  threads: int | None = None):
    """Yield an ``ImageResult`` per path, in order: decoding and preprocessing beside the network (``workers``
    processes, or one background thread), ``batch`` images per forward pass. An unreadable image is a result
    with its error; the others go on."""
    import numpy as np

    from .model import Prepare
    from .pipeline import batches, inference_threads, prepared_images

    c, h, w = engine.spec.input_shape
    with inference_threads(engine, workers, threads):
        for group in batches(prepared_images(paths, Prepare(resolved.preprocess, w, h), workers), batch):
            ok = [g[2] for g in group if g[2] is not None]
            probs = iter(resolved.reorder(engine.infer(np.stack(ok))) if ok else ())
            for _, path, _, err in group:
                yield (ImageResult(path, error=err) if err is not None
                       else ImageResult(path, tuple(rank(next(probs), resolved.names, top))))
