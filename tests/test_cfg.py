"""The cfg reader: darknet's rules, what darknet chokes on, and an error naming file:line for bad input."""
from __future__ import annotations

import warnings

import pytest

from pydarknet.cfg import parse_cfg, read_cfg
from pydarknet.errors import DarknetError, DarknetWarning
from conftest import ZOO_CFG
from pydarknet.specs import build_specs, load_specs

NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"


def specs(text: str, path: str = "m.cfg"):
    return build_specs(parse_cfg(text, path))


def test_comments_spaces_and_aliases():
    text = ("# a comment\n; another\n[network]\n width = 8 \nheight=8\nchannels=3\n\n"
            "[conv]\nfilters = 4\nsize=3\npad=1\nactivation = leaky  # inline comment\n"
            "[max]\nsize=2\nstride=2\n[avg]\n[conn]\noutput=5\nactivation=linear\n[soft]\n")
    net = specs(text)
    assert [s.kind for s in net.layers] == ["convolutional", "maxpool", "avgpool", "connected", "softmax"]
    assert net.layers[0].activation == "leaky"
    assert net.layers[0].out == (4, 8, 8)
    assert net.outputs == 5


@pytest.mark.parametrize("variant", ["crlf", "bom", "no-final-newline"])
def test_accepts_what_darknet_chokes_on(variant):
    text = NET + "[convolutional]\nfilters=2\nsize=1\nactivation=relu\n"
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "bom":
        text = "\ufeff" + text
    else:
        text = text.rstrip("\n")
    net = specs(text)
    assert net.layers[0].filters == 2 and net.layers[0].activation == "relu"


def test_read_cfg_bytes_with_bom_and_crlf(tmp_path):
    p = tmp_path / "a.cfg"
    p.write_bytes(b"\xef\xbb\xbf[net]\r\nwidth=4\r\nheight=4\r\nchannels=1\r\n[avgpool]")
    net = load_specs(p)
    assert net.layers[0].out == (1, 1, 1)


def test_duplicate_key_first_wins_with_warning():
    with pytest.warns(DarknetWarning, match=r"m\.cfg:7: duplicate key 'filters'.*line 6"):
        net = specs(NET + "[convolutional]\nfilters=2\nfilters=9\nsize=1\n")
    assert net.layers[0].filters == 2


def test_unused_key_warns_with_file_and_line():
    with pytest.warns(DarknetWarning, match=r"m\.cfg:7: unused key 'fliters=3' in \[convolutional\]"):
        specs(NET + "[convolutional]\nfilters=2\nfliters=3\n")


def test_zoo_cfgs_have_no_unused_keys():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in sorted(ZOO_CFG.glob("*.cfg")):
            load_specs(path)


BAD = [
    ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=abc\n", 6, "expected an integer"),
    (NET + "[convolutional]\nfilters=-4\n", 6, "must be positive"),
    (NET + "[convolutional]\nfilters=2\nstride=0\n", 7, "must be positive"),
    (NET + "[convolutional]\nfilters=2\nsize=0\n", 7, "must be positive"),
    (NET + "[maxpool]\nstride=0\n", 6, "must be positive"),
    (NET + "[route]\nlayers=1\n", 6, "points forward"),
    (NET + "[avgpool]\n[route]\nlayers=-5\n", 7, "points before the first layer"),
    (NET + "[convolutional]\nfilters=2\n[shortcut]\nfrom=3\n", 8, "points forward"),
    (NET + "[convolutional]\nfilters=2\nactivation=nosuch\n", 7, "unknown activation"),
    (NET + "[yolo]\n", 5, "unknown section [yolo]"),
    ("[convolutional]\nfilters=2\n", 1, "first section must be [net]"),
    ("width=3\n", 1, "before the first [section]"),
    (NET + "[convolutional\n", 5, "malformed section header"),
    (NET + "[convolutional]\njustakey\n", 6, "expected 'key=value'"),
    (NET + "[dropout]\nprobability=1.5\n", 6, "must be in [0, 1)"),
    (NET + "[convolutional]\nfilters=2\nsize=9\n", 5, "does not fit"),
    ("[net]\nwidth=0\nheight=8\nchannels=3\n[avgpool]\n", 1, "positive width, height and channels"),
    (NET + "[convolutional]\nfilters=3\ngroups=2\n", 7, "groups=2 must divide"),
    (NET + "[softmax]\n[convolutional]\nfilters=2\n", 6, "needs an image input"),
    (NET + "[net]\n", 5, "a second [net]"),
    (NET + "[softmax]\ntemperature=nan\n", 6, "finite"),
]


@pytest.mark.parametrize("text,line,message", BAD)
def test_bad_cfg_is_an_error_naming_file_and_line(tmp_path, text, line, message):
    p = tmp_path / "bad.cfg"
    p.write_text(text)
    with pytest.raises(DarknetError) as e:
        load_specs(p)
    assert str(e.value).startswith(f"{p}:{line}: "), str(e.value)
    assert message in str(e.value)


def test_unreadable_cfg_files(tmp_path):
    with pytest.raises(DarknetError, match="no such cfg file"):
        read_cfg(tmp_path / "missing.cfg")
    with pytest.raises(DarknetError, match="is a directory"):
        read_cfg(tmp_path)
    p = tmp_path / "bin.cfg"
    p.write_bytes(b"[net]\n\xff\xfe\x00garbage")
    with pytest.raises(DarknetError, match=r"bin\.cfg:2: not a text cfg file"):
        read_cfg(p)


def test_empty_cfg(tmp_path):
    p = tmp_path / "empty.cfg"
    p.write_text("# nothing\n")
    with pytest.raises(DarknetError, match="first section must be"):
        load_specs(p)
    p.write_text(NET)
    with pytest.raises(DarknetError, match="no layers"):
        load_specs(p)
