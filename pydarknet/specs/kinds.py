"""The layer kinds of darknet's classifiers, one frozen dataclass each, with the builder that reads it from a
cfg section beside its fields (``src/parser.c`` parse_*, ``src/*_layer.c`` make_*_layer).

Each spec's builder cites the darknet function whose defaults and shape rules it follows; its
``table_line`` is the line darknet prints for the layer while loading the cfg.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ..cfg import Section
from ..numerics import fold_batchnorm
from .base import Arrays, Ctx, Layout, LayerSpec, activation, bn_layout, positive, register


class _FoldsBatchnorm:
    """A linear layer (``weights`` with output units first, ``biases``) with darknet's optional batchnorm after
    it (``batch_normalize``), which inference folds into the weights (numerics.fold_batchnorm)."""

    def folded(self):
        return replace(self, batch_normalize=False) if self.batch_normalize else self

    def fold(self, arrays: Arrays) -> Arrays:
        if not self.batch_normalize:
            return arrays
        w, b = fold_batchnorm(arrays["weights"], arrays["biases"], arrays["scales"], arrays["rolling_mean"],
                              arrays["rolling_variance"])
        return {"biases": b, "weights": w}


@register
@dataclass(frozen=True)
class Convolutional(_FoldsBatchnorm, LayerSpec):
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str
    flipped: bool
    kind: ClassVar[str] = "convolutional"
    names: ClassVar[tuple[str, ...]] = ("convolutional", "conv")

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Convolutional":  # parse_convolutional
        ctx.need_image(s)
        c, h, w = ctx.inp
        n = positive(s, "filters", s.get_int("filters", 1))
        size = positive(s, "size", s.get_int("size", 1))
        stride = positive(s, "stride", s.get_int("stride", 1))
        groups = positive(s, "groups", s.get_int("groups", 1))
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
        if s.get_int("xnor", 0):  # forward_convolutional_layer binarizes the weights and the input
            raise s.error(f"[{s.kind}] xnor=1 (XNOR-net: binarized weights and inputs) is not supported", "xnor")
        return cls(**ctx.base(s, (n, oh, ow)), filters=n, size=size, stride=stride, padding=padding,
                   groups=groups, batch_normalize=s.get_bool("batch_normalize"),
                   activation=activation(s, "logistic"), flipped=s.get_bool("flipped"))

    def layout(self) -> Layout:  # load_convolutional_weights
        n, c = self.filters, self.inp[0]
        bn = bn_layout(n) if self.batch_normalize else []
        return [("biases", (n,))] + bn + [("weights", (n, c // self.groups, self.size, self.size))]

    def file_shape(self, name, shape, header):
        if name == "weights" and self.flipped:  # (c*size*size) x n in the file, transposed on load
            n, cg, k, _ = shape
            return (cg * k * k, n)
        return shape

    @property
    def units(self) -> int:
        return self.filters

    @property
    def bflops(self) -> float:
        _, oh, ow = self.out
        return 2.0 * self.filters * self.size * self.size * self.inp[0] / self.groups * oh * ow / 1e9

    @property
    def work_floats(self) -> int:  # the padded input plus im2col's columns (the NumPy engine's)
        c, h, w = self.inp
        _, oh, ow = self.out
        return c * (h + 2 * self.padding) * (w + 2 * self.padding) + c * self.size * self.size * oh * ow

    def table_line(self) -> str:  # make_convolutional_layer
        c, h, w = self.inp
        oc, oh, ow = self.out
        return (f"conv  {self.filters:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}"
                f"   ->  {ow:4d} x{oh:4d} x{oc:4d}  {self.bflops:5.3f} BFLOPs")


@register
@dataclass(frozen=True)
class Local(LayerSpec):
    """A locally connected layer: a convolution whose kernel differs at every output position
    (``src/local_layer.c``)."""
    filters: int
    size: int
    stride: int
    pad: int
    activation: str
    kind: ClassVar[str] = "local"
    names: ClassVar[tuple[str, ...]] = ("local",)
    fixes_input: ClassVar[bool] = True

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Local":  # parse_local, make_local_layer
        ctx.need_image(s)
        c, h, w = ctx.inp
        n = positive(s, "filters", s.get_int("filters", 1))
        size = positive(s, "size", s.get_int("size", 1))
        stride = positive(s, "stride", s.get_int("stride", 1))
        pad = s.get_int("pad", 0)  # pixels of zero padding (im2col's pad), not convolutional's flag
        if pad < 0:
            raise s.error(f"[{s.kind}] pad={pad}: must not be negative", "pad")
        # NOTE: local_out_height / local_out_width: (h - size)/stride + 1 without padding, (h - 1)/stride + 1
        # with any; forward_local_layer then lays out im2col_cpu's (h + 2*pad - size)/stride + 1 columns with
        # that stride. Where the two differ, darknet reads outside its buffers: refused.
        oh = (h - (1 if pad else size)) // stride + 1
        ow = (w - (1 if pad else size)) // stride + 1
        if oh <= 0 or ow <= 0:
            raise s.error(f"[{s.kind}] a {size}x{size} kernel does not fit the {w}x{h} input")
        if ((h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1) != (oh, ow):
            raise s.error(f"[{s.kind}] pad={pad} with size={size}: darknet's local layer gives {ow}x{oh} outputs "
                          f"but its im2col makes {(w + 2 * pad - size) // stride + 1}x"
                          f"{(h + 2 * pad - size) // stride + 1} (use pad=0 or pad={(size - 1) // 2} with an odd "
                          "size)", "pad")
        return cls(**ctx.base(s, (n, oh, ow)), filters=n, size=size, stride=stride, pad=pad,
                   activation=activation(s, "logistic"))

    @property
    def locations(self) -> int:
        return self.out[1] * self.out[2]

    def layout(self) -> Layout:  # load_weights_upto, LOCAL: biases (l.outputs), then the weights
        n, oh, ow = self.out
        return [("biases", (n, oh, ow)), ("weights", (oh * ow, n, self.inp[0] * self.size * self.size))]

    @property
    def units(self) -> int:
        return self.filters

    @property
    def bflops(self) -> float:
        return 2.0 * self.locations * self.filters * self.inp[0] * self.size * self.size / 1e9

    @property
    def work_floats(self) -> int:  # im2col's columns of the padded input
        return self.inp[0] * self.size * self.size * self.locations + self.inp[0] * (
            self.inp[1] + 2 * self.pad) * (self.inp[2] + 2 * self.pad)

    def table_line(self) -> str:  # make_local_layer
        c, h, w = self.inp
        n, oh, ow = self.out
        return f"Local Layer: {h} x {w} x {c} image, {n} filters -> {oh} x {ow} x {n} image"


@register
@dataclass(frozen=True)
class Maxpool(LayerSpec):
    size: int
    stride: int
    padding: int
    kind: ClassVar[str] = "maxpool"
    names: ClassVar[tuple[str, ...]] = ("maxpool", "max")

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Maxpool":  # parse_maxpool
        ctx.need_image(s)
        c, h, w = ctx.inp
        stride = positive(s, "stride", s.get_int("stride", 1))
        size = positive(s, "size", s.get_int("size", stride))
        padding = s.get_int("padding", size - 1)
        if padding < 0:
            raise s.error(f"[{s.kind}] padding={padding}: must not be negative", "padding")
        oh = (h + padding - size) // stride + 1
        ow = (w + padding - size) // stride + 1
        if oh <= 0 or ow <= 0:
            raise s.error(f"[{s.kind}] a {size}x{size} window does not fit the {w}x{h} input")
        return cls(**ctx.base(s, (c, oh, ow)), size=size, stride=stride, padding=padding)

    @property
    def window_pads(self) -> tuple[int, int, int]:
        """(lead, right, bottom): the cells the windows reach before the image (``-padding/2``) and past its
        right and bottom edges (negative: the last columns/rows that no window reads).

        NOTE: forward_maxpool_layer (src/maxpool_layer.c) starts the windows at ``-padding/2``; cells outside
        the image never win."""
        _, h, w = self.inp
        _, oh, ow = self.out
        lead = self.padding // 2
        return lead, (ow - 1) * self.stride + self.size - w - lead, (oh - 1) * self.stride + self.size - h - lead

    @property
    def empty_windows(self) -> bool:
        """Some window lies wholly outside the image, where darknet leaves -FLT_MAX."""
        return max(self.window_pads) >= self.size

    @property
    def work_floats(self) -> int:  # the input padded by the window offsets
        c, h, w = self.inp
        lead, right, bottom = self.window_pads
        return c * (h + lead + max(bottom, 0)) * (w + lead + max(right, 0))

    def table_line(self) -> str:  # make_maxpool_layer
        c, h, w = self.inp
        oc, oh, ow = self.out
        return (f"max          {self.size} x {self.size} / {self.stride}  {w:4d} x{h:4d} x{c:4d}"
                f"   ->  {ow:4d} x{oh:4d} x{oc:4d}")


@register
@dataclass(frozen=True)
class Avgpool(LayerSpec):
    kind: ClassVar[str] = "avgpool"
    names: ClassVar[tuple[str, ...]] = ("avgpool", "avg")

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Avgpool":  # parse_avgpool: a global average
        ctx.need_image(s)
        return cls(**ctx.base(s, (ctx.inp[0], 1, 1)))

    def table_line(self) -> str:  # make_avgpool_layer
        c, h, w = self.inp
        return f"avg                     {w:4d} x{h:4d} x{c:4d}   ->  {c:4d}"


@register
@dataclass(frozen=True)
class Connected(_FoldsBatchnorm, LayerSpec):
    output: int
    batch_normalize: bool
    activation: str
    kind: ClassVar[str] = "connected"
    names: ClassVar[tuple[str, ...]] = ("connected", "conn")
    fixes_input: ClassVar[bool] = True

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Connected":  # parse_connected
        if ctx.inputs <= 0:
            raise s.error(f"[{s.kind}] has no inputs")
        n = positive(s, "output", s.get_int("output", 1))
        return cls(**ctx.base(s, (n, 1, 1)), output=n, batch_normalize=s.get_bool("batch_normalize"),
                   activation=activation(s, "logistic"))

    def layout(self) -> Layout:  # load_connected_weights: biases, weights, then batchnorm
        n = self.output
        return [("biases", (n,)), ("weights", (n, self.inputs))] + (bn_layout(n) if self.batch_normalize else [])

    def file_shape(self, name, shape, header):
        if name == "weights" and header.transpose:  # old files: inputs x outputs
            return (shape[1], shape[0])
        return shape

    @property
    def units(self) -> int:
        return self.output

    @property
    def bflops(self) -> float:
        return 2.0 * self.inputs * self.output / 1e9

    def table_line(self) -> str:  # make_connected_layer
        return f"connected                            {self.inputs:4d}  ->  {self.output:4d}"


@register
@dataclass(frozen=True)
class Dropout(LayerSpec):
    probability: float
    kind: ClassVar[str] = "dropout"
    names: ClassVar[tuple[str, ...]] = ("dropout",)

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Dropout":  # parse_dropout
        p = s.get_float("probability", 0.5)
        if not 0.0 <= p < 1.0:
            raise s.error(f"[{s.kind}] probability={p}: must be in [0, 1)", "probability")
        return cls(**ctx.base(s, ctx.inp, ctx.inputs), probability=p)

    def table_line(self) -> str:  # make_dropout_layer
        return f"dropout       p = {self.probability:.2f}               {self.inputs:4d}  ->  {self.inputs:4d}"


@register
@dataclass(frozen=True)
class Softmax(LayerSpec):
    groups: int
    temperature: float
    kind: ClassVar[str] = "softmax"
    names: ClassVar[tuple[str, ...]] = ("softmax", "soft")

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Softmax":  # parse_softmax
        groups = positive(s, "groups", s.get_int("groups", 1))
        if ctx.inputs % groups:
            raise s.error(f"[{s.kind}] groups={groups} does not divide its {ctx.inputs} inputs", "groups")
        temperature = s.get_float("temperature", 1.0)
        if temperature == 0:
            raise s.error(f"[{s.kind}] temperature must not be 0", "temperature")
        if s.get_str("tree") is not None:
            raise s.error(f"[{s.kind}] hierarchical softmax (tree=) is not supported", "tree")
        for key in ("spatial", "noloss"):
            s.get_str(key)
        return cls(**ctx.base(s, (0, 0, 0), ctx.inputs), groups=groups, temperature=temperature)

    def table_line(self) -> str:  # make_softmax_layer
        return f"softmax                                        {self.outputs:4d}"


COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


@register
@dataclass(frozen=True)
class Cost(LayerSpec):
    cost_type: str
    scale: float
    kind: ClassVar[str] = "cost"
    names: ClassVar[tuple[str, ...]] = ("cost",)
    is_cost: ClassVar[bool] = True

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Cost":  # parse_cost
        cost_type = s.get_str("type", "sse")
        if cost_type not in COST_TYPES:
            raise s.error(f"[{s.kind}] type={cost_type!r}: expected one of {', '.join(COST_TYPES)}", "type")
        for key in ("ratio", "noobject_scale", "thresh"):
            s.get_str(key)
        return cls(**ctx.base(s, (0, 0, 0), ctx.inputs), cost_type=cost_type, scale=s.get_float("scale", 1.0))

    def table_line(self) -> str:  # make_cost_layer
        return f"cost                                           {self.outputs:4d}"


@register
@dataclass(frozen=True)
class Crop(LayerSpec):
    crop_height: int
    crop_width: int
    flip: bool
    noadjust: bool
    kind: ClassVar[str] = "crop"
    names: ClassVar[tuple[str, ...]] = ("crop",)
    fixes_input: ClassVar[bool] = True

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Crop":  # parse_crop
        ctx.need_image(s)
        c, h, w = ctx.inp
        ch = positive(s, "crop_height", s.get_int("crop_height", 1))
        cw = positive(s, "crop_width", s.get_int("crop_width", 1))
        if ch > h or cw > w:
            raise s.error(f"[{s.kind}] a {cw}x{ch} crop does not fit the {w}x{h} input")
        for key in ("angle", "saturation", "exposure", "shift"):  # training-time augmentation, read by darknet
            s.get_float(key)
        return cls(**ctx.base(s, (c, ch, cw)), crop_height=ch, crop_width=cw, flip=s.get_bool("flip"),
                   noadjust=s.get_bool("noadjust"))

    @property
    def offset(self) -> tuple[int, int]:
        """(dy, dx) of the centred crop taken at test time (forward_crop_layer)."""
        _, h, w = self.inp
        return (h - self.crop_height) // 2, (w - self.crop_width) // 2

    def table_line(self) -> str:  # make_crop_layer
        c, h, w = self.inp
        return f"Crop Layer: {h} x {w} -> {self.crop_height} x {self.crop_width} x {c} image"


@register
@dataclass(frozen=True)
class Route(LayerSpec):
    layers: tuple[int, ...]  # absolute indices
    part_shapes: tuple[tuple[int, int, int], ...]  # (c, h, w) of each of them
    kind: ClassVar[str] = "route"
    names: ClassVar[tuple[str, ...]] = ("route",)

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Route":  # parse_route
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
        return cls(**ctx.base(s, (c_total, first.out[1], first.out[2])), layers=idx,
                   part_shapes=tuple(ctx.prev[i].out for i in idx))

    @property
    def reads(self) -> tuple[int, ...]:
        return self.layers

    def table_line(self) -> str:  # make_route_layer
        return "route " + "".join(f" {i}" for i in self.layers)


@register
@dataclass(frozen=True)
class Shortcut(LayerSpec):
    from_index: int  # absolute
    from_shape: tuple[int, int, int]
    activation: str
    alpha: float
    beta: float
    kind: ClassVar[str] = "shortcut"
    names: ClassVar[tuple[str, ...]] = ("shortcut",)

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Shortcut":  # parse_shortcut
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
        return cls(**ctx.base(s, ctx.inp), from_index=src, from_shape=(c1, h1, w1),
                   activation=activation(s, "linear"), alpha=s.get_float("alpha", 1.0), beta=s.get_float("beta", 1.0))

    @property
    def reads(self) -> tuple[int, ...]:
        return (self.from_index,)

    @property
    def geometry(self) -> tuple[int, int, tuple[int, int, int]]:
        """(stride, sample, overlap) of shortcut_cpu (src/blas.c): the added map is read every ``stride``
        cells, the output written every ``sample`` cells, over ``overlap`` = (min c, min h, min w)."""
        c2, h2, w2 = self.inp
        c1, h1, w1 = self.from_shape
        return max(w1 // w2, 1), max(w2 // w1, 1), (min(c1, c2), min(h1, h2), min(w1, w2))

    @property
    def plain(self) -> bool:
        """``out + add`` of two maps of one shape (the activation after it aside): what an engine may fuse
        into the convolution before it."""
        return self.from_shape == self.inp and (self.alpha, self.beta) == (1.0, 1.0)

    def table_line(self) -> str:  # make_shortcut_layer
        c2, h2, w2 = self.from_shape
        c, h, w = self.inp
        return (f"res  {self.from_index:3d}                {w2:4d} x{h2:4d} x{c2:4d}"
                f"   ->  {w:4d} x{h:4d} x{c:4d}")


@register
@dataclass(frozen=True)
class Batchnorm(LayerSpec):
    kind: ClassVar[str] = "batchnorm"
    names: ClassVar[tuple[str, ...]] = ("batchnorm",)

    @classmethod
    def from_section(cls, s: Section, ctx: Ctx) -> "Batchnorm":  # parse_batchnorm
        ctx.need_image(s)
        return cls(**ctx.base(s, ctx.inp))

    def layout(self) -> Layout:  # load_batchnorm_weights (its biases are never loaded or saved)
        return bn_layout(self.out[0])

    def loaded_layout(self) -> Layout:
        return [] if self.common.dontload else self.layout()  # dontloadscales does not apply to it

    def table_line(self) -> str:  # make_batchnorm_layer
        c, h, w = self.inp
        return f"Batch Normalization Layer: {w} x {h} x {c} image"
