"""Shared fixtures: the golden outputs of the original darknet (in-repo data, tests/data/golden, built by
scripts/make_test_data.py from ../shared), darknet's reference cfgs and data (Debian's darknet package,
/usr/share/darknet: never copied into the project) and the live C darknet. Tests that need darknet's files or
the C darknet skip with a reason where they are absent; CI has both."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI replays the same generated examples every run (a red CI is then a real, reproducible finding);
# locally every run draws new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent

# pydarknet's cache (zoo downloads, the onnxruntime engine's exports) is the test run's own, never the user's:
# under $PYDARKNET_TEST_CACHE when set (CI keeps it between runs), else a fresh temporary folder
if "PYDARKNET_CACHE" not in os.environ:
    import atexit
    import shutil
    import tempfile

    if os.environ.get("PYDARKNET_TEST_CACHE"):
        os.environ["PYDARKNET_CACHE"] = os.path.join(os.environ["PYDARKNET_TEST_CACHE"], "pydarknet-cache")
    else:
        _cache = tempfile.mkdtemp(prefix="pydarknet-test-cache-")
        os.environ["PYDARKNET_CACHE"] = _cache
        atexit.register(shutil.rmtree, _cache, True)
GOLDEN = ROOT / "tests" / "data" / "golden"
MKWEIGHTS = GOLDEN / "mkweights.py"
#: darknet's own cfgs and data files (pjreddie commit f6afaabc), as Debian's darknet package installs them
REFERENCE = Path(os.environ.get("PYDARKNET_REFERENCE", "/usr/share/darknet"))
REFERENCE_CFG = REFERENCE / "cfg"
REFERENCE_DATA = REFERENCE / "data"
ZOO_CFG = ROOT / "pydarknet" / "cfgs"

need_reference = pytest.mark.skipif(not (REFERENCE_CFG / "tiny.cfg").is_file(),
                                    reason=f"darknet's cfgs not found at {REFERENCE} (apt install darknet, or set "
                                           "PYDARKNET_REFERENCE)")


@pytest.fixture
def unprivileged(tmp_path):
    """A context manager under which file modes bind, even when the tests run as root (as in CI's container):
    as root it switches the effective user to nobody (65534) for the block and opens tmp_path's directories to
    others for reading meanwhile; otherwise it does nothing. The real uid stays 0, so the switch back works."""
    if os.geteuid() != 0:
        yield contextlib.nullcontext
        return
    opened = []
    for d in [tmp_path, *tmp_path.parents]:
        mode = d.stat().st_mode
        if mode & 0o005 != 0o005:
            opened.append((d, stat.S_IMODE(mode)))
            d.chmod(stat.S_IMODE(mode) | 0o005)

    @contextlib.contextmanager
    def block():
        os.setegid(65534)
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    try:
        yield block
    finally:
        for d, mode in opened:
            d.chmod(mode)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _manifest() -> dict:
    return json.loads((GOLDEN / "manifest.json").read_text())


@pytest.fixture(scope="session")
def manifest() -> dict:
    return _manifest()


@lru_cache(maxsize=None)
def _npz(rel: str) -> dict:
    with np.load(GOLDEN / rel) as z:
        return {k: z[k] for k in z.files}


def golden_array(rel: str) -> np.ndarray:
    """A golden array by its path in the shared golden folder (the manifest's `files` entries):
    outputs/M/IMG.MODE.npy and logits/M/IMG.MODE.npy from their npz; inputs/WxH/IMG.MODE.npy rebuilt from the
    decoded PNG (letterbox_image or center_crop_image, as darknet) and checked against the manifest's sha256."""
    parts = rel.split("/")
    name = parts[-1][: -len(".npy")]
    if parts[0] in ("outputs", "logits"):
        return _npz(f"{parts[0]}/{parts[1]}.npz")[name]
    if parts[0] == "inputs":
        return _golden_input(rel).copy()
    raise KeyError(rel)


@lru_cache(maxsize=None)
def _golden_input(rel: str) -> np.ndarray:
    from pydarknet.image import load_image
    from pydarknet.preprocess import center_crop_image, letterbox_image

    m = _manifest()
    case, mode = next((c, k[3:]) for c in m["cases"] for k, f in c["files"].items() if f == rel)
    im = load_image(GOLDEN / m["images"][case["image"]]["decoded"])
    x = (letterbox_image if mode == "predict" else center_crop_image)(im, case["net_w"], case["net_h"])
    digest = hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()
    assert digest == case[f"in_{mode}_sha256"], f"{rel}: rebuilt input differs from darknet's"
    x.setflags(write=False)
    return x


def golden_layer(rel: str) -> tuple[np.ndarray, int]:
    """layers/M/IMG/layerNNN_TYPE.npy -> (every stride-th value of darknet's flattened layer output, stride)."""
    _, model, image, file = rel.split("/")
    z = _npz(f"layers/{model}_{image}.npz")
    name = file[: -len(".npy")]
    return z[name], int(z[name + ".stride"])


@pytest.fixture(scope="session")
def golden_weights(manifest, tmp_path_factory):
    """model name -> path of its mkweights weights (regenerated once per session, sha256-checked)."""
    if not (REFERENCE_CFG / "tiny.cfg").is_file():
        pytest.skip(f"darknet's cfgs not found at {REFERENCE}")
    cache = Path(os.environ.get("PYDARKNET_TEST_CACHE", tmp_path_factory.mktemp("golden_weights")))
    cache.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model in made:
            return made[model]
        info = manifest["models"][model]
        out = cache / f"{model}.weights"
        if not out.is_file() or sha256(out) != info["weights_sha256"]:
            mk = info["mkweights"]
            subprocess.run([sys.executable, str(MKWEIGHTS), str(REFERENCE_CFG / f"{model}.cfg"), str(out),
                            "--seed", str(mk["seed"]), "--peak", str(mk["peak"])],
                           check=True, capture_output=True)
            assert sha256(out) == info["weights_sha256"], f"mkweights made different weights for {model}"
        made[model] = out
        return out

    return get


#: every inference engine: the trainable network (batchnorm unfolded), the folded torch engine, ONNX Runtime
#: (on Runtime, on the network's checked export), NumPy
ENGINE_KINDS = ["network", "torch", "onnxruntime", "numpy"]


def open_engine_kind(kind: str, cfg, weights):
    import pydarknet

    if kind == "network":
        return pydarknet.load_network(cfg, weights)
    return pydarknet.open_engine(cfg, weights, engine=kind)


def engine_from_network(kind: str, net):
    """The ``kind`` engine from a Network's current parameters."""
    from pydarknet.engines.numpy_infer import NumpyEngine
    from pydarknet.engines.torch_infer import TorchEngine

    if kind == "network":
        return net
    if kind == "torch":
        return TorchEngine.from_network(net)
    if kind == "onnxruntime":
        from pydarknet.engines.ort_infer import OrtEngine

        return OrtEngine.from_network(net)
    return NumpyEngine(net.spec, net.darknet_params())
