"""Issue 10, "How it is checked": fuzzing every parser in CI.

One hypothesis test per parser (cfg, weights header and body, .data files, image lists, label files, the
model-facts sidecar, image headers), each with at least 2,000 examples, structured-but-mutated inputs (a
grammar of darknet's sections, keys and values, darknet's own cfgs with bytes flipped, valid weights and
images with their header fields bent). The property, per example: the call returns a sane result or raises a
DarknetError whose message is one line naming a file; nothing else escapes, and each example stays under
the deadline (``DEADLINE``) and ``MEMORY_BOUND`` of resident-memory growth (tests/peakrss.py). A smaller
set of examples goes through ``pydarknet.cli.main``: exit 2 and exactly one ``pydarknet: error:`` line.

Marked ``fuzz`` (pyproject.toml); CI runs them with everything else (derandomized by the "ci" profile in
conftest.py, so a red run replays). ``PYDARKNET_FUZZ_EXAMPLES=N`` scales every test's example count (a
longer local hunt: ``PYDARKNET_FUZZ_EXAMPLES=20000 pytest -m fuzz``). A failure prints the falsifying example
and the ``@reproduce_failure`` blob.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
import warnings
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pydarknet import atomic, budget
from pydarknet.errors import DarknetError, one_line
from peakrss import peak_growth

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_CFG = Path(os.environ.get("PYDARKNET_REFERENCE", "/usr/share/darknet")) / "cfg"
ZOO_CFG = ROOT / "pydarknet" / "cfgs"

#: examples per parser test (the issue asks for at least 2,000); the CLI tests run a fraction of it
EXAMPLES = max(int(os.environ.get("PYDARKNET_FUZZ_EXAMPLES", "2000")), 1)
CLI_EXAMPLES = max(EXAMPLES // 8, 1)
#: one example's bound: far below the product's 10 s, far above what a small input takes on a 2-core machine
DEADLINE = timedelta(seconds=3)
#: one example's resident-memory growth bound (the product's promise is 512 MiB a case)
MEMORY_BOUND_KIB = 256 << 10
#: the memory budget (pydarknet.budget) during the fuzz run: a fuzzed cfg that passes plans little
FUZZ_BUDGET = 64 << 20

FUZZ = settings(max_examples=EXAMPLES, deadline=DEADLINE, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
FUZZ_CLI = settings(FUZZ, max_examples=CLI_EXAMPLES)


@pytest.fixture(scope="module", autouse=True)
def small_budget():
    budget.set_max_memory(FUZZ_BUDGET)
    yield
    budget.set_max_memory(None)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One directory for the whole module: every example rewrites its few files in place (cheap)."""
    return tmp_path_factory.mktemp("fuzz")


# -- the property ----------------------------------------------------------------------------------------


def assert_clean_error(e: DarknetError, allowed) -> None:
    """One line, starting with the file it names, which is one of ``allowed`` (None in it: no file needed)."""
    msg = str(e)
    assert "\n" not in msg and "\r" not in msg, repr(msg)
    assert msg.strip(), "an empty message"
    allowed = [None if a is None else os.fspath(a) for a in allowed]
    if e.path is None:
        assert None in allowed, f"the message names no file: {msg!r}"
        return
    assert e.path in allowed, f"names {e.path!r}, not one of {allowed}: {msg!r}"
    assert msg.startswith(one_line(e.path)), msg


