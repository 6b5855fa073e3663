"""Property tests: on generated cfg text and weights bytes, nothing but DarknetError ever escapes."""
from __future__ import annotations

import struct
import warnings

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pydarknet.cfg import parse_cfg
from pydarknet.errors import DarknetError
from pydarknet.specs import build_specs
from pydarknet.weights import read_weights, weights_bytes, Header

SECTIONS = ["net", "network", "convolutional", "conv", "maxpool", "max", "avgpool", "avg", "connected", "conn",
            "dropout", "softmax", "soft", "cost", "crop", "route", "shortcut", "batchnorm", "yolo", "Conv", ""]
KEYS = ["width", "height", "channels", "batch", "subdivisions", "filters", "size", "stride", "pad", "padding",
        "groups", "batch_normalize", "activation", "output", "probability", "groups", "temperature", "layers",
        "from", "crop_height", "crop_width", "policy", "steps", "scales", "type", "flipped", "dontload", "bogus"]
VALUES = st.one_of(
    st.integers(-5, 70).map(str), st.sampled_from(["leaky", "linear", "relu", "mish", "nope", "poly", "steps",
                                                   "sse", "-1", "-2,-1", "0,1", "1.5", ".1", "1e3", "nan", "inf",
                                                   "", "3,", "0x10", "2.0"]),
    st.text(max_size=6))


@st.composite
def cfg_texts(draw):
    lines = []
    if draw(st.booleans()):
        lines += ["[net]", f"width={draw(st.integers(0, 40))}", f"height={draw(st.integers(0, 40))}",
                  f"channels={draw(st.integers(0, 4))}"]
    for _ in range(draw(st.integers(0, 8))):
        lines.append(f"[{draw(st.sampled_from(SECTIONS))}]")
        for _ in range(draw(st.integers(0, 5))):
            lines.append(f"{draw(st.sampled_from(KEYS))}={draw(VALUES)}")
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.text(max_size=12)))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return sep.join(lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg_texts())
@example("[net]\nwidth=1\nheight=1\nchannels=1\n[softmax]\n\n[connected]")  # flat input after softmax
def test_cfg_reader_raises_only_darknet_errors(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = build_specs(parse_cfg(text, "gen.cfg"))
        except DarknetError as e:
            assert str(e).startswith("gen.cfg")
            return
    for spec in net.layers:  # whatever parses has consistent shapes and layouts
        assert spec.outputs >= 0 and spec.num_params >= 0
        assert all(d > 0 for _, shape in spec.layout() for d in shape)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_darknet_errors(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            build_specs(parse_cfg(text, "any.cfg"))
        except DarknetError:
            pass


SMALL = build_specs(parse_cfg("[net]\nwidth=4\nheight=4\nchannels=2\n[convolutional]\nbatch_normalize=1\n"
                              "filters=3\nsize=3\npad=1\n[connected]\noutput=4\n[softmax]\n", "s.cfg"))
VALID = weights_bytes(SMALL, {
    s.index: {n: np.ones(shape, np.float32) for n, shape in s.layout()} for s in SMALL.layers if s.layout()},
    Header())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_weights_reader_raises_only_darknet_errors(tmp_path_factory, data):
    kind = data.draw(st.sampled_from(["random", "truncate", "extend", "header", "flip"]))
    blob = bytearray(VALID)
    if kind == "random":
        blob = bytearray(data.draw(st.binary(max_size=len(VALID) + 40)))
    elif kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(VALID)))]
    elif kind == "extend":
        blob += data.draw(st.binary(min_size=1, max_size=64))
    elif kind == "header":
        major, minor, rev = (data.draw(st.integers(-2**31, 2**31 - 1)) for _ in range(3))
        blob[:12] = struct.pack("<iii", major, minor, rev)
    else:
        pos = data.draw(st.integers(20, len(VALID) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("w") / "gen.weights"
    path.write_bytes(bytes(blob))
    try:
        read_weights(path, SMALL, upto=data.draw(st.sampled_from([None, 1, 2])))
    except DarknetError as e:
        assert str(e).startswith(str(path))
