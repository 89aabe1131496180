"""LightningModules: the task-aware base, LinearProbe, Finetune, DVME and self-supervised pretraining."""

from .base import MedTransferModule, TaskModule
from .dvme import DVME
from .finetune import Finetune
from .frozen import FrozenBackboneModule
from .knn import KNN
from .linear_probe import LinearProbe
from .linear_sweep import LinearSweep
from .ssl import SSLPretrain

__all__ = [
    "DVME",
    "KNN",
    "Finetune",
    "FrozenBackboneModule",
    "LinearProbe",
    "LinearSweep",
    "MedTransferModule",
    "SSLPretrain",
    "TaskModule",
]
