"""Layer specs: darknet's layer table, shapes, parameter counts, BFLOPs and weights sizes; the project's
zoo cfgs against darknet's files layer for layer and against the published figures."""
from __future__ import annotations

import dataclasses

import pytest

from conftest import GOLDEN, REFERENCE_CFG, ZOO_CFG, need_reference
from pydarknet.specs import load_specs

GOLDEN_LOGS = ["tiny", "darknet", "darknet19", "extraction", "alexnet", "resnet50", "densenet201"]
DARKNET_MODELS = ["alexnet", "darknet", "tiny", "vgg-16", "extraction", "darknet19", "darknet19_448", "resnet18",
                  "resnet34", "resnet50", "resnet101", "resnet152", "resnext50", "darknet53", "densenet201"]


@need_reference
@pytest.mark.parametrize("model", GOLDEN_LOGS)
def test_layer_table_is_darknets(model):
    log = (GOLDEN / "darknet_logs" / f"{model}.stderr.txt").read_text()
    expected = log[: log.index("Loading weights")]
    assert load_specs(REFERENCE_CFG / f"{model}.cfg").layer_table() == expected
    assert load_specs(ZOO_CFG / f"{model}.cfg").layer_table() == expected


@need_reference
def test_params_and_sizes_match_manifest(manifest):
    for model, info in manifest["models"].items():
        net = load_specs(REFERENCE_CFG / f"{model}.cfg")
        assert net.num_params == info["params"], model
        assert net.weights_bytes == info["weights_size"], model
        assert round(net.bflops, 3) == info["mkweights_bflops_incl_connected"], model
        assert len(net.layers) == info["n_layers"], model
        shapes = [[s.kind, s.out[1], s.out[2], s.out[0], s.outputs] for s in net.layers]
        assert shapes == info["layer_shapes"], model


def _comparable(spec):
    d = dataclasses.asdict(spec)
    d.pop("lineno")
    return type(spec).__name__, d


@need_reference
@pytest.mark.parametrize("model", DARKNET_MODELS)
def test_zoo_cfg_is_darknets_network_layer_for_layer(model):
    ours, theirs = load_specs(ZOO_CFG / f"{model}.cfg"), load_specs(REFERENCE_CFG / f"{model}.cfg")
    assert ours.net == theirs.net
    assert len(ours.layers) == len(theirs.layers)
    for a, b in zip(ours.layers, theirs.layers):
        assert _comparable(a) == _comparable(b), a.index


MIB = 1024 * 1024
# (model, published ops in Bn, published size in MB = MiB of the weights file), from ../shared/seeds.
# Darknet19's 5.58 Bn is at 224x224 (its cfg is 256x256). Darknet Reference's 0.81 Bn and SqueezeNet's
# 2.17 Bn cannot come from the networks their weights fit: checked against our own figures below.
PUBLISHED = [
    ("alexnet", 2.27, 238, None), ("tiny", 0.98, 4.0, None), ("vgg-16", 30.94, 528, None),
    ("extraction", 8.52, 90, None), ("darknet19", 5.58, 80, 224), ("darknet19_448", 22.33, 80, None),
    ("resnet50", 10, 87, None), ("resnet152", 29.4, 220, None), ("densenet201", 10.9, 66, None),
    ("darknet", None, 28, None), ("squeezenet", None, 4.8, None),
]


@pytest.mark.parametrize("model,ops,size_mb,at", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_ops_and_sizes(model, ops, size_mb, at):
    """The published figures are rounded (Extraction's 89.5 MiB is "90 MB", DenseNet's 10.85 Bn "10.9",
    ResNet-50's 9.74 Bn "10"): ours must agree within that rounding."""
    net = load_specs(ZOO_CFG / f"{model}.cfg")
    size = net.weights_bytes / MIB
    assert abs(size - size_mb) <= max(0.55, 0.01 * size_mb), (model, size)
    if ops is not None:
        sized = load_specs(ZOO_CFG / f"{model}.cfg", width=at, height=at) if at else net
        tol = 0.3 if float(ops).is_integer() else 0.06
        assert abs(sized.bflops - ops) <= tol, (model, sized.bflops)


def test_figures_that_differ_from_the_published_ones():
    """Recorded in the zoo table beside the published ones (see zoo.py): the cfg is not bent to fit."""
    ref = load_specs(ZOO_CFG / "darknet.cfg")
    assert round(ref.bflops, 2) == 0.96
    assert round(load_specs(ZOO_CFG / "darknet.cfg", width=224, height=224).bflops, 2) == 0.77
    sq = load_specs(ZOO_CFG / "squeezenet.cfg")
    assert sq.num_params == 1248424
    assert round(sq.bflops, 2) == 1.67


def test_squeezenet_follows_the_paper():
    net = load_specs(ZOO_CFG / "squeezenet.cfg")
    pools = [s for s in net.layers if s.kind == "maxpool"]
    assert [p.out[1] for p in pools] == [55, 27, 13]
    assert net.layers[0].out == (96, 111, 111)
    routes = [s for s in net.layers if s.kind == "route" and len(s.layers) == 2]
    assert [r.out[0] for r in routes] == [128, 128, 256, 256, 384, 384, 512, 512]
    assert net.outputs == 1000


def test_summary_line():
    net = load_specs(ZOO_CFG / "tiny.cfg")
    assert net.summary_line() == "total  0.983 BFLOPs  1046488 params  4185972 bytes"


def test_layer_after_a_flat_vector_reads_its_length():
    """A softmax has no image shape (out_w/h/c are 0 in make_softmax_layer); the next layer's inputs are
    its outputs, as parse_network passes l.outputs on. Darknet prints `connected 4 -> 3` for this cfg."""
    from pydarknet.cfg import parse_cfg
    from pydarknet.specs import build_specs
    net = build_specs(parse_cfg("[net]\nwidth=2\nheight=2\nchannels=1\n[softmax]\n[connected]\noutput=3\n", "f.cfg"))
    conn = net.layers[1]
    assert conn.inputs == 4 and dict(conn.layout())["weights"] == (3, 4)
    assert conn.table_line().split() == ["connected", "4", "->", "3"]
