"""Shared fixtures: the ../shared ground truth (golden outputs, darknet's reference cfgs, mkweights) and the
live C darknet. Tests that need one of them skip with a reason where it is absent; CI has both."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same generated examples every run (a red CI is then a real, reproducible finding);
# locally every run draws new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PYDARKNET_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
REFERENCE_CFG = SHARED / "reference" / "cfg"
MKWEIGHTS = SHARED / "tools" / "mkweights.py"
ZOO_CFG = ROOT / "pydarknet" / "cfgs"

need_shared = pytest.mark.skipif(not (GOLDEN / "manifest.json").is_file(),
                                 reason=f"ground truth not found at {SHARED} (set PYDARKNET_SHARED)")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not (GOLDEN / "manifest.json").is_file():
        pytest.skip(f"ground truth not found at {SHARED}")
    return json.loads((GOLDEN / "manifest.json").read_text())


@pytest.fixture(scope="session")
def golden_weights(manifest, tmp_path_factory):
    """model name -> path of its mkweights weights (regenerated once per session, sha256-checked)."""
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


#: every inference engine: the trainable network (batchnorm unfolded), the folded torch engine, NumPy
ENGINE_KINDS = ["network", "torch", "numpy"]


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
    return NumpyEngine(net.spec, net.darknet_params())
