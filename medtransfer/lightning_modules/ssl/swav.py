"""SwAV (Caron et al. 2020): the prototype assignment of each global view, balanced by Sinkhorn-Knopp over the
whole global batch (all processes), is predicted from every other view, multi-crop included."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.loss import SwaVLoss
from lightly.models.modules import SwaVProjectionHead, SwaVPrototypes
from lightly.models.modules.memory_bank import MemoryBankModule
from torch import nn

from ...backbones.backbone import Backbone
from .base import Progress, SSLMethod


class SwAV(SSLMethod):
    """Args:
        hidden_dim: projection head width (default: the backbone's embedding size).
        output_dim: projection size (128).
        prototypes: number of prototypes (paper: 3000 for ImageNet; fewer for small datasets).
        temperature: softmax temperature of the swapped prediction.
        sinkhorn_iterations, sinkhorn_epsilon: Sinkhorn-Knopp settings.
        freeze_prototypes_steps: optimiser steps during which the prototypes are not updated.
        queue_length: features of earlier batches (per global view, gathered from all processes) added to
            Sinkhorn's batch; SwAV's remedy for batches much smaller than the number of prototypes. 0: none.
        queue_start_epoch: the epoch from which the queue is used (it fills before).
    """

    name = "swav"
    multi_crop = True

    def __init__(self, backbone: Backbone, hidden_dim: int | None = None, output_dim: int = 128,
                 prototypes: int = 3000, temperature: float = 0.1, sinkhorn_iterations: int = 3,
                 sinkhorn_epsilon: float = 0.05, freeze_prototypes_steps: int = 0, queue_length: int = 0,
                 queue_start_epoch: int = 15) -> None:
        super().__init__(backbone)
        self.head = SwaVProjectionHead(backbone.embed_dim, hidden_dim or backbone.embed_dim, output_dim)
        self.prototypes = SwaVPrototypes(output_dim, prototypes)
        self.criterion = SwaVLoss(temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                  sinkhorn_epsilon=sinkhorn_epsilon, sinkhorn_gather_distributed=True)
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.queue_length = queue_length
        self.queue_start_epoch = queue_start_epoch
        self.queues = nn.ModuleList()
        self.output_dim = output_dim

    def check_views(self, global_views: int, local_views: int) -> None:
        """Also sets up one queue per global view."""
        super().check_views(global_views, local_views)
        if self.queue_length:
            self.queues = nn.ModuleList(
                MemoryBankModule((self.queue_length, self.output_dim), gather_distributed=True,
                                 feature_dim_first=False)
                for _ in range(global_views))

    def loss(self, views: list[torch.Tensor], global_views: int, progress: Progress) -> torch.Tensor:
        with torch.no_grad():
            self.prototypes.normalize()
        features = [F.normalize(self.head(self.backbone(v)).float(), dim=1) for v in views]
        scores = [self.prototypes(f) for f in features]
        queued = self._queued_scores(features[:global_views], progress)
        return self.criterion(scores[:global_views], scores[global_views:], queued)

    def _queued_scores(self, features: list[torch.Tensor], progress: Progress) -> list[torch.Tensor] | None:
        """Prototype scores of the queued features of each global view (None before ``queue_start_epoch``);
        the current batch is enqueued afterwards."""
        if not self.queue_length:
            return None
        queued = [queue(f.detach(), update=True)[1] for queue, f in zip(self.queues, features, strict=True)]
        if progress.epoch < self.queue_start_epoch:
            return None
        with torch.no_grad():
            return [self.prototypes(q.to(features[0].dtype)) for q in queued]

    def after_backward(self, progress: Progress) -> None:
        if progress.step < self.freeze_prototypes_steps:
            for parameter in self.prototypes.parameters():
                parameter.grad = None
