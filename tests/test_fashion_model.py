"""The `fashion` zoo model pydarknet trained (scripts/fashion_mnist.py): ships in the package, works offline,
and keeps its measured accuracy on real Fashion-MNIST test images."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import pydarknet
from pydarknet import zoo

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_bundled_weights_are_the_recorded_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path))  # nothing cached, no network needed
    entry = zoo.get("fashion")
    path = zoo.fetch_weights(entry, offline=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    assert zoo.is_cached(entry)


@pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist absent")
def test_accuracy_on_real_test_images():
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from fashion_mnist import read_idx

    pixels, labels = read_idx("t10k", 2000)
    clf = pydarknet.load("fashion", offline=True)
    rgb = [np.repeat(p[:, :, None], 3, axis=2) for p in pixels]
    preds = [clf.predict(rgb[i:i + 250], top=1) for i in range(0, len(rgb), 250)]
    top1 = np.mean([p[0].index == lab for chunk, start in zip(preds, range(0, 2000, 250))
                    for p, lab in zip(chunk, labels[start:start + 250])])
    assert top1 >= 0.86, top1  # 87.8% measured on all 10,000
    assert clf.names[9] == "Ankle boot"
