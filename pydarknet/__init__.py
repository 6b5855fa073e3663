"""pydarknet: darknet's image classifiers (cfg + weights) on PyTorch, with darknet's numbers.

>>> import pydarknet
>>> pydarknet.load_specs(pydarknet.zoo_cfg("tiny")).summary_line()
'total  0.983 BFLOPs  1046488 params  4185972 bytes'

PyTorch is imported only when a network is built (``load_network``), so reading cfgs stays fast.
"""
from __future__ import annotations

import os

from .errors import DarknetError, DarknetWarning
from .specs import NetSpec, load_specs

__version__ = "0.1.0"

_CFG_DIR = os.path.join(os.path.dirname(__file__), "cfgs")


def zoo_cfg(name: str) -> str:
    """Path of one of the project's own zoo cfgs (``tiny``, ``darknet19``, ``resnet50``, ...)."""
    path = os.path.join(_CFG_DIR, f"{name}.cfg")
    if not os.path.isfile(path):
        known = sorted(f[:-4] for f in os.listdir(_CFG_DIR) if f.endswith(".cfg"))
        raise DarknetError(f"no zoo cfg named {name!r} (known: {', '.join(known)})")
    return path


_LAZY = {"Network": "network", "load_network": "network", "load": "api", "list_models": "api",
         "Classifier": "api", "Prediction": "predict"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pydarknet' has no attribute {name!r}")


__all__ = ["Classifier", "DarknetError", "DarknetWarning", "Network", "NetSpec", "Prediction", "list_models", "load",
           "load_network", "load_specs", "zoo_cfg"]
