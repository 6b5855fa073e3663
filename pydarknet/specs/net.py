"""The ``[net]`` section (``src/parser.c`` parse_net_options) and the whole network's spec: its layers and
the facts derived from them (output layer, kept feature maps, resizing, the batchnorm fold, figures, the
layer table darknet prints).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property

from ..cfg import Section, read_cfg
from ..errors import DarknetError
from .base import REGISTRY, Arrays, Ctx, LayerSpec, Shape
from .kinds import Convolutional, Shortcut, Softmax

Params = dict[int, Arrays]  # layer index -> array name -> array (spec layout shapes)

#: the [net] section's names (string_to_layer_type)
NET_NAMES = ("net", "network")



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


def parse_net(s: Section, width: int | None, height: int | None) -> NetOptions:
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



@dataclass(frozen=True)
class NetSpec:
    """A whole network: [net] options and the layer specs, in order. ``sections`` keeps the cfg's sections
    so the network can be rebuilt at another input size (``at_size``, darknet's resize_network)."""
    path: str
    net: NetOptions
    layers: tuple[LayerSpec, ...]
    sections: tuple[Section, ...] = field(default=(), compare=False, repr=False)
    #: batchnorm folded into the layers before it (``folded``): inference only, with its own weights layout
    is_folded: bool = False

    @property
    def input_shape(self) -> Shape:
        return (self.net.channels, self.net.height, self.net.width)

    # -- graph ------------------------------------------------------------------------------------------
    @cached_property
    def output_index(self) -> int:
        """The layer whose output is the network's (get_network_output_layer: the last non-cost layer)."""
        for spec in reversed(self.layers):
            if not spec.is_cost:
                return spec.index
        return self.layers[-1].index

    @cached_property
    def last_weighted_index(self) -> int | None:
        """The last layer with weights at or before the output layer (the one making the logits of a
        classifier), or None: where the low-precision engines go back to float."""
        out = self.output_index
        return next((s.index for s in reversed(self.layers[:out + 1]) if s.layout()), None)

    @property
    def outputs(self) -> int:
        return self.layers[self.output_index].outputs

    @cached_property
    def kept(self) -> frozenset[int]:
        """Layers whose outputs a later layer reads (a route's or a shortcut's sources): the feature maps an
        engine must keep beyond the next layer."""
        return frozenset(i for s in self.layers for i in s.reads)

    @cached_property
    def softmax_index(self) -> int:
        """The last [softmax]: training's cross-entropy works on its input."""
        for spec in reversed(self.layers):
            if isinstance(spec, Softmax):
                return spec.index
        raise DarknetError("has no [softmax] layer to train a classifier with", self.path)

    @property
    def fixing_layer(self) -> LayerSpec | None:
        """The first layer that ties the network to its input size (a connected, local or crop layer)."""
        return next((s for s in self.layers if s.fixes_input), None)

    @property
    def fixed_input(self) -> bool:
        return self.fixing_layer is not None

    @cached_property
    def residual_pairs(self) -> dict[int, int]:
        """convolution index -> index of the plain shortcut right after it, where the convolution is linear
        and nothing else reads its output (the last convolution of a ResNet block): an engine may compute
        ``act(conv(x) + earlier)`` in one step."""
        pairs = {}
        for s in self.layers:
            p = s.index - 1
            if (isinstance(s, Shortcut) and p >= 0 and isinstance(self.layers[p], Convolutional)
                    and self.layers[p].activation == "linear" and s.plain and s.from_index != p
                    and p not in self.kept and p != self.output_index):
                pairs[p] = s.index
        return pairs

    def at_size(self, width: int, height: int) -> "NetSpec":
        """The same network for a ``width`` x ``height`` input (resize_network); every layer's geometry is
        recomputed. Raises DarknetError for a network whose size is fixed (connected, local, crop)."""
        if (width, height) == (self.net.width, self.net.height):
            return self
        fixing = self.fixing_layer
        if fixing is not None:
            raise DarknetError(f"layer {fixing.index} ({fixing.kind}) fixes the input to {self.net.width}x"
                               f"{self.net.height}; it cannot take {width}x{height}", self.path)
        if not self.sections:
            raise DarknetError("this network spec was built without its cfg sections and cannot be resized",
                               self.path)
        resized = build_specs(list(self.sections), width=width, height=height, warn=False)
        return resized.folded_spec() if self.is_folded else resized

    def folded_spec(self) -> "NetSpec":
        """The network with every foldable batchnorm folded into the layer before it (inference)."""
        return replace(self, layers=tuple(s.folded() for s in self.layers), is_folded=True)

    def folded(self, params: Params) -> tuple["NetSpec", Params]:
        """``folded_spec()`` and the arrays that go with it (``numerics.fold_batchnorm``)."""
        return self.folded_spec(), {i: self.layers[i].fold(arrays) for i, arrays in params.items()}

    def cut(self, n: int) -> "NetSpec":
        """The first ``n`` layers (darknet's partial)."""
        return replace(self, layers=self.layers[:n])

    # -- figures ----------------------------------------------------------------------------------------
    @property
    def bflops(self) -> float:
        return sum(s.bflops for s in self.layers)

    @property
    def num_params(self) -> int:
        return sum(s.num_params for s in self.layers)

    @property
    def weights_bytes(self) -> int:
        """Exact size of a .weights file we write for this cfg (0.2.0 header: 3 int32 + int64 seen)."""
        return 20 + 4 * sum(s.num_params for s in self.layers if not s.common.dontsave)

    def activation_floats(self) -> int:
        """Floats per image alive at the worst moment of a forward pass: a layer's input, its output and its
        scratch buffer (``work_floats``), plus the kept maps still to be read. Linear in the layers and the
        links between them."""
        return max(self._activation_peaks(), default=0)

    def _activation_peaks(self) -> list[int]:
        last_read: dict[int, int] = {}
        for s in self.layers:
            for i in set(s.reads):
                last_read[i] = s.index
        released: dict[int, list[int]] = {}
        for i, last in last_read.items():
            released.setdefault(last, []).append(i)
        peaks, alive = [], 0
        inputs = self.net.channels * self.net.height * self.net.width
        for s in self.layers[: self.output_index + 1]:
            peaks.append(alive + inputs + s.outputs + s.work_floats)
            if s.index in last_read:
                alive += s.outputs
            for i in released.get(s.index, ()):
                alive -= self.layers[i].outputs
            inputs = s.outputs
        return peaks

    def memory_bytes(self, batch: int = 1, *, training: bool = False) -> int:
        """float32 bytes a forward pass of ``batch`` images needs: the parameters and the live feature maps.
        ``training``: every layer's output kept for the backward pass, its gradient, and the parameters'
        gradients and optimiser state."""
        if not training:
            return 4 * (self.num_params + batch * self.activation_floats())
        kept = sum(s.outputs for s in self.layers) + max((s.work_floats for s in self.layers), default=0)
        return 4 * (4 * self.num_params + 2 * batch * (kept + self.net.channels * self.net.height * self.net.width))

    def check_memory(self, batch: int = 1, *, training: bool = False, budget: int | None = None,
                     what: str = "") -> int:
        """The bytes ``memory_bytes`` plans, or a DarknetError naming the cfg line that asks for the most
        when they are over ``budget`` (default: ``budget.max_memory()``), before anything is allocated."""
        from .. import budget as _budget

        limit = _budget.max_memory() if budget is None else budget
        need = self.memory_bytes(batch, training=training)
        if need <= limit:
            return need
        params = max(self.layers, key=lambda s: s.num_params)
        peaks = self._activation_peaks()
        worst = self.layers[max(range(len(peaks)), key=peaks.__getitem__)] if peaks else params
        if 4 * params.num_params * (4 if training else 1) >= need / 2:
            culprit, detail = params, f"{params.num_params:,} parameters"
        elif batch > 1 and self.memory_bytes(1, training=training) <= limit:
            culprit, detail = None, f"batch={batch:,}"
        else:
            culprit = worst
            detail = (f"{worst.outputs:,} outputs" if worst.outputs >= worst.work_floats
                      else f"a {worst.work_floats:,}-float working buffer") + " per image"
        where = (f"layer {culprit.index} [{culprit.kind}] ({detail})" if culprit is not None
                 else f"[net] {detail}")
        line = culprit.lineno if culprit is not None else self.sections[0].lineno if self.sections else None
        job = f" for {what}" if what else ""
        raise DarknetError(f"needs about {_budget.human(need)}{job}, over the memory budget of "
                           f"{_budget.human(limit)}: {where}; raise it with --max-memory (or "
                           "$PYDARKNET_MAX_MEMORY) if this is intended", self.path, line=line)

    def layer_table(self) -> str:
        """The table darknet prints to stderr while it loads the cfg (parse_network_cfg)."""
        lines = ["layer     filters    size              input                output"]
        lines += [f"{s.index:5d} {s.table_line()}" for s in self.layers]
        return "\n".join(lines) + "\n"

    def summary_line(self) -> str:
        return f"total  {self.bflops:.3f} BFLOPs  {self.num_params} params  {self.weights_bytes} bytes"


def build_specs(sections: list[Section], *, width: int | None = None, height: int | None = None,
                warn: bool = True) -> NetSpec:
    """Sections -> NetSpec. ``width``/``height`` override [net] (darknet's resize_network). With ``warn``,
    keys that no builder read are reported (file:line)."""
    head, body = sections[0], sections[1:]
    net = parse_net(head, width, height)
    if warn:
        head.warn_unused()
    if not body:
        raise head.error("the cfg has no layers after [net]")
    ctx = Ctx(index=0, inp=(net.channels, net.height, net.width), inputs=net.channels * net.height * net.width)
    for s in body:
        spec = REGISTRY[s.kind].from_section(s, ctx)
        if warn:
            s.warn_unused()
        ctx.prev.append(spec)
        ctx.index += 1
        ctx.inp, ctx.inputs = spec.out, spec.outputs
    return NetSpec(path=head.path, net=net, layers=tuple(ctx.prev), sections=tuple(sections))


def load_specs(path: str | os.PathLike, *, width: int | None = None, height: int | None = None) -> NetSpec:
    """Read a cfg file into a NetSpec (errors name file:line)."""
    return build_specs(read_cfg(path), width=width, height=height)
