"""MoCo v2 (Chen et al. 2020: momentum key encoder, a queue of negatives, shuffled BatchNorm across
processes) and v3 (Chen et al. 2021: prediction head, symmetric loss, negatives from the global batch)."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import batch_shuffle_distributed, batch_unshuffle_distributed
from lightly.utils import dist

from ...backbones.backbone import Backbone
from .base import Progress, SSLConfigError, SSLMethod, check_momentum, frozen_copy


class MoCo(SSLMethod):
    """Args:
        version: 2 (queue) or 3 (predictor, symmetric, no queue).
        temperature: InfoNCE temperature (0.2 in both papers).
        queue_size: v2's queue of negative keys (keys of all processes are enqueued).
        hidden_dim: head width (default: twice the backbone's embedding size).
        output_dim: projection size (v2: 128, v3: 256).
        momentum: key encoder EMA momentum, [start, end] on a cosine schedule.
    """

    name = "moco"

    def __init__(self, backbone: Backbone, version: int = 2, temperature: float = 0.2, queue_size: int = 4096,
                 hidden_dim: int | None = None, output_dim: int | None = None,
                 momentum: tuple[float, float] = (0.99, 1.0)) -> None:
        super().__init__(backbone)
        if version not in (2, 3):
            raise SSLConfigError(f"model.init_args.method_args.version of moco: 2 or 3, got {version!r}")
        self.version = version
        self.momentum = check_momentum(momentum, self.name)
        hidden = hidden_dim or 2 * backbone.embed_dim
        output = output_dim or (128 if version == 2 else 256)
        if version == 2:
            self.head = MoCoProjectionHead(backbone.embed_dim, hidden, output)
            self.predictor = None
            bank = (queue_size, output)
        else:
            self.head = MoCoProjectionHead(backbone.embed_dim, hidden, output, num_layers=3, batch_norm=True)
            self.predictor = MoCoProjectionHead(output, hidden, output, num_layers=2, batch_norm=True)
            bank = 0
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=bank, gather_distributed=True)
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)

    def student_teacher_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def query(self, images: torch.Tensor) -> torch.Tensor:
        query = self.head(self.backbone(images))
        return (query if self.predictor is None else self.predictor(query)).float()

    @torch.no_grad()
    def key(self, images: torch.Tensor) -> torch.Tensor:
        """Keys of the momentum encoder; under DDP its batch is shuffled across processes first, so BatchNorm
        statistics cannot leak which key belongs to which query (MoCo's shuffling BN)."""
        if self.version == 2 and dist.world_size() > 1:
            images, shuffle = batch_shuffle_distributed(images)
            keys = self.teacher_head(self.teacher_backbone(images))
            return batch_unshuffle_distributed(keys, shuffle).float()
        return self.teacher_head(self.teacher_backbone(images)).float()

    def loss(self, views: list[torch.Tensor], global_views: int, progress: Progress) -> torch.Tensor:
        if self.version == 2:  # queries of view 0 against keys of view 1 and the queue
            return self.criterion(self.query(views[0]), self.key(views[1]))
        first, second = views[0], views[1]
        return 0.5 * (self.criterion(self.query(first), self.key(second))
                      + self.criterion(self.query(second), self.key(first)))
