"""The self-supervised methods by name (``model.init_args.method``)."""

from __future__ import annotations

import inspect

from ...backbones.backbone import Backbone
from .base import SSLConfigError, SSLMethod
from .byol import BYOL
from .dino import DINO
from .moco import MoCo
from .simclr import SimCLR
from .swav import SwAV

METHODS: dict[str, type[SSLMethod]] = {cls.name: cls for cls in (SimCLR, MoCo, BYOL, DINO, SwAV)}


def build_method(name: str, backbone: Backbone, method_args: dict | None) -> SSLMethod:
    """Method ``name`` over ``backbone`` with its ``model.init_args.method_args``; an unknown method or
    argument is an error listing the known ones."""
    if name not in METHODS:
        raise SSLConfigError(f"model.init_args.method: unknown method {name!r}; choose one of "
                             f"{sorted(METHODS)}")
    cls = METHODS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "backbone")]
    unknown = sorted(set(method_args or {}) - set(accepted))
    if unknown:
        raise SSLConfigError(f"model.init_args.method_args: {name} does not take {unknown}; it takes "
                             f"{accepted}")
    return cls(backbone, **(method_args or {}))
