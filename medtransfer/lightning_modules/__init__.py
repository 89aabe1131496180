"""LightningModules: the task-aware base, LinearProbe and Finetune."""

from .base import TaskModule
from .finetune import Finetune
from .linear_probe import LinearProbe

__all__ = ["Finetune", "LinearProbe", "TaskModule"]
