"""A model is its cfg, its weights and its facts: the class names and their order, the input size, the
preprocessing it was trained with, where it came from. This module keeps them together whichever way the
model is named, and holds the one rule that turns them into what a command uses.

* ``ModelFacts``: the facts, as a zoo entry states them, or read from the small sidecar file written beside
  converted, downloaded and trained weights (``<weights>.json``, ``write_sidecar``/``read_sidecar``); they go
  into ONNX and state-dict metadata on export.
* ``Model`` and ``resolve_model``: a zoo name, or a cfg (+ weights), -> cfg path, weights path, facts.
* ``resolve``: names, labels, class order and preprocessing for a job, by one precedence: the command line
  (or the API's keywords) > the ``.data`` file > the model's own facts > darknet's default. A ``.data`` file
  whose classes are the model's in another order is mapped (the outputs are reordered, with a warning); one
  that shares only some classes with the model's known order is an error saying so; a names list that does
  not cover the outputs is an error.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from .atomic import atomic_write, read_bytes
from .datacfg import BUILTIN, DataConfig, builtin_data, read_label_list
from .errors import DarknetError, DarknetWarning

SIDECAR_FORMAT = "pydarknet-model-facts"
SIDECAR_VERSION = 1
SIDECAR_MAX_BYTES = 16 << 20

#: preprocessing name -> what it does, as the preprocess module's functions (darknet's C functions)
RESIZES = ("letterbox", "center_crop", "resize")
DEFAULT_RESIZE = "letterbox"  # darknet's classifier predict: letterbox_image(im, net.w, net.h)


@dataclass(frozen=True)
class Classes:
    """A model's classes in output order: ``names`` (what is printed) and ``labels`` (the strings darknet
    finds in image paths, e.g. ImageNet synsets; None when unknown). ``builtin`` names the built-in class
    set they are (``datacfg.BUILTIN``: imagenet1k, imagenet1k-sorted, fashion), if one."""
    names: tuple[str, ...]
    labels: tuple[str, ...] | None = None
    builtin: str | None = None

    @classmethod
    def from_builtin(cls, name: str) -> "Classes":
        data = builtin_data(name)
        return cls(tuple(data.load_names()), tuple(data.load_labels()), name)

    def to_json(self) -> dict:
        if self.builtin:
            return {"builtin": self.builtin}
        return {"names": list(self.names), "labels": None if self.labels is None else list(self.labels)}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "Classes":
        if not isinstance(obj, dict):
            raise DarknetError("'classes' must be an object", where)
        if "builtin" in obj:
            if not isinstance(obj["builtin"], str) or obj["builtin"] not in BUILTIN:
                raise DarknetError(f"unknown built-in class set {obj['builtin']!r} (known: {', '.join(BUILTIN)})",
                                   where)
            return cls.from_builtin(obj["builtin"])
        names, labels = obj.get("names"), obj.get("labels")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DarknetError("'classes.names' must be a list of strings", where)
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(names)
                                   or not all(isinstance(n, str) for n in labels)):
            raise DarknetError("'classes.labels' must be a list of strings as long as 'names'", where)
        return cls(tuple(names), None if labels is None else tuple(labels))


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input: ``resize`` (a ``preprocess.PREPROCESS`` name: darknet's
    letterbox_image, center_crop_image or resize_image), then, if given, ``(x - mean) / std`` per channel on
    [0, 1] pixels (None when the network takes darknet's plain [0, 1] pixels)."""
    resize: str = DEFAULT_RESIZE
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.resize not in RESIZES:
            raise DarknetError(f"preprocessing {self.resize!r}: expected one of {', '.join(RESIZES)}")
        if (self.mean is None) != (self.std is None):
            raise DarknetError("preprocessing needs both mean and std, or neither")
        if self.std is not None and any(s == 0 for s in self.std):
            raise DarknetError("preprocessing std must not be 0")

    def to_json(self) -> dict:
        return {"resize": self.resize, "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "Preprocessing":
        if not isinstance(obj, dict):
            raise DarknetError("'preprocess' must be an object", where)
        try:
            mean = None if obj.get("mean") is None else tuple(float(v) for v in obj["mean"])
            std = None if obj.get("std") is None else tuple(float(v) for v in obj["std"])
            return cls(str(obj.get("resize", DEFAULT_RESIZE)), mean, std)
        except (TypeError, ValueError):
            raise DarknetError("'preprocess' mean/std must be lists of numbers", where) from None
        except DarknetError as e:
            raise DarknetError(e.problem, where) from None

    def normalize(self, chw: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 in [0, 1] -> what the network takes."""
        if self.mean is None:
            return chw
        c = chw.shape[0]
        mean = np.asarray(self.mean, np.float32).reshape(c, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(c, 1, 1)
        return ((chw - mean) / std).astype(np.float32)

    def __call__(self, chw: np.ndarray, width: int, height: int) -> np.ndarray:
        """A decoded image -> the network's (C, height, width) input. The image is ``image.decode_rgb8``'s
        (H, W, 3) uint8 array (only the pixels the resize reads are converted to float; bit-exact with the
        float path) or a (C, H, W) float32 array in [0, 1]."""
        from .preprocess import PREPROCESS

        return self.normalize(PREPROCESS[self.resize](chw, width, height))


@dataclass(frozen=True)
class Prepare:
    """``Preprocessing`` bound to a network's input size: a picklable callable from a decoded image to the
    network's input (what the decoding workers run), from the decoded (H, W, 3) uint8 image or a (C, H, W)
    float one."""
    preprocess: Preprocessing
    width: int
    height: int

    def __call__(self, chw: np.ndarray) -> np.ndarray:
        return self.preprocess(chw, self.width, self.height)


@dataclass(frozen=True)
class ModelFacts:
    """What a cfg and weights do not say: classes (None: unknown), preprocessing (None: unknown), the input
    size (width, height) the facts were made for, and provenance (free-form strings)."""
    classes: Classes | None = None
    preprocess: Preprocessing | None = None
    input_size: tuple[int, int] | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION,
                "classes": None if self.classes is None else self.classes.to_json(),
                "preprocess": None if self.preprocess is None else self.preprocess.to_json(),
                "input_size": None if self.input_size is None else list(self.input_size),
                "provenance": dict(self.provenance)}

    def metadata(self) -> dict[str, str]:
        """The facts as string metadata (ONNX metadata_props, safetensors metadata)."""
        return {"pydarknet_model_facts": json.dumps(self.to_json(), separators=(",", ":"))}

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "ModelFacts":
        if not isinstance(obj, dict) or obj.get("format") != SIDECAR_FORMAT:
            raise DarknetError(f"not a pydarknet model facts file (no \"format\": \"{SIDECAR_FORMAT}\")", where)
        if obj.get("version") != SIDECAR_VERSION:
            raise DarknetError(f"model facts version {obj.get('version')!r}: this pydarknet reads version "
                               f"{SIDECAR_VERSION}", where)
        size = obj.get("input_size")
        if size is not None and (not isinstance(size, list) or len(size) != 2
                                 or not all(isinstance(v, int) and v > 0 for v in size)):
            raise DarknetError("'input_size' must be [width, height]", where)
        prov = obj.get("provenance") or {}
        if not isinstance(prov, dict):
            raise DarknetError("'provenance' must be an object", where)
        return cls(classes=None if obj.get("classes") is None else Classes.from_json(obj["classes"], where),
                   preprocess=None if obj.get("preprocess") is None else Preprocessing.from_json(obj["preprocess"],
                                                                                                where),
                   input_size=None if size is None else (size[0], size[1]),
                   provenance={str(k): str(v) for k, v in prov.items()})


def sidecar_path(weights: str | os.PathLike) -> str:
    """Where a weights file's facts live: beside it, ``<weights>.json``."""
    return os.fspath(weights) + ".json"


def write_sidecar(weights: str | os.PathLike, facts: ModelFacts) -> str:
    """Write ``facts`` beside ``weights`` (atomically). Returns the sidecar's path."""
    path = sidecar_path(weights)
    atomic_write(path, (json.dumps(facts.to_json(), indent=1) + "\n").encode("utf-8"))
    return path


def read_sidecar(weights: str | os.PathLike) -> ModelFacts | None:
    """The facts beside ``weights``, or None when there is no sidecar. A malformed one is a DarknetError."""
    path = sidecar_path(weights)
    if not os.path.lexists(path):
        return None
    data = read_bytes(path, "model facts", limit=SIDECAR_MAX_BYTES + 1)
    if len(data) > SIDECAR_MAX_BYTES:
        raise DarknetError(f"model facts file over {SIDECAR_MAX_BYTES >> 20} MiB", path)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError, or an integer of over 4,300 digits
        raise DarknetError(f"not valid JSON ({e})", path) from None
    except RecursionError:
        raise DarknetError("not valid JSON (nested too deeply)", path) from None
    return ModelFacts.from_json(obj, path)


# ---------------------------------------------------------------------------------------------------------
# naming a model


@dataclass(frozen=True)
class Model:
    """A cfg, its weights (None: darknet's random initialisation) and its facts. ``name`` is how the user
    named it (a zoo name or the cfg path); ``zoo`` the zoo entry's name when it is one."""
    cfg: str
    weights: str | None
    facts: ModelFacts = field(default_factory=ModelFacts)
    name: str = ""
    zoo: str | None = None


def looks_like_cfg(name: str | os.PathLike) -> bool:
    """A cfg path rather than a zoo name: an existing file, a .cfg name, or a path with a directory."""
    name = os.fspath(name)
    return os.path.isfile(name) or name.endswith(".cfg") or os.sep in name


def cfg_path(name: str | os.PathLike) -> str:
    """A cfg path as given, or a zoo model's cfg."""
    name = os.fspath(name)
    if looks_like_cfg(name):
        return name
    from . import zoo

    return zoo.get(name).cfg_path


def resolve_model(model: str | os.PathLike, weights: str | os.PathLike | None = None, *,
                  mirrors: Sequence[str] = (), offline: bool = False, progress: bool = True) -> Model:
    """A zoo name or a cfg path (+ optional weights) -> Model with its facts.

    A zoo name without weights fetches the published weights into the cache (verified). Facts come from the
    zoo entry for a zoo name, else from the sidecar beside the weights (which the zoo, the converter and
    training write), else none (darknet's defaults apply)."""
    name = os.fspath(model)
    if looks_like_cfg(name):
        w = None if weights is None else os.fspath(weights)
        facts = (read_sidecar(w) if w else None) or ModelFacts()
        return Model(cfg=name, weights=w, facts=facts, name=name)
    from . import zoo

    entry = zoo.get(name)
    w = os.fspath(weights) if weights is not None else os.fspath(
        zoo.fetch_weights(entry, mirrors=tuple(mirrors), offline=offline, progress=progress))
    facts = entry.facts
    if weights is not None:  # the user's own weights for a zoo cfg: their sidecar, if any, says more
        facts = read_sidecar(w) or facts
    return Model(cfg=entry.cfg_path, weights=w, facts=facts, name=name, zoo=entry.name)


# ---------------------------------------------------------------------------------------------------------
# the one resolution rule


@dataclass(frozen=True)
class Resolved:
    """What a job uses. ``names[i]`` names class i; ``labels`` the strings matched against image paths
    (None: none known); ``classes`` how many of the outputs are classes (a data file's ``classes=``);
    ``index_map``, when the data file orders the model's classes differently, the output index of each of
    the data file's classes (``probs[:, index_map]`` is in the data file's order); ``preprocess`` how images
    are prepared; ``top`` the data file's ``top`` (or None); ``sources`` where each came from."""
    names: list[str]
    labels: list[str] | None
    classes: int
    index_map: np.ndarray | None
    preprocess: Preprocessing
    top: int | None
    sources: dict[str, str]

    def reorder(self, probs: np.ndarray) -> np.ndarray:
        """(N, outputs) network outputs -> (N, classes or outputs) in the data file's class order."""
        return probs if self.index_map is None else probs[:, self.index_map]


def _class_map(model: Classes, keys: Sequence[str], by: str, data_path: str) -> np.ndarray | None:
    """Output index of each of the data file's classes (``keys``, compared with the model's ``by``), or
    None when the data file names other classes (no overlap)."""
    ours = model.labels if by == "labels" else model.names
    position = {}
    for i, k in enumerate(ours):
        position.setdefault(k, i)
    found = [position.get(k) for k in keys]
    hits = sum(f is not None for f in found)
    if hits == 0:
        return None
    if hits < len(keys) or len(set(found)) < len(found):
        missing = [k for k, f in zip(keys, found) if f is None]
        what = (f"{len(missing)} of its {len(keys)} classes are not the model's (e.g. {missing[0]!r})" if missing
                else "it lists one of the model's classes twice")
        raise DarknetError(f"its {by} contradict the model's known class order: {what}; give the model's own "
                           f"{by} (or --names to name the outputs as you wish)", data_path)
    index = np.asarray(found, dtype=np.int64)
    return None if np.array_equal(index, np.arange(len(index))) else index


def resolve(model: Model, spec, data: DataConfig | None = None, *, names: str | Sequence[str] | None = None,
            preprocess: str | Preprocessing | None = None, need_labels: bool = False,
            default_classes: str | None = None) -> Resolved:
    """Names, labels, class order and preprocessing for a job on ``model`` (whose NetSpec is ``spec``).

    Precedence: ``names``/``preprocess`` (the command line, the API's keywords) > ``data`` (a .data file) >
    ``model.facts`` > darknet's default: ``default_classes`` (a built-in class set; darknet's ``classify``
    uses imagenet1k), else ImageNet-1k for a 1000-output network, else the output indices; letterbox.
    ``need_labels``: the job matches labels in image paths (valid, train), so a label list must be found."""
    outputs = spec.outputs
    sources: dict[str, str] = {}
    facts = model.facts
    classes = outputs
    index_map = None
    if data is not None and data.classes:
        if data.classes > outputs:
            raise DarknetError(f"classes={data.classes} but the network has {outputs} outputs", data.path)
        classes = data.classes
    data_names = data is not None and (data.names or data.labels or data.builtin
                                       or os.path.isfile(data.names_file))
    if names is not None:  # the command line / the API
        got = read_label_list(os.fspath(names)) if isinstance(names, (str, os.PathLike)) else list(names)
        where = os.fspath(names) if isinstance(names, (str, os.PathLike)) else "names"
        if len(got) != outputs:
            raise DarknetError(f"has {len(got)} names but the network has {outputs} outputs", where)
        name_list, sources["names"] = got, where
    elif data_names:
        name_list, sources["names"] = data.load_names(), data.names_file
        # valid and train rank the data file's classes= first outputs only; predict ranks them all
        _check_length(name_list, classes if need_labels else outputs, data, data.names_file)
        name_list += [str(i) for i in range(len(name_list), outputs)]
        if facts.classes is not None:
            index_map = _map_data_to_model(facts.classes, data, name_list, classes)
    elif facts.classes is not None:
        name_list, sources["names"] = list(facts.classes.names), "the model's facts"
        _check_length(name_list, outputs, None, model.name or model.cfg)
    else:
        default = default_classes or ("imagenet1k" if outputs == 1000 else None)
        if default is not None:
            name_list, sources["names"] = list(Classes.from_builtin(default).names), f"built-in {default} names"
            _check_length(name_list, outputs, builtin_data(default), default)
        else:
            name_list, sources["names"] = [str(i) for i in range(outputs)], "output indices"
    labels: list[str] | None = None
    if data is not None and data.labels:
        labels, sources["labels"] = data.load_labels(), data.labels
    elif facts.classes is not None and facts.classes.labels is not None:
        labels, sources["labels"] = list(facts.classes.labels), "the model's facts"
    if need_labels and labels is None:
        where = data.path if data is not None else (model.name or model.cfg)
        raise DarknetError("has no 'labels=' list (the strings found in image paths), and the model's facts "
                           "name none", where)
    if index_map is not None:
        name_list = name_list[:classes]
        warnings.warn(DarknetWarning(
            f"{data.path}: the model's outputs are in another class order than this data file's; pydarknet maps "
            "them to the data file's order"), stacklevel=2)
    known = facts.preprocess
    if isinstance(preprocess, str):  # a resize named on the command line keeps the model's normalisation
        pre = Preprocessing(preprocess, *((known.mean, known.std) if known else (None, None)))
        sources["preprocess"] = "command line"
    elif isinstance(preprocess, Preprocessing):
        pre, sources["preprocess"] = preprocess, "command line"
    elif known is not None:
        pre, sources["preprocess"] = known, "the model's facts"
    else:
        pre, sources["preprocess"] = Preprocessing(), "darknet's default"
    size = (spec.net.width, spec.net.height)
    if facts.input_size is not None and tuple(facts.input_size) != size:
        warnings.warn(DarknetWarning(f"{model.name or model.cfg}: the model's facts were made for "
                                     f"{facts.input_size[0]}x{facts.input_size[1]} inputs, its cfg takes "
                                     f"{size[0]}x{size[1]}"), stacklevel=2)
    return Resolved(names=name_list, labels=labels, classes=classes, index_map=index_map, preprocess=pre,
                    top=data.top if data is not None else None, sources=sources)


def _check_length(names: list[str], outputs: int, data: DataConfig | None, where: str) -> None:
    """A names list must cover the outputs (or the classes a job ranks); a longer one only in a .data file
    that says how many classes it uses (darknet's convention: imagenet1k.data lists 21842 names with
    classes=1000)."""
    if len(names) < outputs:
        raise DarknetError(f"has {len(names)} names but the network has {outputs} outputs", where)
    if len(names) > outputs and (data is None or not (data.classes or data.builtin)):
        raise DarknetError(f"has {len(names)} names but the network has {outputs} outputs (a .data file may list "
                           "more when its classes= says how many it uses)", where)


def _map_data_to_model(model: Classes, data: DataConfig, names: list[str], classes: int) -> np.ndarray | None:
    """The data file's classes against the model's known ones: by labels where both have them, else by
    names. Returns the output index of each data class when the order differs, None when it is the same or
    the data file names classes of its own (no overlap); raises when they overlap only in part."""
    if data.labels and model.labels is not None:
        keys, by, where = data.load_labels()[:classes], "labels", data.labels
    else:
        keys, by, where = names[:classes], "names", data.names_file
    return _class_map(model, keys, by, where)


def facts_for(spec, resolved: Resolved, *, provenance: dict[str, str] | None = None) -> ModelFacts:
    """The facts to write beside weights made for ``spec`` in this job (training): its classes, preprocessing
    and input size, and ``provenance``."""
    classes = Classes(tuple(resolved.names[:spec.outputs]),
                      None if resolved.labels is None else tuple(resolved.labels[:spec.outputs]))
    if resolved.labels is not None and len(resolved.labels) < spec.outputs:
        classes = replace(classes, labels=None)
    return ModelFacts(classes=classes, preprocess=resolved.preprocess, input_size=(spec.net.width, spec.net.height),
                      provenance=dict(provenance or {}))
