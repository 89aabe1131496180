"""LightningModules: the task-aware base, LinearProbe, Finetune and DVME."""

from .base import TaskModule
from .dvme import DVME
from .finetune import Finetune
from .frozen import FrozenBackboneModule
from .knn import KNN
from .linear_probe import LinearProbe
from .linear_sweep import LinearSweep

__all__ = ["DVME", "KNN", "Finetune", "FrozenBackboneModule", "LinearProbe", "LinearSweep", "TaskModule"]
