"""Darknet's arithmetic that every engine, the converter and the weight tools share, on NumPy arrays (no
PyTorch): the inference batch normalisation and its fold into the layer before it.

Each rule is one function with a NOTE citing the C function it matches. The arithmetic runs in the arrays'
own dtype (float32 for darknet's files), in darknet's order of operations, so an engine that folds here gets
the same bits whichever engine it is.
"""
from __future__ import annotations

import numpy as np

#: pjreddie's darknet normalises with ``sqrt(var) + .000001`` (normalize_cpu in src/blas.c).
BN_EPSILON = 0.000001

#: the batchnorm arrays of a layer, in .weights file order after the biases (load_batchnorm_weights)
BN_ARRAYS = ("scales", "rolling_mean", "rolling_variance")


def batchnorm_scale(scales: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """The per-channel gain of darknet's inference batchnorm: ``scales / (sqrt(var) + .000001)``.

    NOTE: matches normalize_cpu + scale_bias (src/blas.c, src/batchnorm_layer.c): darknet divides by
    ``sqrt(var) + .000001``, not PyTorch's ``sqrt(var + eps)``."""
    variance = np.asarray(variance)
    return np.asarray(scales, dtype=variance.dtype) / (np.sqrt(variance) + variance.dtype.type(BN_EPSILON))


def fold_batchnorm(weights: np.ndarray, biases: np.ndarray, scales: np.ndarray, mean: np.ndarray,
                   variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights, biases) of the linear map followed by darknet's batchnorm, as one linear map.

    ``weights`` has the output units first (filters of a convolution, outputs of a connected layer). The
    result is ``w * gain`` and ``biases - mean * gain`` with ``gain = batchnorm_scale(scales, variance)``:
    equal to the unfolded layer up to float rounding (about 1e-6 relative)."""
    gain = batchnorm_scale(scales, variance)
    w = np.asarray(weights) * gain.reshape((-1,) + (1,) * (np.ndim(weights) - 1))
    return np.ascontiguousarray(w), np.ascontiguousarray(np.asarray(biases) - np.asarray(mean) * gain)


def batchnorm_affine(scales: np.ndarray, mean: np.ndarray, variance: np.ndarray,
                     biases: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A standalone batchnorm as ``x * gain + shift`` (per channel)."""
    gain = batchnorm_scale(scales, variance)
    shift = -np.asarray(mean) * gain
    if biases is not None:
        shift = shift + np.asarray(biases)
    return gain, shift


def variance_for_std(std: np.ndarray) -> np.ndarray:
    """The rolling variance for which darknet's ``sqrt(var) + .000001`` equals ``std``: how a batchnorm of
    another framework (``sqrt(var + eps)``, say) is written in darknet's layout without changing its numbers.
    ``std`` must exceed the epsilon."""
    std = np.asarray(std, dtype=np.float64)
    if (std <= BN_EPSILON).any():
        raise ValueError("a standard deviation at or below darknet's 1e-6 epsilon cannot be represented")
    return (std - BN_EPSILON) ** 2
