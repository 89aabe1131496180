"""Backbones: pretrained weights by name, checkpoint adapters and the Backbone module (DESIGN.md)."""

from .backbone import Backbone
from .factory import create_backbone
from .preprocessing import Preprocessing

__all__ = ["Backbone", "Preprocessing", "create_backbone"]
