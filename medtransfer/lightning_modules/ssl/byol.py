"""BYOL (Grill et al. 2020): an online network predicts the projection a momentum target network gives the
other view; no negatives."""

from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

from ...backbones.backbone import Backbone
from .base import Progress, SSLMethod, check_momentum, frozen_copy


class BYOL(SSLMethod):
    """Args:
        hidden_dim: projection and prediction head width (default: twice the backbone's embedding size; the
            paper's 4096 for ResNet-50).
        output_dim: projection size (256).
        momentum: target network EMA momentum, [start, end] on a cosine schedule (paper: 0.996 to 1).
    """

    name = "byol"

    def __init__(self, backbone: Backbone, hidden_dim: int | None = None, output_dim: int = 256,
                 momentum: tuple[float, float] = (0.99, 1.0)) -> None:
        super().__init__(backbone)
        self.momentum = check_momentum(momentum, self.name)
        hidden = hidden_dim or 2 * backbone.embed_dim
        self.head = BYOLProjectionHead(backbone.embed_dim, hidden, output_dim)
        self.predictor = BYOLPredictionHead(output_dim, hidden, output_dim)
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)
        self.criterion = NegativeCosineSimilarity()

    def student_teacher_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def prediction(self, images: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.head(self.backbone(images))).float()

    @torch.no_grad()
    def target(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.teacher_backbone(images)).float()

    def loss(self, views: list[torch.Tensor], global_views: int, progress: Progress) -> torch.Tensor:
        first, second = views[0], views[1]
        return 0.5 * (self.criterion(self.prediction(first), self.target(second))
                      + self.criterion(self.prediction(second), self.target(first)))
