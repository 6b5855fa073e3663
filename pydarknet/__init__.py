"""pydarknet: darknet's image classifiers (cfg + weights) on PyTorch, with darknet's numbers.

>>> import pydarknet
>>> pydarknet.load_specs(pydarknet.zoo_cfg("tiny")).summary_line()
'total  0.983 BFLOPs  1046488 params  4185972 bytes'

PyTorch is imported only when a network is built (``load_network``, ``open_engine``), so reading cfgs stays
fast.
"""
from __future__ import annotations

from .errors import DarknetError, DarknetWarning
from .specs import NetSpec, load_specs

__version__ = "0.1.0"

def zoo_cfg(name: str) -> str:
    """Path of one of the project's own zoo cfgs (``tiny``, ``darknet19``, ``resnet50``, ...)."""
    from . import zoo

    return zoo.get(name).cfg_path


_LAZY = {"Network": "engines.network", "load_network": "engines.network", "open_engine": "engines",
         "load": "api", "list_models": "api", "Classifier": "api", "Prediction": "predict",
         "resolve_model": "model", "ModelFacts": "model", "tune_process": "tuning"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'pydarknet' has no attribute {name!r}")


__all__ = ["Classifier", "DarknetError", "DarknetWarning", "ModelFacts", "Network", "NetSpec", "Prediction",
           "list_models", "load", "load_network", "load_specs", "open_engine", "resolve_model", "tune_process",
           "zoo_cfg"]
