"""Typed, frozen layer specs built from cfg sections, with darknet's defaults, shape rules, weights layout,
batchnorm fold, BFLOPs and the layer table darknet prints on load (``src/parser.c`` parse_*,
``make_*_layer`` in ``src/*_layer.c``).

* ``base``: the LayerSpec base class, the registry (``REGISTRY``: kind -> spec class) and ``check_table``,
  which every engine runs on its kernel table at import;
* ``kinds``: one spec class per layer kind, its builder beside its fields;
* ``net``: [net] options and NetSpec, the whole network.

The cfg reader takes its section names from the registry (``section_aliases``), so a kind exists for every
part of pydarknet once it is registered here, and each engine's table check says what it still lacks.
"""
from __future__ import annotations

from .base import ACTIVATIONS, COMMON_KEYS, REGISTRY, Common, LayerSpec, Layout, Shape, check_table
from .kinds import (COST_TYPES, Avgpool, Batchnorm, Connected, Convolutional, Cost, Crop, Dropout, Local, Maxpool,
                    Route, Shortcut, Softmax)
from .net import NET_NAMES, POLICIES, NetOptions, NetSpec, Params, build_specs, load_specs, parse_net


def section_aliases() -> dict[str, str]:
    """Section name as written (lower-cased) -> canonical kind: the [net] names and every registered kind's."""
    aliases = {name: "net" for name in NET_NAMES}
    for kind, cls in REGISTRY.items():
        aliases.update({name: kind for name in cls.names})
    return aliases


__all__ = ["ACTIVATIONS", "COMMON_KEYS", "COST_TYPES", "NET_NAMES", "POLICIES", "REGISTRY", "Avgpool", "Batchnorm",
           "Common", "Connected", "Convolutional", "Cost", "Crop", "Dropout", "LayerSpec", "Layout", "Local",
           "Maxpool", "NetOptions", "NetSpec", "Params", "Route", "Shape", "Shortcut", "Softmax", "build_specs",
           "check_table", "load_specs", "parse_net", "section_aliases"]
