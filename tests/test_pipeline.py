"""Decoding beside the network (pydarknet/pipeline.py) and batched inference (Network.infer): the same arrays
as decoding in line, in input order, bad files reported in place, bounded read-ahead, and the thread policy."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ZOO_CFG
from pydarknet import load_network, pipeline
from pydarknet.image import load_image
from pydarknet.model import Prepare, Preprocessing
from pydarknet.preprocess import letterbox_image


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(11):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20 + 7 * i, 40 - i, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths.insert(4, str(tmp_path / "bad.png"))
    paths.insert(8, str(tmp_path / "missing.png"))
    return paths


@pytest.mark.parametrize("workers", [0, 2])
def test_same_arrays_in_order_with_errors_in_place(images, workers):
    got = list(pipeline.prepared_images(images, Prepare(Preprocessing("letterbox"), 32, 24), workers))
    assert [g[0] for g in got] == list(range(len(images))) and [g[1] for g in got] == images
    for i, path, arr, err in got:
        if "bad" in path or "missing" in path:
            assert arr is None and path in err
        else:
            assert err is None and np.array_equal(arr, letterbox_image(load_image(path), 32, 24))


def test_background_thread_reads_a_bounded_way_ahead(images):
    pulled = []

    def paths():
        for p in images * 10:
            pulled.append(p)
            yield p

    it = pipeline.prepared_images(paths(), Prepare(Preprocessing("letterbox"), 8, 8), workers=0)
    for _ in range(3):
        next(it)
    assert len(pulled) <= 3 + 32  # never the whole list in memory at once
    assert sum(1 for _ in it) == len(images) * 10 - 3


def test_inference_threads_policy(monkeypatch):
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 2)
    policy = pipeline.default_inference_threads
    assert policy(0.98, workers=0) == 1  # light network: a core for the decoding thread
    assert policy(5.58, workers=0) is None  # the forward pass dominates: all cores
    assert policy(0.98, workers=2) is None  # decoding processes: PyTorch's default
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 1)
    assert policy(0.98, workers=0) is None
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 16)
    assert policy(0.98, workers=0) == 15
    assert pipeline.default_workers() == 4


def test_infer_in_chunks_equals_one_call():
    net = load_network(ZOO_CFG / "tiny.cfg")
    x = torch.rand(7, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = net(x).numpy()
    got = net.infer(x.numpy())
    assert got.shape == (7, 1000) and got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
    assert (np.argsort(-got, axis=1)[:, :5] == np.argsort(-whole, axis=1)[:, :5]).all()
    assert net.infer(np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 1000)


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_threads_must_be_positive(value, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pydarknet", "classify", str(ZOO_CFG / "tiny.cfg"), "--list",
                        str(tmp_path / "none.txt"), "--threads", value], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert "--threads: expected a whole number of at least 1" in r.stderr


def test_batch_threads_are_set_for_the_run_and_restored(images, tmp_path, monkeypatch, capsys):
    from pydarknet import cli
    from pydarknet.engines.torch_infer import TorchEngine

    seen = []
    infer = TorchEngine.infer
    monkeypatch.setattr(TorchEngine, "infer", lambda self, *a, **k: seen.append(torch.get_num_threads()) or
                        infer(self, *a, **k))
    monkeypatch.setattr(pipeline, "cpu_count", lambda: 2)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(images) + "\n")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        code = cli.main(["classify", str(ZOO_CFG / "tiny.cfg"), "--list", str(listing), "-q", "--workers", "0"])
        assert code == 3  # the bad and the missing image
        assert seen and set(seen) == {1}  # tiny is light: one PyTorch thread beside the decoding thread
        assert torch.get_num_threads() == 2  # restored for whatever runs next in this process
        seen.clear()
        cli.main(["classify", str(ZOO_CFG / "tiny.cfg"), "--list", str(listing), "-q", "--threads", "2"])
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
