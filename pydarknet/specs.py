"""Typed, frozen layer specs built from cfg sections, with darknet's defaults, shape rules, parameter
layout, BFLOPs and the layer-table line darknet prints on load (``src/parser.c`` parse_*,
``make_*_layer`` in ``src/*_layer.c``).

One builder per layer kind, in one table (``BUILDERS``). Every spec knows:
  * ``inp`` / ``out``: (c, h, w) as darknet computes them (0s where darknet has no image, e.g. softmax),
  * ``outputs``: the number of floats the layer produces per image,
  * ``layout()``: its parameters in the order of a ``.weights`` file (drives both reading and writing),
  * ``bflops``: 2 x multiply-adds / 1e9, ``table_line()``: darknet's line for the layer table.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from .cfg import Section, read_cfg
from .errors import DarknetError

#: Activation names darknet knows (activations.c get_activation) plus AlexeyAB's relu6, swish, mish.
ACTIVATIONS = ("logistic", "loggy", "relu", "elu", "selu", "relie", "plse", "hardtan", "lhtan", "linear",
               "ramp", "leaky", "tanh", "stair", "relu6", "swish", "mish")

#: Keys darknet reads for every layer kind (parse_network_cfg), whatever the kind.
COMMON_KEYS = ("truth", "onlyforward", "stopbackward", "dontsave", "dontload", "numload", "dontloadscales",
               "learning_rate", "smooth", "clip")

Shape = tuple[int, int, int]  # (c, h, w)
Layout = list[tuple[str, tuple[int, ...]]]


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
    index: int
    lineno: int
    inp: Shape
    out: Shape
    outputs: int
    common: Common
    inputs: int  # floats per image coming in (l.inputs): c*h*w, or the previous flat vector's length

    kind: ClassVar[str] = ""

    def layout(self) -> Layout:
        """Parameter arrays in .weights file order: (name, shape). Empty for kinds without weights."""
        return []

    @property
    def num_params(self) -> int:
        total = 0
        for _, shape in self.layout():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    @property
    def bflops(self) -> float:
        return 0.0

    def table_line(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Convolutional(LayerSpec):
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str
    flipped: bool
    kind: ClassVar[str] = "convolutional"

    def layout(self) -> Layout:
        n, c = self.filters, self.inp[0]
        bn = [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))] if self.batch_normalize else []
        return [("biases", (n,))] + bn + [("weights", (n, c // self.groups, self.size, self.size))]

    @property
    def bflops(self) -> float:
        c = self.inp[0]
        _, oh, ow = self.out
        return 2.0 * self.filters * self.size * self.size * c / self.groups * oh * ow / 1e9

    def table_line(self) -> str:  # make_convolutional_layer
        c, h, w = self.inp
        oc, oh, ow = self.out
        return (f"conv  {self.filters:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}"
                f"   ->  {ow:4d} x{oh:4d} x{oc:4d}  {self.bflops:5.3f} BFLOPs")


@dataclass(frozen=True)
class Maxpool(LayerSpec):
    size: int
    stride: int
    padding: int
    kind: ClassVar[str] = "maxpool"

    def table_line(self) -> str:  # make_maxpool_layer
        c, h, w = self.inp
        oc, oh, ow = self.out
        return (f"max          {self.size} x {self.size} / {self.stride}  {w:4d} x{h:4d} x{c:4d}"
                f"   ->  {ow:4d} x{oh:4d} x{oc:4d}")


@dataclass(frozen=True)
class Avgpool(LayerSpec):
    kind: ClassVar[str] = "avgpool"

    def table_line(self) -> str:  # make_avgpool_layer
        c, h, w = self.inp
        return f"avg                     {w:4d} x{h:4d} x{c:4d}   ->  {c:4d}"


@dataclass(frozen=True)
class Connected(LayerSpec):
    output: int
    batch_normalize: bool
    activation: str
    kind: ClassVar[str] = "connected"

    def layout(self) -> Layout:
        n = self.output
        bn = [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))] if self.batch_normalize else []
        return [("biases", (n,)), ("weights", (n, self.inputs))] + bn

    @property
    def bflops(self) -> float:
        return 2.0 * self.inputs * self.output / 1e9

    def table_line(self) -> str:  # make_connected_layer
        return f"connected                            {self.inputs:4d}  ->  {self.output:4d}"


@dataclass(frozen=True)
class Dropout(LayerSpec):
    probability: float
    kind: ClassVar[str] = "dropout"

    def table_line(self) -> str:  # make_dropout_layer
        return f"dropout       p = {self.probability:.2f}               {self.inputs:4d}  ->  {self.inputs:4d}"


@dataclass(frozen=True)
class Softmax(LayerSpec):
    groups: int
    temperature: float
    kind: ClassVar[str] = "softmax"

    def table_line(self) -> str:  # make_softmax_layer
        return f"softmax                                        {self.outputs:4d}"


@dataclass(frozen=True)
class Cost(LayerSpec):
    cost_type: str
    scale: float
    kind: ClassVar[str] = "cost"

    def table_line(self) -> str:  # make_cost_layer
        return f"cost                                           {self.outputs:4d}"


@dataclass(frozen=True)
class Crop(LayerSpec):
    crop_height: int
    crop_width: int
    flip: bool
    noadjust: bool
    kind: ClassVar[str] = "crop"

    def table_line(self) -> str:  # make_crop_layer
        c, h, w = self.inp
        return f"Crop Layer: {h} x {w} -> {self.crop_height} x {self.crop_width} x {c} image"


@dataclass(frozen=True)
class Route(LayerSpec):
    layers: tuple[int, ...]  # absolute indices
    kind: ClassVar[str] = "route"

    def table_line(self) -> str:  # make_route_layer
        return "route " + "".join(f" {i}" for i in self.layers)


@dataclass(frozen=True)
class Shortcut(LayerSpec):
    from_index: int  # absolute
    from_shape: Shape
    activation: str
    alpha: float
    beta: float
    kind: ClassVar[str] = "shortcut"

    def table_line(self) -> str:  # make_shortcut_layer
        c2, h2, w2 = self.from_shape
        c, h, w = self.inp
        return (f"res  {self.from_index:3d}                {w2:4d} x{h2:4d} x{c2:4d}"
                f"   ->  {w:4d} x{h:4d} x{c:4d}")


@dataclass(frozen=True)
class Batchnorm(LayerSpec):
    kind: ClassVar[str] = "batchnorm"

    def layout(self) -> Layout:
        c = self.out[0]
        return [("scales", (c,)), ("rolling_mean", (c,)), ("rolling_variance", (c,))]

    def table_line(self) -> str:  # make_batchnorm_layer
        c, h, w = self.inp
        return f"Batch Normalization Layer: {w} x {h} x {c} image"


# ---------------------------------------------------------------------------------------------------------
# [net]


@dataclass(frozen=True)
class NetOptions:
    """The [net] section, with darknet's defaults (parse_net_options). ``batch`` is per subdivision."""
    width: int
    height: int
    channels: int
    batch: int
    subdivisions: int
    learning_rate: float
    momentum: float
    decay: float
    policy: str
    burn_in: int
    power: float
    step: int
    scale: float
    steps: tuple[int, ...]
    scales: tuple[float, ...]
    gamma: float
    max_batches: int
    max_crop: int
    min_crop: int
    angle: float
    aspect: float
    saturation: float
    exposure: float
    hue: float
    center: bool
    random: bool
    adam: bool
    b1: float
    b2: float
    eps: float


POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random")  # get_policy


def _parse_net(s: Section, width: int | None, height: int | None) -> NetOptions:
    batch = s.get_int("batch", 1)
    subdivisions = s.get_int("subdivisions", 1)
    if batch < 1:
        raise s.error(f"[net] batch={batch}: must be at least 1", "batch")
    if subdivisions < 1:
        raise s.error(f"[net] subdivisions={subdivisions}: must be at least 1", "subdivisions")
    w, h = s.get_int("width", 0), s.get_int("height", 0)
    w, h = w if width is None else width, h if height is None else height
    c = s.get_int("channels", 0)
    inputs = s.get_int("inputs", h * w * c)
    if not (h > 0 and w > 0 and c > 0):
        if inputs:
            raise s.error("[net] flat 'inputs' networks are not image classifiers; give width, height, channels")
        raise s.error("[net] needs positive width, height and channels")
    policy = s.get_str("policy", "constant")
    if policy not in POLICIES:
        raise s.error(f"[net] policy={policy!r}: expected one of {', '.join(POLICIES)}", "policy")
    steps: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    step, scale, gamma = 1, 1.0, 1.0
    if policy == "step":
        step, scale = s.get_int("step", 1), s.get_float("scale", 1.0)
    elif policy == "steps":
        steps_l, scales_l = s.get_int_list("steps"), s.get_float_list("scales")
        if steps_l is None or scales_l is None:
            raise s.error("[net] policy=steps needs both 'steps' and 'scales'", "policy")
        if len(steps_l) != len(scales_l):
            raise s.error(f"[net] {len(steps_l)} steps but {len(scales_l)} scales", "scales")
        steps, scales = tuple(steps_l), tuple(scales_l)
    elif policy in ("exp", "sigmoid"):
        gamma = s.get_float("gamma", 1.0)
        if policy == "sigmoid":
            step = s.get_int("step", 1)
    max_crop = s.get_int("max_crop", w * 2)
    min_crop = s.get_int("min_crop", w)
    # Read for completeness (darknet reads them; classifiers rarely use them).
    for key in ("max_ratio", "min_ratio", "clip", "notruth", "time_steps"):
        s.get_str(key)
    adam = s.get_bool("adam")
    return NetOptions(
        width=w, height=h, channels=c, batch=batch, subdivisions=subdivisions,
        learning_rate=s.get_float("learning_rate", 0.001), momentum=s.get_float("momentum", 0.9),
        decay=s.get_float("decay", 0.0001), policy=policy, burn_in=s.get_int("burn_in", 0),
        power=s.get_float("power", 4.0), step=step, scale=scale, steps=steps, scales=scales, gamma=gamma,
        max_batches=s.get_int("max_batches", 0), max_crop=max_crop, min_crop=min_crop,
        angle=s.get_float("angle", 0.0), aspect=s.get_float("aspect", 1.0),
        saturation=s.get_float("saturation", 1.0), exposure=s.get_float("exposure", 1.0),
        hue=s.get_float("hue", 0.0), center=s.get_bool("center"), random=s.get_bool("random"),
        adam=adam, b1=s.get_float("B1", 0.9), b2=s.get_float("B2", 0.999), eps=s.get_float("eps", 1e-7),
    )


