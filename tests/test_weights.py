"""Weights I/O: darknet's header rules and layouts, exact-size checks naming the layer, NaN checks,
byte-identical round trips and atomic writes."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import torch

import pydarknet
from conftest import REFERENCE_CFG, ZOO_CFG, need_reference
from pydarknet.cfg import parse_cfg
from pydarknet.errors import DarknetError
from pydarknet.engines.network import Network
from pydarknet.specs import build_specs, load_specs
from pydarknet.weights import Header, parse_header, read_weights, weights_bytes, write_weights

SMALL = """[net]
width=6
height=6
channels=2
[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky
[convolutional]
filters=3
size=1
activation=linear
[batchnorm]
[connected]
output=5
activation=relu
[connected]
batch_normalize=1
output=4
activation=linear
[softmax]
"""


def small(extra: str = "", first_conv: str = "") -> "pydarknet.NetSpec":
    text = SMALL.replace("activation=leaky", "activation=leaky" + first_conv) + extra
    return build_specs(parse_cfg(text, "small.cfg"))


def random_params(net, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for spec in net.layers:
        arrays = {}
        for name, shape in spec.layout():
            a = rng.standard_normal(shape).astype(np.float32)
            if name == "rolling_variance":
                a = np.abs(a) + 0.5
            arrays[name] = a
        if arrays:
            out[spec.index] = arrays
    return out


def test_layout_order_is_darknets():
    net = small()
    assert [n for n, _ in net.layers[0].layout()] == ["biases", "scales", "rolling_mean", "rolling_variance",
                                                      "weights"]
    assert [n for n, _ in net.layers[1].layout()] == ["biases", "weights"]
    assert [n for n, _ in net.layers[2].layout()] == ["scales", "rolling_mean", "rolling_variance"]
    assert [n for n, _ in net.layers[4].layout()] == ["biases", "weights", "scales", "rolling_mean",
                                                      "rolling_variance"]


def test_write_then_read_and_exact_bytes(tmp_path):
    net = small()
    params = random_params(net)
    path = tmp_path / "s.weights"
    write_weights(path, net, params, seen=123456789012)
    data = path.read_bytes()
    assert len(data) == net.weights_bytes
    assert struct.unpack_from("<iiiQ", data) == (0, 2, 0, 123456789012)
    # the float stream in darknet's order, layer by layer
    stream = np.frombuffer(data, "<f4", offset=20)
    expected = np.concatenate([params[s.index][n].reshape(-1) for s in net.layers for n, _ in s.layout()])
    assert np.array_equal(stream, expected)
    header, back = read_weights(path, net)
    assert header == Header(0, 2, 0, 123456789012)
    for i, arrays in params.items():
        for name, a in arrays.items():
            assert np.array_equal(back[i][name], a)


def test_local_layer_layout_and_round_trip(tmp_path):
    """[local] (src/parser.c load_weights_upto, LOCAL): l.outputs biases, then locations x filters x
    (c*size*size) weights; read and written back byte for byte."""
    net = build_specs(parse_cfg("[net]\nwidth=7\nheight=5\nchannels=2\n[local]\nfilters=3\nsize=3\nstride=2\n"
                                "pad=1\n[local]\nfilters=2\nsize=2\n", "l.cfg"))
    first, second = net.layers
    assert first.out == (3, 3, 4) and second.out == (2, 2, 3)
    assert first.layout() == [("biases", (3, 3, 4)), ("weights", (12, 3, 18))]
    assert second.layout() == [("biases", (2, 2, 3)), ("weights", (6, 2, 12))]
    assert net.weights_bytes == 20 + 4 * (36 + 12 * 3 * 18 + 12 + 6 * 2 * 12)
    params = random_params(net)
    write_weights(tmp_path / "l.weights", net, params)
    _, back = read_weights(tmp_path / "l.weights", net)
    write_weights(tmp_path / "again.weights", net, back)
    assert (tmp_path / "again.weights").read_bytes() == (tmp_path / "l.weights").read_bytes()
    stream = np.frombuffer((tmp_path / "l.weights").read_bytes(), "<f4", offset=20)
    assert np.array_equal(stream[:36], params[0]["biases"].reshape(-1))  # biases first, in (c, h, w) order


@need_reference
def test_read_write_is_byte_identical(golden_weights, tmp_path):
    for model in ("tiny", "resnet50", "densenet201"):
        src = golden_weights(model)
        net = pydarknet.load_network(REFERENCE_CFG / f"{model}.cfg", src)
        out = tmp_path / f"{model}.weights"
        net.save_weights(out)
        assert out.read_bytes() == src.read_bytes(), model


def test_old_header_with_32bit_seen(tmp_path):
    net = small()
    params = random_params(net)
    body = weights_bytes(net, params, Header())[20:]
    path = tmp_path / "old.weights"
    path.write_bytes(struct.pack("<iiiI", 0, 1, 0, 77) + body)
    header, back = read_weights(path, net)
    assert header.seen == 77 and not header.seen_is_64bit
    assert np.array_equal(back[0]["weights"], params[0]["weights"])
    # and a 0.1 file is rewritten as 0.2.0 with a 64-bit seen
    assert weights_bytes(net, back, header)[:20] == struct.pack("<iiiQ", 0, 2, 0, 77)


def test_transposed_connected_weights_in_old_files(tmp_path):
    net = small()
    params = random_params(net)
    chunks = [struct.pack("<iiiI", 1001, 0, 0, 5)]  # major > 1000: 32-bit seen and transposed connected
    for spec in net.layers:
        for name, _ in spec.layout():
            a = params[spec.index][name]
            if spec.kind == "connected" and name == "weights":
                a = a.T  # stored inputs x outputs
            chunks.append(np.ascontiguousarray(a, "<f4").tobytes())
    path = tmp_path / "t.weights"
    path.write_bytes(b"".join(chunks))
    header, back = read_weights(path, net)
    assert header.transpose
    assert np.array_equal(back[3]["weights"], params[3]["weights"])
    assert np.array_equal(back[4]["weights"], params[4]["weights"])


def test_flipped_convolution_round_trips(tmp_path):
    net = small(first_conv="\nflipped=1")
    params = random_params(net)
    path = tmp_path / "f.weights"
    write_weights(path, net, params)
    raw = np.frombuffer(path.read_bytes(), "<f4", offset=20)
    n = 4
    w = params[0]["weights"]
    stored = raw[4 * n: 4 * n + w.size].reshape(-1, n)  # (c*size*size) x n in the file
    assert np.array_equal(stored.T.reshape(w.shape), w)
    _, back = read_weights(path, net)
    assert np.array_equal(back[0]["weights"], w)


def test_dontload_and_dontloadscales(tmp_path):
    full = small()
    params = random_params(full)
    path = tmp_path / "full.weights"
    write_weights(path, full, params)
    # a file without layer 0's batchnorm arrays, read by a cfg that says dontloadscales
    partial_net = small(first_conv="\ndontloadscales=1")
    chunks = [Header().pack()]
    for spec in full.layers:
        for name, _ in spec.layout():
            if spec.index == 0 and name in ("scales", "rolling_mean", "rolling_variance"):
                continue
            chunks.append(params[spec.index][name].tobytes())
    path2 = tmp_path / "noscales.weights"
    path2.write_bytes(b"".join(chunks))
    _, back = read_weights(path2, partial_net)
    assert set(back[0]) == {"biases", "weights"}
    assert np.array_equal(back[1]["weights"], params[1]["weights"])


def test_short_file_names_expected_actual_and_layer(tmp_path):
    net = small()
    path = tmp_path / "short.weights"
    write_weights(path, net, random_params(net))
    data = path.read_bytes()
    path.write_bytes(data[: 20 + 4 * (4 * 5 + 4 * 2 * 9) + 8])  # stops inside layer 1
    with pytest.raises(DarknetError) as e:
        read_weights(path, net)
    msg = str(e.value)
    assert msg.startswith(f"{path}: layer 1: runs short in this convolutional layer")
    assert f"holds {20 + 4 * 92 + 8} bytes but small.cfg needs {len(data)}" in msg


def test_long_file_and_weights_for_another_cfg(tmp_path):
    net = small()
    path = tmp_path / "long.weights"
    write_weights(path, net, random_params(net))
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(DarknetError, match=r"long\.weights: holds \d+ bytes but small\.cfg needs \d+ .*8 bytes "
                                           r"are left over"):
        read_weights(path, net)


@need_reference
def test_weights_of_another_cfg(golden_weights):
    with pytest.raises(DarknetError, match="tiny.weights: (layer \\d+: runs short|holds)"):
        pydarknet.load_network(REFERENCE_CFG / "darknet.cfg", golden_weights("tiny"))


def test_partial_loading_reads_the_first_layers(tmp_path):
    net = small()
    params = random_params(net)
    path = tmp_path / "p.weights"
    write_weights(path, net, params)
    _, back = read_weights(path, net, upto=2)
    assert set(back) == {0, 1}
    # a file holding only the first 2 layers is fine for upto=2, short for the whole net
    cut = 20 + 4 * sum(s.num_params for s in net.layers[:2])
    path.write_bytes(path.read_bytes()[:cut])
    _, back = read_weights(path, net, upto=2)
    assert np.array_equal(back[1]["weights"], params[1]["weights"])
    with pytest.raises(DarknetError, match="layer 2: runs short"):
        read_weights(path, net)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_names_the_layer(tmp_path, bad):
    net = small()
    params = random_params(net)
    params[3]["weights"][2, 7] = bad
    path = tmp_path / "nan.weights"
    write_weights(path, net, params)
    with pytest.raises(DarknetError, match=r"nan\.weights: layer 3: connected weights holds 1 NaN/Inf value"):
        read_weights(path, net)


def test_headers_too_short(tmp_path):
    net = small()
    for size in (0, 11, 16):
        p = tmp_path / f"h{size}.weights"
        p.write_bytes(struct.pack("<iiiQ", 0, 2, 0, 0)[:size])
        with pytest.raises(DarknetError, match="too short for a darknet weights header"):
            read_weights(p, net)
    assert parse_header(struct.pack("<iiiI", 0, 1, 0, 9), "x").seen == 9


def test_missing_and_directory(tmp_path):
    net = small()
    with pytest.raises(DarknetError, match="no such weights file"):
        read_weights(tmp_path / "nope.weights", net)
    with pytest.raises(DarknetError, match="is a directory"):
        read_weights(tmp_path, net)


def test_atomic_write_keeps_the_previous_file(tmp_path, monkeypatch):
    net = small()
    path = tmp_path / "a.weights"
    write_weights(path, net, random_params(net, 1))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(DarknetError, match="a.weights: cannot write: No space left on device"):
        write_weights(path, net, random_params(net, 2))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.weights"]  # no temp file left behind


def test_write_into_missing_directory(tmp_path):
    net = small()
    with pytest.raises(DarknetError, match="directory does not exist"):
        write_weights(tmp_path / "no" / "x.weights", net, random_params(net))


def test_network_save_load_round_trip_keeps_outputs(tmp_path):
    torch.manual_seed(3)
    net = pydarknet.load_network(ZOO_CFG / "tiny.cfg")
    path = tmp_path / "tiny.weights"
    net.save_weights(path)
    again = pydarknet.load_network(ZOO_CFG / "tiny.cfg", path)
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(net(x), again(x))
    assert os.path.getsize(path) == load_specs(ZOO_CFG / "tiny.cfg").weights_bytes


def test_network_module_names():
    net = Network(load_specs(ZOO_CFG / "alexnet.cfg"))
    names = list(net.layers.keys())
    assert names[0] == "0_convolutional" and names[8] == "8_connected" and names[-1] == "13_softmax"
    assert dict(net.named_parameters())["layers.8_connected.weights"].shape == (4096, 9216)
