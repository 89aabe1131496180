"""The part every self-supervised method shares: the backbone it trains, its progress through training, the
momentum (teacher) schedule, and what it exports."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ...backbones.backbone import Backbone
from ...errors import MedTransferError


class SSLConfigError(MedTransferError, ValueError):
    """A pretraining setting that cannot work; the message names the key under model.init_args."""


@dataclass(frozen=True)
class Progress:
    """Where training is: optimiser step and epoch, and how many of each there will be."""

    step: int
    total_steps: int
    epoch: int
    max_epochs: int


class SSLMethod(nn.Module):
    """One method (its heads, loss and, for momentum methods, its teacher) over the backbone it trains.

    Subclasses build their heads from ``backbone.embed_dim`` with lightly's modules and implement ``loss``.
    ``views`` are the batch's views as the datamodule serves them (uint8, global views first); the backbone
    normalises them on the device.

    Args:
        backbone: the network being pretrained (exported when training ends).
        momentum: teacher EMA momentum at the start and the end of training (cosine schedule); methods
            without a teacher take None.
    """

    name = ""
    multi_crop = False  # whether the method uses local (multi-crop) views
    momentum: tuple[float, float] | None = None

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def check_views(self, global_views: int, local_views: int) -> None:
        """Refuse view counts the method cannot use, before any image is read."""
        if global_views < 2:
            raise SSLConfigError(f"{self.name} compares at least 2 global views of each image; "
                                 f"model.init_args.views.global_views is {global_views}")
        if not self.multi_crop and (global_views != 2 or local_views):
            raise SSLConfigError(f"{self.name} trains on exactly 2 global views and no local views; got "
                                 f"model.init_args.views global_views={global_views}, "
                                 f"local_views={local_views} (multi-crop: dino or swav)")

    def loss(self, views: list[torch.Tensor], global_views: int, progress: Progress) -> torch.Tensor:
        raise NotImplementedError

    # -- teacher ---------------------------------------------------------------------------------------------
    def momentum_at(self, progress: Progress) -> float | None:
        """The teacher's EMA momentum at this step (lightly's cosine schedule from start to end value)."""
        if self.momentum is None:
            return None
        start, end = self.momentum
        return cosine_schedule(progress.step, max(1, progress.total_steps), start, end)

    def student_teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(trained module, its EMA copy) pairs; none for methods without a teacher."""
        return []

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        for student, teacher in self.student_teacher_pairs():
            update_momentum(student, teacher, momentum)

    def after_backward(self, progress: Progress) -> None:
        """Gradient surgery between backward and the optimiser step (frozen layers of DINO and SwAV)."""

    def logged_values(self, progress: Progress) -> dict[str, float]:
        """Schedule values worth watching in TensorBoard at this step (besides lr, logged by Lightning)."""
        momentum = self.momentum_at(progress)
        return {} if momentum is None else {"momentum": momentum}

    # -- what is kept ----------------------------------------------------------------------------------------
    def exported_backbone(self) -> Backbone:
        """The backbone written when training ends (the student; DINO's teacher)."""
        return self.backbone

    def trainable_modules(self) -> list[nn.Module]:
        """The modules the optimiser updates (teachers follow by EMA)."""
        return [module for module in self.children() if any(p.requires_grad for p in module.parameters())]


def frozen_copy(module: nn.Module) -> nn.Module:
    """A teacher: an exact copy of ``module`` without gradients, updated only by EMA."""
    teacher = copy.deepcopy(module)
    deactivate_requires_grad(teacher)
    return teacher


def check_momentum(momentum, name: str) -> tuple[float, float]:
    values = tuple(float(m) for m in momentum)
    if len(values) != 2 or not all(0 <= m <= 1 for m in values):
        raise SSLConfigError(f"model.init_args.method_args.momentum of {name}: expected [start, end] in "
                             f"[0, 1], got {list(momentum)}")
    return values