# ---------------------------------------------------------------------------------------------------------
# Builders: (section, context) -> spec. One per kind.


@dataclass
class _Ctx:
    index: int
    inp: Shape
    inputs: int
    prev: list[LayerSpec] = field(default_factory=list)

    def base(self, s: Section, out: Shape, outputs: int | None = None) -> dict:
        c, h, w = out
        return dict(index=self.index, lineno=s.lineno, inp=self.inp, out=out,
                    outputs=c * h * w if outputs is None else outputs, common=_common(s), inputs=self.inputs)

    def need_image(self, s: Section) -> None:
        c, h, w = self.inp
        if not (c and h and w):
            what = f"layer {self.index - 1} ({self.prev[-1].kind})" if self.prev else "the input"
            raise s.error(f"[{s.kind}] needs an image input, but {what} outputs a flat vector")

    def resolve(self, s: Section, key: str, rel: int) -> int:
        absolute = self.index + rel if rel < 0 else rel
        if absolute >= self.index:
            earlier = f"only layers 0..{self.index - 1} come before it" if self.index else "it is the first layer"
            raise s.error(f"[{s.kind}] {key}={rel} points forward (to layer {absolute}); {earlier}", key)
        if absolute < 0:
            raise s.error(f"[{s.kind}] {key}={rel} points before the first layer", key)
        return absolute


