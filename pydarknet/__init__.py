"""pydarknet: darknet's image classifiers (cfg + weights) on PyTorch, with darknet's numbers."""
from __future__ import annotations

import os

from .errors import DarknetError, DarknetWarning
from .network import Network, load_network
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


__all__ = ["DarknetError", "DarknetWarning", "Network", "NetSpec", "load_network", "load_specs", "zoo_cfg"]
