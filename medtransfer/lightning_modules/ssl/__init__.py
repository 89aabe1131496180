"""Self-supervised pretraining on the user's own images, built on lightly's heads, losses and schedules."""

from .pretrain import SSLPretrain
from .registry import METHODS

__all__ = ["METHODS", "SSLPretrain"]