def bounded(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with warnings silenced, its resident-memory growth under the bound. Returns
    (result, None) or (None, the DarknetError). Any other exception propagates: the test fails on it."""
    with peak_growth() as peak:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = fn(*args, **kwargs), None
        except DarknetError as e:
            result = None, e
    assert peak.kib < MEMORY_BOUND_KIB, f"resident memory grew {peak.kib >> 10} MiB"
    return result


# -- byte mutations ---------------------------------------------------------------------------------------

INTERESTING_BYTES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\r", b"\n", b"\r\n", b"\f", b"\v", b"\xef\xbb\xbf",
                     b"\xe2\x80\xa8", b"\xc2\x85", b"\xc3", b"\xed\xa0\x80", b"=", b"[", b"]", b"#", b";", b",",
                     b"-", b"0", b"9" * 12, b" ", b"\t", b"[net]\n", b"\n[route]\nlayers=-9\n", b"nan", b"1e309"]


@st.composite
def mutated(draw, data: bytes, max_ops: int = 4, region: int | None = None) -> bytes:
    """``data`` with up to ``max_ops`` random edits: byte set/flip, insertion of an interesting token,
    deletion, duplication of a slice, truncation. ``region``: positions mostly within the first ``region``
    bytes (a header)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        n = len(buf)
        limit = n if region is None or draw(st.integers(0, 4)) == 0 else min(n, region)
        pos = draw(st.integers(0, max(limit, 1) - 1)) if limit else 0
        op = draw(st.sampled_from(["set", "flip", "insert", "delete", "dup", "truncate", "int"]))
        if op == "set" and n:
            buf[pos] = draw(st.sampled_from([0, 1, 0x7f, 0x80, 0xff, draw(st.integers(0, 255))]))
        elif op == "flip" and n:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            buf[pos:pos] = draw(st.sampled_from(INTERESTING_BYTES))
        elif op == "delete" and n:
            del buf[pos:pos + draw(st.integers(1, 64))]
        elif op == "dup" and n:
            buf[pos:pos] = buf[pos:pos + draw(st.integers(1, 256))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "int" and n >= 4:
            fmt = draw(st.sampled_from(["<H", ">H", "<I", ">I", "<i", ">i"]))
            size = struct.calcsize(fmt)
            lo, hi = {"H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF), "i": (-(1 << 31), (1 << 31) - 1)}[fmt[1]]
            value = draw(st.one_of(st.sampled_from([lo, hi, 0, 1, 2, 3, 255, 256, 30000, 65535, 1 << 20,
                                                    (1 << 31) - 1]).filter(lambda v: lo <= v <= hi),
                                   st.integers(lo, hi)))
            pos = min(pos, n - size)
            buf[pos:pos + size] = struct.pack(fmt, value)
    return bytes(buf)


# ===========================================================================================================
# cfg files


from pydarknet.specs import load_specs  # noqa: E402

NET_KEYS = ["width", "height", "channels", "batch", "subdivisions", "inputs", "learning_rate", "momentum", "decay",
            "policy", "steps", "scales", "step", "scale", "gamma", "power", "max_batches", "max_crop", "min_crop",
            "angle", "aspect", "saturation", "exposure", "hue", "center", "random", "adam", "B1", "B2", "eps",
            "burn_in", "time_steps"]
KIND_KEYS = {
    "convolutional": ["filters", "size", "stride", "pad", "padding", "groups", "batch_normalize", "activation",
                      "flipped", "binary", "xnor", "dot"],
    "local": ["filters", "size", "stride", "pad", "activation"],
    "maxpool": ["size", "stride", "padding"],
    "avgpool": [],
    "connected": ["output", "batch_normalize", "activation"],
    "dropout": ["probability"],
    "softmax": ["groups", "temperature", "tree", "spatial", "noloss"],
    "cost": ["type", "scale", "ratio", "noobject_scale", "thresh"],
    "crop": ["crop_height", "crop_width", "flip", "noadjust", "angle", "saturation", "exposure", "shift"],
    "route": ["layers"],
    "shortcut": ["from", "activation", "alpha", "beta"],
    "batchnorm": [],
}
COMMON = ["dontload", "dontloadscales", "dontsave", "stopbackward", "learning_rate", "numload", "onlyforward",
          "truth", "smooth", "clip"]
ALIASES = {"convolutional": ["convolutional", "conv", "Convolutional", "CONV"], "maxpool": ["maxpool", "max"],
           "avgpool": ["avgpool", "avg"], "connected": ["connected", "conn"], "softmax": ["softmax", "soft"],
           "local": ["local"], "dropout": ["dropout"], "cost": ["cost"], "crop": ["crop"], "route": ["route"],
           "shortcut": ["shortcut"], "batchnorm": ["batchnorm"]}
ODD_SECTIONS = ["yolo", "region", "upsample", "rnn", "gru", "lstm", "detection", "reorg", "", " ", "net ", "x]",
                "network", "net", "normalization", "deconvolutional", "l2norm", "logistic", "activation"]
#: values that break naive parsers: huge, negative, zero, non-numeric, non-finite, hex, unicode, breaks, NUL
WILD = ["0", "-1", "-2", "-100", "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967296",
        "99999999999999999999999", "1e3", "1e309", "-1e309", "1.5", ".5", "-0", "+3", "0x10", "010", "1_0", "1__0",
        "\u0661\u0662", "\uff13", "\u00b2", " 3", "3 ", "nan", "NaN", "inf", "-inf", "infinity", "", "abc", "3,", ",",
        "1,2", "-1,-2", "0,-1,-3", "1,,2", "1;2", "3#4", "3\x00", "\x0c3", "3\u2028", "\u2028", "\x85", "\r", "é",
        "\ud7ff", "1e-45", "1e-400", "3.4e38", "3.5e38", "leaky", "linear", "logistic", "mish", "nope", "poly",
        "steps", "sse", "masked", "L1", "constant", "true", "1.0", "2.0", "0.0", "-0.5", "1e2", "9" * 400]
ACTIVATION_VALUES = ["leaky", "linear", "relu", "logistic", "tanh", "mish", "swish", "relu6", "elu", "selu",
                     "stair", "hardtan", "lhtan", "plse", "ramp", "loggy", "relie", "Leaky", "nope"]
SMALL = {
    "width": (1, 24), "height": (1, 24), "channels": (1, 4), "batch": (1, 8), "subdivisions": (1, 4),
    "filters": (1, 8), "size": (1, 5), "stride": (1, 3), "pad": (0, 2), "padding": (0, 4), "groups": (1, 4),
    "batch_normalize": (0, 1), "flipped": (0, 1), "output": (1, 16), "crop_height": (1, 12),
    "crop_width": (1, 12), "dontload": (0, 1), "dontloadscales": (0, 1), "dontsave": (0, 1), "flip": (0, 1),
    "noadjust": (0, 1), "step": (1, 100), "max_batches": (0, 1000), "burn_in": (0, 10),
}


@st.composite
def cfg_value(draw, key: str) -> str:
    if draw(st.integers(0, 5)) == 0:
        return draw(st.one_of(st.sampled_from(WILD), st.text(max_size=8)))
    if key in SMALL:
        lo, hi = SMALL[key]
        return str(draw(st.integers(lo, hi)))
    if key == "activation":
        return draw(st.sampled_from(ACTIVATION_VALUES))
    if key == "layers":
        return ",".join(str(v) for v in draw(st.lists(st.integers(-5, 5), min_size=1, max_size=3)))
    if key == "from":
        return str(draw(st.integers(-4, 3)))
    if key in ("steps", "scales"):
        return ",".join(draw(st.lists(st.sampled_from(["1", "10", ".1", "2", "-1", "100"]), min_size=1, max_size=3)))
    if key == "policy":
        return draw(st.sampled_from(["constant", "step", "steps", "exp", "poly", "sigmoid", "random", "bogus"]))
    if key == "type":
        return draw(st.sampled_from(["sse", "masked", "smooth", "L1", "seg", "wgan", "bogus"]))
    if key == "probability":
        return draw(st.sampled_from(["0", ".5", "0.9", "1", "-0.1", "0.999999"]))
    if key in ("temperature", "alpha", "beta", "scale", "learning_rate", "momentum", "decay", "gamma", "power",
               "angle", "aspect", "saturation", "exposure", "hue", "B1", "B2", "eps", "shift", "ratio"):
        return draw(st.sampled_from(["0", "1", "-1", ".5", "2", "1e-30", "1e30", "1e-3", "100"]))
    return str(draw(st.integers(-2, 8)))


@st.composite
def grammar_cfg(draw) -> bytes:
    """A cfg from darknet's sections, keys and values (mostly sensible, some wild), in odd layouts."""
    sections = []
    if draw(st.integers(0, 15)):
        keys = ["width", "height", "channels"] + draw(st.lists(st.sampled_from(NET_KEYS), max_size=4))
        sections.append((draw(st.sampled_from(["net", "net", "network", "NET"])),
                         [(k, draw(cfg_value(k))) for k in keys if draw(st.integers(0, 20))]))
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 30)) == 0:
            sections.append((draw(st.sampled_from(ODD_SECTIONS)), []))
            continue
        kind = draw(st.sampled_from(sorted(KIND_KEYS)))
        keys = draw(st.lists(st.sampled_from(KIND_KEYS[kind] or ["bogus"]), max_size=6))
        if draw(st.integers(0, 6)) == 0:
            keys.append(draw(st.sampled_from(COMMON + ["bogus", "", "Filters", "size "])))
        sections.append((draw(st.sampled_from(ALIASES[kind])), [(k, draw(cfg_value(k))) for k in keys]))
    nl = draw(st.sampled_from(["\n", "\n", "\r\n", "\r", "\n\n"]))
    out = []
    if draw(st.integers(0, 20)) == 0:
        out.append("\ufeff")
    for name, options in sections:
        head = draw(st.sampled_from(["[{}]", "[{}]", "[{}]", " [ {} ] ", "[{}", "{}]", "[{}] # c", "[{}]]"]))
        out.append(head.format(name) + nl)
        for key, value in options:
            form = draw(st.sampled_from(["{}={}", "{}={}", "{}={}", "{} = {}", "{}={} # note", "\t{}={}",
                                         "{}=={}", "{}:{}", "{}{}"]))
            out.append(form.format(key, value) + nl)
            if draw(st.integers(0, 12)) == 0:
                out.append(draw(st.sampled_from(["#", ";x", "", " ", "\f", "\u2028", "\x00", "garbage", "="]))
                           + nl)
    return draw(mutated("".join(out).encode("utf-8", "surrogatepass"), max_ops=2))


def _reference_cfgs() -> list[bytes]:
    paths = sorted(REFERENCE_CFG.glob("*.cfg")) if REFERENCE_CFG.is_dir() else []
    paths += sorted(ZOO_CFG.glob("*.cfg"))
    return [p.read_bytes() for p in paths]


REAL_CFGS = _reference_cfgs()
_SIZE = re.compile(rb"^(width|height)\s*=\s*\d+", re.M)


@st.composite
def mutated_real_cfg(draw) -> bytes:
    """One of darknet's (or pydarknet's) cfgs, often shrunk to a small input, then with bytes edited."""
    text = draw(st.sampled_from(REAL_CFGS))
    if draw(st.integers(0, 3)):
        side = draw(st.sampled_from([b"1", b"2", b"7", b"16", b"32", b"33", b"64"]))
        text = _SIZE.sub(lambda m: m.group(1) + b"=" + side, text)
    return draw(mutated(text, max_ops=6))


CFG_BYTES = st.one_of(grammar_cfg(), grammar_cfg(), mutated_real_cfg())


def random_params(spec, seed: int):
    """Finite arrays for every layer's layout (variances positive): what a weights file could hold."""
    rng = np.random.default_rng(seed)
    params = {}
    for s in spec.layers:
        arrays = {}
        for name, shape in s.layout():
            a = rng.standard_normal(shape).astype(np.float32) * np.float32(0.5)
            arrays[name] = np.abs(a) + np.float32(0.5) if name == "rolling_variance" else a
        if arrays:
            params[s.index] = arrays
    return params


def check_spec(spec) -> None:
    """What every built NetSpec must satisfy: positive shapes where there is an image, consistent layouts."""
    assert spec.layers
    for s in spec.layers:
        assert s.outputs > 0 and s.inputs > 0, s
        c, h, w = s.out
        assert (c > 0 and h > 0 and w > 0) or (c, h, w) == (0, 0, 0), s
        for _, shape in s.layout():
            assert shape and all(d > 0 for d in shape), s
        for i in s.reads:
            assert 0 <= i < s.index
    spec.layer_table()
    spec.summary_line()
    assert spec.weights_bytes >= 20


def cfg_pipeline(path: Path, seed: int):
    """Read and build the cfg, check its memory against the fuzz budget, and, for a small network, run the
    NumPy engine on random weights and one input."""
    from pydarknet.engines.numpy_infer import NumpyEngine

    spec = load_specs(path)
    check_spec(spec)
    need = spec.check_memory()
    assert need <= FUZZ_BUDGET
    if need > (4 << 20) or spec.bflops > 0.02:
        return spec, None
    engine = NumpyEngine(spec, random_params(spec, seed))
    x = np.random.default_rng(seed).random((1, *spec.input_shape), dtype=np.float32)
    out = engine.infer(x)
    assert out.shape == (1, spec.outputs) and np.isfinite(out).all()
    return spec, out


@FUZZ
@given(data=CFG_BYTES, seed=st.integers(0, 2 ** 32 - 1))
@example(data=b"[net]\nwidth=1\nheight=1\nchannels=1\n[softmax]\n\n[connected]", seed=0)
def test_fuzz_cfg(work, data, seed):
    path = work / "fuzz.cfg"
    path.write_bytes(data)
    _, err = bounded(cfg_pipeline, path, seed)
    if err is not None:
        assert_clean_error(err, [path])


# ===========================================================================================================
# weights files: header and body


from pydarknet.weights import Header, expected_bytes, read_weights, read_weights_new_head  # noqa: E402

WEIGHTS_CFGS = {
    # every kind with weights, both batchnorm placements, a flipped convolution, dontloadscales
    "all": "[net]\nwidth=6\nheight=6\nchannels=2\n\n[convolutional]\nbatch_normalize=1\nfilters=3\nsize=3\n"
           "pad=1\nactivation=leaky\n\n[convolutional]\nfilters=2\nsize=1\nflipped=1\nactivation=linear\n\n"
           "[local]\nfilters=2\nsize=3\npad=1\nactivation=linear\n\n[batchnorm]\n\n[maxpool]\nsize=2\nstride=2\n\n"
           "[connected]\noutput=4\nbatch_normalize=1\ndontloadscales=1\nactivation=linear\n\n[connected]\n"
           "output=3\nactivation=linear\n\n[softmax]\n",
    # the last layer with weights is a [batchnorm] (no output units)
    "bn_last": "[net]\nwidth=4\nheight=4\nchannels=1\n\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n\n"
               "[batchnorm]\n\n[avgpool]\n\n[softmax]\n",
    # the last layer with weights is not loaded (dontload)
    "dontload_last": "[net]\nwidth=3\nheight=3\nchannels=1\n\n[connected]\noutput=5\nactivation=linear\n\n"
                     "[connected]\noutput=2\ndontload=1\nactivation=linear\n\n[softmax]\n",
    # a head whose file may hold another class count
    "head": "[net]\nwidth=2\nheight=2\nchannels=1\n\n[convolutional]\nfilters=3\nsize=1\nactivation=relu\n\n"
            "[connected]\noutput=4\nactivation=linear\n\n[softmax]\n",
}
HEADER_INTS = [0, 1, 2, 3, 9, 10, 999, 1000, 1001, 1002, 65535, (1 << 31) - 1, -1, -(1 << 31)]
NONFINITE = [float("nan"), float("inf"), float("-inf"), struct.unpack("<f", b"\x01\x00\xc0\x7f")[0]]


class Specs(dict):
    """name -> NetSpec, printed short in a falsifying example."""

    def __repr__(self):
        return f"<specs of {', '.join(self)}>"


@pytest.fixture(scope="module")
def weights_specs(work):
    specs = Specs()
    for name, text in WEIGHTS_CFGS.items():
        path = work / f"w_{name}.cfg"
        path.write_text(text)
        specs[name] = load_specs(path)
    return specs


@st.composite
def weights_case(draw):
    """(cfg name, file bytes, the header and floats when the file is a valid one)."""
    name = draw(st.sampled_from(sorted(WEIGHTS_CFGS)))
    major, minor, revision = (draw(st.sampled_from([0, 0, 0, 1, 1001])), draw(st.sampled_from([2, 2, 1, 0, 1001])),
                              draw(st.sampled_from([0, 0, 5])))
    if draw(st.integers(0, 3)) == 0:
        major = draw(st.one_of(st.sampled_from(HEADER_INTS), st.integers(-(1 << 31), (1 << 31) - 1)))
    if draw(st.integers(0, 3)) == 0:
        minor = draw(st.one_of(st.sampled_from(HEADER_INTS), st.integers(-(1 << 31), (1 << 31) - 1)))
    if draw(st.integers(0, 5)) == 0:
        revision = draw(st.one_of(st.sampled_from(HEADER_INTS), st.integers(-(1 << 31), (1 << 31) - 1)))
    header = Header(major, minor, revision, 0)
    seen64 = header.seen_is_64bit if draw(st.integers(0, 5)) else not header.seen_is_64bit
    seen = draw(st.sampled_from([0, 1, 12800, (1 << 32) - 1] + ([1 << 40, (1 << 64) - 1] if seen64 else [])))
    head = struct.pack("<iii" + ("Q" if seen64 else "I"), major, minor, revision, seen)
    floats, per_class = WEIGHTS_FLOATS[name]
    extra_classes = draw(st.sampled_from([0, 0, 0, 1, -1, 3])) if per_class else 0
    floats += extra_classes * per_class  # the file's head has another class count
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    body = rng.standard_normal(floats).astype("<f4")
    for _ in range(draw(st.integers(0, 2)) if floats else 0):
        if draw(st.integers(0, 2)) == 0:
            body[draw(st.integers(0, floats - 1))] = draw(st.sampled_from(NONFINITE + [3.4e38, 1e-45, 0.0]))
    data = head + body.tobytes()
    valid = seen64 == header.seen_is_64bit and extra_classes == 0 and np.isfinite(body).all()
    edited = draw(mutated(data, max_ops=3, region=24)) if draw(st.integers(0, 2)) else data
    if edited != data:
        valid = False
    upto = draw(st.sampled_from([None, None, None, 0, 1, 2, 3, 7, 100]))
    return name, edited, (header, seen, body) if valid and upto is None else None, upto


def _weights_floats() -> dict[str, tuple[int, int]]:
    """cfg name -> (floats a valid file holds, floats per output unit of the last layer with weights)."""
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, text in WEIGHTS_CFGS.items():
            p = Path(d) / f"{name}.cfg"
            p.write_text(text)
            layers = load_specs(p).layers
            total = sum(int(np.prod(s)) for layer in layers for _, s in layer.loaded_layout())
            last = [s for s in layers if s.layout()][-1]
            per_class = sum(int(np.prod(s)) for _, s in last.loaded_layout()) // last.units if last.units else 0
            out[name] = (total, per_class)
    return out


WEIGHTS_FLOATS = _weights_floats()


def check_params(spec, params, layers) -> None:
    for s in layers:
        got = params.get(s.index, {})
        assert list(got) == [n for n, _ in s.loaded_layout()], (s.index, list(got))
        for n, shape in s.loaded_layout():
            assert got[n].shape == shape and got[n].dtype == np.float32 and np.isfinite(got[n]).all()


@FUZZ
@given(case=weights_case())
def test_fuzz_weights(work, weights_specs, case):
    from pydarknet.train import checkpoint_seen

    name, data, valid, upto = case
    spec = weights_specs[name]
    path = work / "fuzz.weights"
    path.write_bytes(data)
    allowed = [path, spec.path]

    got, err = bounded(read_weights, path, spec, upto=upto)
    if err is not None:
        assert_clean_error(err, allowed)
        assert valid is None, f"a valid file was refused: {err}"
    else:
        header, params = got
        layers = spec.layers if upto is None else spec.layers[:upto]
        check_params(spec, params, layers)
        if upto is None:
            assert len(data) == expected_bytes(spec, header)
        if valid is not None:
            want_header, seen, body = valid
            assert (header.major, header.minor, header.revision, header.seen) == (
                want_header.major, want_header.minor, want_header.revision, seen)

    got, err = bounded(read_weights_new_head, path, spec)
    if err is not None:
        assert_clean_error(err, allowed)
    else:
        header, params, note = got
        assert note is None or "\n" not in note

    seen, err = bounded(checkpoint_seen, os.fspath(path))
    if err is not None:
        assert_clean_error(err, allowed)
    else:
        assert 0 <= seen < 1 << 64


# ===========================================================================================================
# .data files (and the names/labels/lists they point to)


from pydarknet.datacfg import BUILTIN, LABELS_DIR, read_data_cfg, read_label_list  # noqa: E402
from pydarknet.validate import ground_truth_labeler, read_image_list, SubstringLabeler  # noqa: E402

DATA_KEYS = ["classes", "names", "labels", "top", "train", "valid", "test", "backup", "eval", "results", "map",
             "Classes", "names ", "", "x", "classes=", "#names"]
INT_KEYS = {"classes", "top"}
BUILTIN_FILES = [os.path.join(LABELS_DIR, f) for names in BUILTIN.values() for f in names[:2]]


@pytest.fixture(scope="module")
def side_files(work) -> dict[str, str]:
    """Files a .data file may name: good and bad label lists, image lists, a directory, devices, missing."""
    d = work / "side"
    d.mkdir()
    files = {
        "four": b"a\nb\nc\nd\n", "two": b"x\ny", "empty": b"", "crlf": b"a\r\nb\r\nc\r\nd\r\n",
        "nonutf8": b"a\n\xff\xfe\nc\n", "nul": b"a\n\x00\nc\n", "blank": b"\n\n\n\n\n",
        "list": b"/nonexistent/a.png\n\nimg/b.jpg\n", "u2028": "a\u2028b\nc\nd\ne\n".encode(),
        "gt": b"/nonexistent/a.png a\nimg/b.jpg 1\n", "gtbad": b"x.png --1\n",
    }
    out = {}
    for name, content in files.items():
        (d / name).write_bytes(content)
        out[name] = str(d / name)
    (d / "folder").mkdir()
    (d / "folder" / "x.png").write_bytes(b"")
    out.update(folder=str(d / "folder"), missing=str(d / "missing"), zero="/dev/zero", null="/dev/null",
               long=str(d / ("n" * 300)), deep=str(d / "four" / "x"), imagenet="imagenet1k")
    return out


@st.composite
def data_file(draw, side: dict[str, str]) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        key = draw(st.sampled_from(DATA_KEYS))
        if key in INT_KEYS and draw(st.integers(0, 2)):
            value = draw(st.one_of(st.integers(-3, 12).map(str), st.sampled_from(WILD)))
        else:
            value = draw(st.one_of(st.sampled_from(sorted(side.values())), st.sampled_from(WILD)))
        form = draw(st.sampled_from(["{}={}", "{}={}", "{} = {}", "{}={} # c", "{}", "#{}={}", "{}=={}"]))
        lines.append(form.format(key, value))
    nl = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return draw(mutated(nl.join(lines).encode("utf-8", "surrogatepass"), max_ops=2))


@pytest.fixture(scope="module")
def head_spec(work):
    path = work / "head4.cfg"
    path.write_text("[net]\nwidth=2\nheight=2\nchannels=1\n\n[connected]\noutput=4\nactivation=linear\n\n[softmax]\n")
    return load_specs(path)


def data_pipeline(path: Path, spec, outputs: int):
    from pydarknet.model import Model, resolve
    from pydarknet.train import read_train_list
    from pydarknet.validate import plan_validation

    data = read_data_cfg(path)
    assert data.classes is None or data.classes > 0
    assert data.top is None or data.top > 0
    names = data.load_names(outputs)
    assert len(names) >= outputs
    if data.labels:
        data.load_labels()
    if data.train:
        read_train_list(data.train)
    model = Model(cfg=spec.path, weights=None, name=spec.path)
    resolve(model, spec, data)
    plan = plan_validation(model, spec, data)
    for p in plan.paths[:10]:
        plan.label_of(p)
    return data


@FUZZ
@given(data=st.data(), outputs=st.sampled_from([0, 1, 4, 5]))
def test_fuzz_data_file(work, side_files, head_spec, data, outputs):
    content = data.draw(data_file(side_files))
    path = work / "fuzz.data"
    path.write_bytes(content)
    _, err = bounded(data_pipeline, path, head_spec, outputs)
    if err is not None:
        # the .data file, a file it names (its whitespace dropped, as darknet's reader does), the cfg, a
        # built-in list, or darknet's default names and list files
        text = content.decode("utf-8", "replace").translate(str.maketrans("", "", " \t\r\f\v"))
        named = [line.split("=", 1)[1] for line in text.split("\n") if "=" in line]
        allowed = [path, head_spec.path, "data/labels.list", "data/train.list", *side_files.values(), *named,
                   *(v.split("#")[0] for v in named), *BUILTIN_FILES]
        assert_clean_error(err, allowed)


# ===========================================================================================================
# image lists and label files


LIST_LINES = st.one_of(
    st.sampled_from([b"", b" ", b"\r", b"\t", b"img/a.png", b"/abs/b.jpg", b"x" * 5000, b"\xff\xfe", b"\x00",
                     b"a\x00b", "caf\u00e9/\u2028.png".encode(), b"\xed\xa0\x80", b"\xef\xbb\xbfbom.png", b"#",
                     b"a b", b"a,1", b"a --1", "a \u00b2".encode(), "a \u0663".encode(), b"a 99999999999999",
                     b"a -0", b"a 3", b"a 1_0", b"\f", b"x.png 0"]),
    st.binary(max_size=12),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@st.composite
def list_bytes(draw) -> bytes:
    lines = draw(st.lists(LIST_LINES, max_size=12))
    nl = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    data = nl.join(lines) + (nl if draw(st.booleans()) else b"")
    if draw(st.integers(0, 20)) == 0:
        data += b"p\n" * draw(st.sampled_from([1000, 70000]))
    return draw(mutated(data, max_ops=2))


def lists_pipeline(path: Path, labels: list[str], minimum: int | None):
    from pydarknet.cli import _read_list
    from pydarknet.train import read_train_list

    p = os.fspath(path)
    paths, problems = read_image_list(p)
    assert all(x and x == x.strip() for x in paths)
    assert all("\n" not in q for q in problems)
    assert read_train_list(p) == _read_list(p)
    names = read_label_list(p, minimum=minimum)
    assert minimum is None or len(names) >= minimum
    labeler = SubstringLabeler(names)
    for x in paths[:20]:
        assert -1 <= labeler(x) < max(len(names), 1)
    label_of = ground_truth_labeler(p, labels)
    for x in paths[:20]:
        assert -1 <= label_of(x) < len(labels)


@FUZZ
@given(data=list_bytes(), labels=st.sampled_from([["a", "b", "c", "d"], ["0"], [], ["img", ""]]),
       minimum=st.sampled_from([None, 0, 1, 3, 1000]), tight=st.booleans())
@example(data=b"x.png --1\n", labels=["a", "b"], minimum=None, tight=False)
@example(data="x.png \u00b2\n".encode(), labels=["a", "b", "c"], minimum=None, tight=False)
def test_fuzz_lists_and_labels(work, data, labels, minimum, tight):
    path = work / "fuzz.list"
    path.write_bytes(data)
    saved = dict(atomic.TEXT_LIMITS)
    if tight:  # the size and line caps, reached with small files
        atomic.TEXT_LIMITS.update({"image list": (4096, 64), "label list": (4096, 64)})
    try:
        _, err = bounded(lists_pipeline, path, labels, minimum)
    finally:
        atomic.TEXT_LIMITS.clear()
        atomic.TEXT_LIMITS.update(saved)
    if err is not None:
        assert_clean_error(err, [path])


# ===========================================================================================================
# the model-facts sidecar (<weights>.json)


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
                        st.sampled_from(["letterbox", "center_crop", "resize", "imagenet1k", "fashion", "x", ""]),
                        st.text(max_size=6))
JSON = st.recursive(JSON_LEAVES, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(st.sampled_from(
                                                             ["format", "version", "classes", "preprocess",
                                                              "input_size", "provenance", "names", "labels",
                                                              "builtin", "mean", "std", "resize", "x"]), kids,
                                                             max_size=5)), max_leaves=12)