def _common(s: Section) -> Common:
    values = {k: s.get_str(k) for k in COMMON_KEYS}  # mark as read
    del values
    if s.get_int("numload", 0):
        raise s.error(f"[{s.kind}] numload is not supported", "numload")
    return Common(dontload=s.get_bool("dontload"), dontloadscales=s.get_bool("dontloadscales"),
                  dontsave=s.get_bool("dontsave"), stopbackward=s.get_bool("stopbackward"),
                  lr_scale=s.get_float("learning_rate", 1.0))


def _activation(s: Section, default: str) -> str:
    name = s.get_str("activation", default)
    if name not in ACTIVATIONS:
        raise s.error(f"[{s.kind}] unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})", "activation")
    return name


def _positive(s: Section, key: str, value: int) -> int:
    if value <= 0:
        raise s.error(f"[{s.kind}] {key}={value}: must be positive", key)
    return value


def _build_convolutional(s: Section, ctx: _Ctx) -> Convolutional:  # parse_convolutional
    ctx.need_image(s)
    c, h, w = ctx.inp
    n = _positive(s, "filters", s.get_int("filters", 1))
    size = _positive(s, "size", s.get_int("size", 1))
    stride = _positive(s, "stride", s.get_int("stride", 1))
    groups = _positive(s, "groups", s.get_int("groups", 1))
    pad = s.get_int("pad", 0)
    padding = s.get_int("padding", 0)
    if pad:
        padding = size // 2
    if padding < 0:
        raise s.error(f"[{s.kind}] padding={padding}: must not be negative", "padding")
    if c % groups or n % groups:
        raise s.error(f"[{s.kind}] groups={groups} must divide both the input channels ({c}) "
                      f"and filters ({n})", "groups")
    oh = (h + 2 * padding - size) // stride + 1
    ow = (w + 2 * padding - size) // stride + 1
    if oh <= 0 or ow <= 0:
        raise s.error(f"[{s.kind}] a {size}x{size} kernel does not fit the {w}x{h} input")
    return Convolutional(**ctx.base(s, (n, oh, ow)), filters=n, size=size, stride=stride, padding=padding,
                         groups=groups, batch_normalize=s.get_bool("batch_normalize"),
                         activation=_activation(s, "logistic"), flipped=s.get_bool("flipped"))


def _build_maxpool(s: Section, ctx: _Ctx) -> Maxpool:  # parse_maxpool
    ctx.need_image(s)
    c, h, w = ctx.inp
    stride = _positive(s, "stride", s.get_int("stride", 1))
    size = _positive(s, "size", s.get_int("size", stride))
    padding = s.get_int("padding", size - 1)
    if padding < 0:
        raise s.error(f"[{s.kind}] padding={padding}: must not be negative", "padding")
    oh = (h + padding - size) // stride + 1
    ow = (w + padding - size) // stride + 1
    if oh <= 0 or ow <= 0:
        raise s.error(f"[{s.kind}] a {size}x{size} window does not fit the {w}x{h} input")
    return Maxpool(**ctx.base(s, (c, oh, ow)), size=size, stride=stride, padding=padding)


def _build_avgpool(s: Section, ctx: _Ctx) -> Avgpool:  # parse_avgpool
    ctx.need_image(s)
    c = ctx.inp[0]
    return Avgpool(**ctx.base(s, (c, 1, 1)))


def _build_connected(s: Section, ctx: _Ctx) -> Connected:  # parse_connected
    if ctx.inputs <= 0:
        raise s.error(f"[{s.kind}] has no inputs")
    n = _positive(s, "output", s.get_int("output", 1))
    return Connected(**ctx.base(s, (n, 1, 1)), output=n, batch_normalize=s.get_bool("batch_normalize"),
                     activation=_activation(s, "logistic"))


