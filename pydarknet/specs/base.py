"""What every layer spec is: the base class, the per-layer flags, the build context, and the registry that
the cfg reader, every engine and the weights I/O check themselves against.

A kind is one frozen dataclass here (``specs/kinds.py``), registered with ``@register``. It declares its cfg
section names, builds itself from a section (``from_section``: darknet's parse_* with its defaults), and
answers every question the rest of pydarknet asks about a kind: its shapes, the earlier layers it reads,
whether it fixes the network's input size, its weights layout (file order, darknet's transposes,
``dontload``/``dontloadscales``), its batchnorm fold, its parameters, BFLOPs and memory, and the line darknet
prints for it. Nothing outside this package tests a layer's kind.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..numerics import BN_ARRAYS

if TYPE_CHECKING:
    from ..cfg import Section
    from ..weights import Header

Shape = tuple[int, int, int]  # (c, h, w)
Layout = list[tuple[str, tuple[int, ...]]]  # (array name, shape in memory), in .weights file order
Arrays = dict[str, np.ndarray]

#: Activation names darknet knows (activations.c get_activation) plus AlexeyAB's relu6, swish, mish.
ACTIVATIONS = ("logistic", "loggy", "relu", "elu", "selu", "relie", "plse", "hardtan", "lhtan", "linear",
               "ramp", "leaky", "tanh", "stair", "relu6", "swish", "mish")

#: Keys darknet reads for every layer kind (parse_network_cfg), whatever the kind.
COMMON_KEYS = ("truth", "onlyforward", "stopbackward", "dontsave", "dontload", "numload", "dontloadscales",
               "learning_rate", "smooth", "clip")

#: kind -> spec class, in registration order. Every engine's table is checked against it (``check_table``).
REGISTRY: dict[str, type["LayerSpec"]] = {}


def register(cls: type["LayerSpec"]) -> type["LayerSpec"]:
    """Class decorator: add a spec class to the registry under its ``kind`` (and its section ``names``)."""
    if not cls.kind or not cls.names:
        raise TypeError(f"{cls.__name__} needs a kind and section names")
    if cls.kind in REGISTRY:
        raise TypeError(f"layer kind {cls.kind!r} registered twice")
    taken = {n for other in REGISTRY.values() for n in other.names}
    if taken & set(cls.names):
        raise TypeError(f"{cls.__name__}: section names {sorted(taken & set(cls.names))} are taken")
    REGISTRY[cls.kind] = cls
    return cls


def check_table(table: dict, what: str) -> None:
    """Raise if ``table`` (spec class -> implementation) misses a registered kind or has an unknown one.

    Every engine calls this on its kernel table at import, so a kind added to the specs without a kernel
    fails at once, naming the engine and the kind."""
    want = set(REGISTRY.values())
    have = set(table)
    missing = sorted(c.kind for c in want - have)
    extra = sorted(getattr(c, "__name__", str(c)) for c in have - want)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"no entry for {', '.join(missing)}")
        if extra:
            problems.append(f"entries for unregistered {', '.join(extra)}")
        raise AssertionError(f"{what}: {'; '.join(problems)}")


@dataclass(frozen=True)
class Common:
    """The per-layer flags darknet reads for every kind."""
    dontload: bool = False
    dontloadscales: bool = False
    dontsave: bool = False
    stopbackward: bool = False
    lr_scale: float = 1.0


@dataclass(frozen=True)
class LayerSpec:
    """One layer as darknet builds it. ``inp``/``out`` are (c, h, w), 0s where darknet has no image (a
    softmax's output); ``outputs`` is the floats per image it produces; ``inputs`` those coming in
    (``l.inputs``: c*h*w, or the previous flat vector's length)."""
    index: int
    lineno: int
    inp: Shape
    out: Shape
    outputs: int
    common: Common
    inputs: int

    kind: ClassVar[str] = ""
    #: the cfg section names of this kind, the canonical one first (string_to_layer_type)
    names: ClassVar[tuple[str, ...]] = ()
    #: the input size is part of the parameters (a connected layer's weights, a local layer's per-position
    #: kernels) or of the arithmetic (a crop): the network cannot be resized (darknet's resize_network)
    fixes_input: ClassVar[bool] = False
    #: the layer computes a training loss, not an output (get_network_output_layer skips it)
    is_cost: ClassVar[bool] = False

    # -- building ---------------------------------------------------------------------------------------
    @classmethod
    def from_section(cls, s: "Section", ctx: "Ctx") -> "LayerSpec":
        raise NotImplementedError

    # -- graph ------------------------------------------------------------------------------------------
    @property
    def reads(self) -> tuple[int, ...]:
        """Indices of earlier layers (other than the one right before) whose outputs this layer reads."""
        return ()

    # -- weights ----------------------------------------------------------------------------------------
    def layout(self) -> Layout:
        """Parameter arrays in .weights file order: (name, shape). Empty for kinds without weights."""
        return []

    @property
    def has_batchnorm(self) -> bool:
        return any(name in BN_ARRAYS for name, _ in self.layout())

    def loaded_layout(self) -> Layout:
        """What load_*_weights reads for the layer: nothing with ``dontload``, no batchnorm arrays with
        ``dontloadscales`` (load_convolutional_weights, load_connected_weights)."""
        if self.common.dontload:
            return []
        if self.common.dontloadscales:
            return [(n, s) for n, s in self.layout() if n not in BN_ARRAYS]
        return self.layout()

    def file_shape(self, name: str, shape: tuple[int, ...], header: "Header") -> tuple[int, ...]:
        """An array's shape as it lies in the file (before darknet's transposes on load); see subclasses."""
        return shape

    @property
    def units(self) -> int:
        """Output units that own a slice of the parameters (a convolution's filters, a connected layer's
        outputs): what a new head with another class count changes. 0 for kinds without weights."""
        return 0

    def folded(self) -> "LayerSpec":
        """This layer with its batchnorm folded into its weights (inference): the spec. Kinds without a
        foldable batchnorm return themselves."""
        return self

    def fold(self, arrays: Arrays) -> Arrays:
        """The arrays of ``folded()`` from this layer's arrays."""
        return arrays

    # -- figures ----------------------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for _, shape in self.layout())  # Python ints: no overflow

    @property
    def work_floats(self) -> int:
        """Floats per image of the largest scratch buffer an engine makes for this layer besides its input
        and output (a padded copy, im2col's columns): part of the memory budget."""
        return 0

    @property
    def bflops(self) -> float:
        return 0.0

    def table_line(self) -> str:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------
# building


@dataclass
class Ctx:
    """What parse_network_cfg carries from layer to layer: the index, the input shape and length, and the
    layers built so far."""
    index: int
    inp: Shape
    inputs: int
    prev: list[LayerSpec] = field(default_factory=list)

    def base(self, s: "Section", out: Shape, outputs: int | None = None) -> dict:
        c, h, w = out
        return dict(index=self.index, lineno=s.lineno, inp=self.inp, out=out,
                    outputs=c * h * w if outputs is None else outputs, common=common_flags(s), inputs=self.inputs)

    def need_image(self, s: "Section") -> None:
        c, h, w = self.inp
        if not (c and h and w):
            what = f"layer {self.index - 1} ({self.prev[-1].kind})" if self.prev else "the input"
            raise s.error(f"[{s.kind}] needs an image input, but {what} outputs a flat vector")

    def resolve(self, s: "Section", key: str, rel: int) -> int:
        absolute = self.index + rel if rel < 0 else rel
        if absolute >= self.index:
            earlier = f"only layers 0..{self.index - 1} come before it" if self.index else "it is the first layer"
            raise s.error(f"[{s.kind}] {key}={rel} points forward (to layer {absolute}); {earlier}", key)
        if absolute < 0:
            raise s.error(f"[{s.kind}] {key}={rel} points before the first layer", key)
        return absolute


def common_flags(s: "Section") -> Common:
    for key in COMMON_KEYS:  # mark as read
        s.get_str(key)
    if s.get_int("numload", 0):
        raise s.error(f"[{s.kind}] numload is not supported", "numload")
    return Common(dontload=s.get_bool("dontload"), dontloadscales=s.get_bool("dontloadscales"),
                  dontsave=s.get_bool("dontsave"), stopbackward=s.get_bool("stopbackward"),
                  lr_scale=s.get_float("learning_rate", 1.0))


def activation(s: "Section", default: str) -> str:
    name = s.get_str("activation", default)
    if name not in ACTIVATIONS:
        raise s.error(f"[{s.kind}] unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})", "activation")
    return name


def positive(s: "Section", key: str, value: int) -> int:
    if value <= 0:
        raise s.error(f"[{s.kind}] {key}={value}: must be positive", key)
    return value


def bn_layout(n: int) -> Layout:
    return [(name, (n,)) for name in BN_ARRAYS]