@st.composite
def sidecar_bytes(draw) -> bytes:
    obj = {"format": "pydarknet-model-facts", "version": 1}
    for key in draw(st.lists(st.sampled_from(["classes", "preprocess", "input_size", "provenance", "format",
                                               "version"]), max_size=4, unique=True)):
        obj[key] = draw(st.one_of(JSON, st.sampled_from([
            {"names": ["a", "b"], "labels": ["x", "y"]}, {"builtin": "fashion"}, {"builtin": "nope"},
            {"resize": "center_crop", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]},
            {"mean": [1], "std": [0]}, [224, 224], [0, 5], {"a": "b"}])))
    text = json.dumps(obj, allow_nan=True)
    if draw(st.integers(0, 8)) == 0:
        text = draw(st.sampled_from(["[" * 100000, "{\"a\":" * 50000, "1" * 5000, "[" + "1" * 5000 + "]",
                                     '{"format": "pydarknet-model-facts", "version": 1, "input_size": [1'
                                     + "0" * 5000 + ", 1]}", "\ud800", "NaN", "-Infinity"]))
    return draw(mutated(text.encode("utf-8", "surrogatepass"), max_ops=2))


@FUZZ
@given(data=sidecar_bytes())
@example(data=b"[" * 100000)
@example(data=b"1" * 5000)
def test_fuzz_model_facts(work, data):
    from pydarknet.model import ModelFacts, read_sidecar, sidecar_path

    weights = work / "facts.weights"
    side = Path(sidecar_path(weights))
    side.write_bytes(data)
    facts, err = bounded(read_sidecar, weights)
    if err is not None:
        assert_clean_error(err, [side])
    else:
        assert isinstance(facts, ModelFacts)
        json.dumps(facts.to_json())