def _build_dropout(s: Section, ctx: _Ctx) -> Dropout:  # parse_dropout
    p = s.get_float("probability", 0.5)
    if not 0.0 <= p < 1.0:
        raise s.error(f"[{s.kind}] probability={p}: must be in [0, 1)", "probability")
    return Dropout(**ctx.base(s, ctx.inp, ctx.inputs), probability=p)


def _build_softmax(s: Section, ctx: _Ctx) -> Softmax:  # parse_softmax
    groups = _positive(s, "groups", s.get_int("groups", 1))
    if ctx.inputs % groups:
        raise s.error(f"[{s.kind}] groups={groups} does not divide its {ctx.inputs} inputs", "groups")
    temperature = s.get_float("temperature", 1.0)
    if temperature == 0:
        raise s.error(f"[{s.kind}] temperature must not be 0", "temperature")
    if s.get_str("tree") is not None:
        raise s.error(f"[{s.kind}] hierarchical softmax (tree=) is not supported", "tree")
    for key in ("spatial", "noloss"):
        s.get_str(key)
    return Softmax(**ctx.base(s, (0, 0, 0), ctx.inputs), groups=groups, temperature=temperature)


COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


def _build_cost(s: Section, ctx: _Ctx) -> Cost:  # parse_cost
    cost_type = s.get_str("type", "sse")
    if cost_type not in COST_TYPES:
        raise s.error(f"[{s.kind}] type={cost_type!r}: expected one of {', '.join(COST_TYPES)}", "type")
    for key in ("ratio", "noobject_scale", "thresh"):
        s.get_str(key)
    return Cost(**ctx.base(s, (0, 0, 0), ctx.inputs), cost_type=cost_type, scale=s.get_float("scale", 1.0))


def _build_crop(s: Section, ctx: _Ctx) -> Crop:  # parse_crop
    ctx.need_image(s)
    c, h, w = ctx.inp
    ch = _positive(s, "crop_height", s.get_int("crop_height", 1))
    cw = _positive(s, "crop_width", s.get_int("crop_width", 1))
    if ch > h or cw > w:
        raise s.error(f"[{s.kind}] a {cw}x{ch} crop does not fit the {w}x{h} input")
    for key in ("angle", "saturation", "exposure", "shift"):  # training-time augmentation, read by darknet
        s.get_float(key)
    return Crop(**ctx.base(s, (c, ch, cw)), crop_height=ch, crop_width=cw, flip=s.get_bool("flip"),
                noadjust=s.get_bool("noadjust"))


def _build_route(s: Section, ctx: _Ctx) -> Route:  # parse_route
    rel = s.get_int_list("layers")
    if not rel:
        raise s.error(f"[{s.kind}] needs 'layers='")
    idx = tuple(ctx.resolve(s, "layers", r) for r in rel)
    first = ctx.prev[idx[0]]
    c_total = 0
    for i in idx:
        c, h, w = ctx.prev[i].out
        if (h, w) != first.out[1:] or not (c and h and w):
            raise s.error(f"[{s.kind}] layers={','.join(map(str, rel))}: layer {i} outputs {w}x{h}x{c}, "
                          f"layer {idx[0]} outputs {first.out[2]}x{first.out[1]}x{first.out[0]}; "
                          "they cannot be concatenated", "layers")
        c_total += c
    return Route(**ctx.base(s, (c_total, first.out[1], first.out[2])), layers=idx)


