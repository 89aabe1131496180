"""SimCLR (Chen et al. 2020): two views, a projection head, NT-Xent with every other image of the global batch
as a negative (gathered from all DDP processes)."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

from ...backbones.backbone import Backbone
from .base import Progress, SSLMethod


class SimCLR(SSLMethod):
    """Args:
        temperature: NT-Xent temperature.
        hidden_dim: projection head width (default: the backbone's embedding size).
        output_dim: projection size.
        num_layers: projection head depth (2 for SimCLR v1, 3 for v2).
        batch_norm: BatchNorm in the projection head.
    """

    name = "simclr"

    def __init__(self, backbone: Backbone, temperature: float = 0.5, hidden_dim: int | None = None,
                 output_dim: int = 128, num_layers: int = 2, batch_norm: bool = True) -> None:
        super().__init__(backbone)
        self.head = SimCLRProjectionHead(backbone.embed_dim, hidden_dim or backbone.embed_dim, output_dim,
                                         num_layers=num_layers, batch_norm=batch_norm)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=True)

    def project(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)).float()

    def loss(self, views: list[torch.Tensor], global_views: int, progress: Progress) -> torch.Tensor:
        return self.criterion(self.project(views[0]), self.project(views[1]))