# ===========================================================================================================
# image headers


def _seed_images() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (3, 5, 3), dtype=np.uint8))
    seeds = []

    def save(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        seeds.append(buf.getvalue())

    save(rgb, "PNG")
    save(rgb.convert("RGBA"), "PNG")
    save(rgb.convert("L"), "PNG")
    save(rgb.convert("P"), "PNG")
    save(rgb.convert("1"), "PNG")
    save(Image.fromarray(rng.integers(0, 65536, (3, 5), dtype=np.uint16)), "PNG")
    save(rgb, "PNG", optimize=True)
    save(rgb, "JPEG", quality=90)
    save(rgb, "JPEG", progressive=True)
    save(rgb.convert("L"), "JPEG")
    save(rgb.convert("CMYK"), "JPEG")
    save(rgb, "BMP")
    save(rgb.convert("P"), "BMP")
    save(rgb.convert("1"), "BMP")
    save(rgb.convert("RGBA"), "BMP")
    save(rgb.convert("P"), "GIF")
    buf = io.BytesIO()
    rgb.save(buf, "GIF", save_all=True, append_images=[rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    seeds.append(buf.getvalue())
    save(rgb, "TGA")
    save(rgb, "TGA", compression="tga_rle")
    save(rgb.convert("L"), "TGA")
    save(rgb, "PPM")
    save(rgb.convert("L"), "PPM")
    save(rgb.convert("1"), "PPM")
    seeds.append(b"P3\n2 1\n255\n1 2 3 4 5 6\n")
    seeds.append(b"P2\n2 2\n65535\n0 1000 65535 7\n")
    save(rgb, "TIFF")
    try:
        save(rgb, "WEBP")
    except (KeyError, OSError):
        pass
    seeds.append(_psd(3, 5))
    seeds.append(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x80")
    seeds.append(b"\x53\x80\xf6\x34" + b"\x00" * 100)
    return seeds


def _psd(h: int, w: int) -> bytes:
    """A minimal RGB PSD (raw image data), which Pillow reads but cannot write."""
    head = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    sections = struct.pack(">I", 0) * 3  # colour mode data, image resources, layer and mask info
    pixels = bytes(range(3 * h * w))
    return head + sections + struct.pack(">H", 0) + pixels


SEED_IMAGES = _seed_images()


@st.composite
def image_bytes(draw) -> bytes:
    seed = draw(st.sampled_from(SEED_IMAGES))
    return draw(mutated(seed, max_ops=3, region=48))


def check_image(path: Path):
    from pydarknet.image import decode_rgb8

    rgb = decode_rgb8(path)
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] > 0 and rgb.shape[1] > 0
    return rgb


@FUZZ
@given(data=image_bytes())
def test_fuzz_image_headers(work, data):
    path = work / "fuzz.img"
    path.write_bytes(data)
    _, err = bounded(check_image, path)
    if err is not None:
        assert_clean_error(err, [path])


# ===========================================================================================================
# the command line: one error line, exit 2


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from pydarknet.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_cli_outcome(code: int, out: str, err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err
    if code == 0:
        return
    assert code == 2, (code, err)
    assert out == "", out
    errors = [ln for ln in err.splitlines() if ln.startswith("pydarknet: error:")]
    assert len(errors) == 1, err


@FUZZ_CLI
@given(data=CFG_BYTES)
def test_fuzz_cli_ops(work, data):
    path = work / "cli.cfg"
    path.write_bytes(data)
    with peak_growth() as peak:
        code, out, err = run_cli(["ops", str(path)])
    assert peak.kib < MEMORY_BOUND_KIB
    assert_cli_outcome(code, out, err)


@pytest.fixture(scope="module")
def tiny_model(work):
    from pydarknet.cli import main

    cfg = work / "cli_tiny.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
                   "activation=leaky\n\n[avgpool]\n\n[softmax]\n")
    weights = work / "cli_tiny.weights"
    with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
        assert main(["init", str(cfg), str(weights)]) == 0
    return cfg, weights, weights.read_bytes()


@FUZZ_CLI
@given(data=st.data())
def test_fuzz_cli_predict(work, tiny_model, side_files, data):
    """classifier predict with a fuzzed .data file, weights file or image: one error line or a result."""
    cfg, weights, good = tiny_model
    image = work / "cli.png"
    if not image.exists():
        image.write_bytes(SEED_IMAGES[0])
    which = data.draw(st.sampled_from(["data", "weights", "image"]))
    data_path, weights_path, image_path = work / "cli.data", work / "cli_good.weights", image
    if not weights_path.exists():
        weights_path.write_bytes(good)
    data_path.write_bytes(b"classes=4\nnames=%s\n" % side_files["four"].encode())
    if which == "data":
        data_path = work / "cli_fuzz.data"
        data_path.write_bytes(data.draw(data_file(side_files)))
    elif which == "weights":
        weights_path = work / "cli_fuzz.weights"
        weights_path.write_bytes(data.draw(mutated(good, max_ops=3, region=24)))
    else:
        image_path = work / "cli_fuzz.img"
        image_path.write_bytes(data.draw(image_bytes()))
    with peak_growth() as peak:
        code, out, err = run_cli(["classifier", "predict", str(data_path), str(cfg), str(weights_path),
                                  str(image_path), "-q", "--engine", "numpy"])
    assert peak.kib < MEMORY_BOUND_KIB
    assert_cli_outcome(code, out, err)
