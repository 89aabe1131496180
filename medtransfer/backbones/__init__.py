"""Backbones: pretrained weights by name (the registry, timm's pretrained tags, hf-hub: models), checkpoint
adapters and the Backbone module (docs/architecture.md)."""

from .backbone import Backbone
from .errors import (
    CheckpointFormatError,
    CheckpointMismatchError,
    ChecksumError,
    UnknownBackboneError,
    WeightsError,
    WeightsNotFoundError,
)
from .factory import check_backbone_name, create_backbone
from .loading import LoadReport
from .preprocessing import Preprocessing
from .registry import REGISTRY, WeightsEntry

__all__ = [
    "REGISTRY",
    "Backbone",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "ChecksumError",
    "LoadReport",
    "Preprocessing",
    "UnknownBackboneError",
    "WeightsEntry",
    "WeightsError",
    "WeightsNotFoundError",
    "check_backbone_name",
    "create_backbone",
]