def _build_shortcut(s: Section, ctx: _Ctx) -> Shortcut:  # parse_shortcut
    ctx.need_image(s)
    raw = s.get_int_list("from")
    if raw is None or len(raw) != 1:
        raise s.error(f"[{s.kind}] needs exactly one 'from=' layer")
    src = ctx.resolve(s, "from", raw[0])
    c1, h1, w1 = ctx.prev[src].out
    c2, h2, w2 = ctx.inp
    if not (c1 and h1 and w1):
        raise s.error(f"[{s.kind}] from={raw[0]}: layer {src} has no image output", "from")
    # shortcut_cpu: both sizes must be integer multiples along w and h by the same factor
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    if max(h1 // h2, 1) != stride or max(h2 // h1, 1) != sample:
        raise s.error(f"[{s.kind}] from={raw[0]}: layer {src} is {w1}x{h1}, this input is {w2}x{h2}; "
                      "the sizes differ by different factors in width and height", "from")
    return Shortcut(**ctx.base(s, ctx.inp), from_index=src, from_shape=(c1, h1, w1),
                    activation=_activation(s, "linear"), alpha=s.get_float("alpha", 1.0),
                    beta=s.get_float("beta", 1.0))


def _build_batchnorm(s: Section, ctx: _Ctx) -> Batchnorm:  # parse_batchnorm
    ctx.need_image(s)
    return Batchnorm(**ctx.base(s, ctx.inp))


BUILDERS: dict[str, Callable[[Section, _Ctx], LayerSpec]] = {
    "convolutional": _build_convolutional,
    "maxpool": _build_maxpool,
    "avgpool": _build_avgpool,
    "connected": _build_connected,
    "dropout": _build_dropout,
    "softmax": _build_softmax,
    "cost": _build_cost,
    "crop": _build_crop,
    "route": _build_route,
    "shortcut": _build_shortcut,
    "batchnorm": _build_batchnorm,
}


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetSpec:
    """A whole network: [net] options and the layer specs, in order."""
    path: str
    net: NetOptions
    layers: tuple[LayerSpec, ...]

    @property
    def input_shape(self) -> Shape:
        return (self.net.channels, self.net.height, self.net.width)

    @property
    def output_index(self) -> int:
        """The layer whose output is the network's (get_network_output_layer: the last non-cost layer)."""
        for spec in reversed(self.layers):
            if spec.kind != "cost":
                return spec.index
        return self.layers[-1].index

    @property
    def outputs(self) -> int:
        return self.layers[self.output_index].outputs

    @property
    def bflops(self) -> float:
        return sum(s.bflops for s in self.layers)

    @property
    def num_params(self) -> int:
        return sum(s.num_params for s in self.layers)

    @property
    def weights_bytes(self) -> int:
        """Exact size of a .weights file we write for this cfg (0.2.0 header: 3 int32 + int64 seen)."""
        saved = sum(s.num_params for s in self.layers if not s.common.dontsave)
        return 20 + 4 * saved

    def layer_table(self) -> str:
        """The table darknet prints to stderr while it loads the cfg (parse_network_cfg)."""
        lines = ["layer     filters    size              input                output"]
        lines += [f"{s.index:5d} {s.table_line()}" for s in self.layers]
        return "\n".join(lines) + "\n"

    def summary_line(self) -> str:
        return f"total  {self.bflops:.3f} BFLOPs  {self.num_params} params  {self.weights_bytes} bytes"


def build_specs(sections: list[Section], *, width: int | None = None, height: int | None = None) -> NetSpec:
    """Sections -> NetSpec. ``width``/``height`` override [net] (darknet's resize_network)."""
    head, body = sections[0], sections[1:]
    net = _parse_net(head, width, height)
    head.warn_unused()
    if not body:
        raise head.error("the cfg has no layers after [net]")
    ctx = _Ctx(index=0, inp=(net.channels, net.height, net.width), inputs=net.channels * net.height * net.width)
    for s in body:
        spec = BUILDERS[s.kind](s, ctx)
        s.warn_unused()
        ctx.prev.append(spec)
        ctx.index += 1
        ctx.inp, ctx.inputs = spec.out, spec.outputs
    return NetSpec(path=head.path, net=net, layers=tuple(ctx.prev))


def load_specs(path: str | os.PathLike, *, width: int | None = None, height: int | None = None) -> NetSpec:
    """Read a cfg file into a NetSpec (errors name file:line)."""
    return build_specs(read_cfg(path), width=width, height=height)
