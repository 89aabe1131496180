"""Linear evaluation: a frozen backbone (eval mode, no gradients) and one trainable linear layer."""

from __future__ import annotations

import torch
from torch import nn

from ..task import Task
from .frozen import SingleBackboneModule


class LinearProbe(SingleBackboneModule):
    """Linear probe on a frozen backbone.

    By default (``feature_cache: true``) every split is embedded once into a feature store and the head trains
    on it: 100 epochs cost about one forward pass. ``feature_cache: false`` runs the backbone on every batch,
    for probes that need train-time augmentation (``data.augmentation``); both report the same metrics.

    Args:
        backbone: registry weights (``resnet50.swav_in1k``) or any timm architecture.
        checkpoint: a local weights file for ``backbone`` (see ``medtransfer weights``).
        backbone_kwargs: extra timm arguments (e.g. ``img_size`` for a ViT at a small input size).
        embedding: embedding recipe override (e.g. ``cls_last4`` for DINO ViTs); default: the weights' own.
        resize_to: resize images on the device to this side before the backbone (default: as loaded).
        feature_cache, features_dir: see ``FrozenBackboneModule``.
        task, lr, weight_decay, optimizer, scheduler, warmup_epochs: see ``TaskModule``.
    """

    def __init__(
        self,
        backbone: str = "resnet50.tv_in1k",
        checkpoint: str | None = None,
        backbone_kwargs: dict | None = None,
        embedding: str | None = None,
        resize_to: int | None = None,
        feature_cache: bool = True,
        features_dir: str | None = None,
        task: Task | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adamw",
        scheduler: str = "cosine",
        warmup_epochs: float = 0.0,
    ) -> None:
        super().__init__(
            task, lr, weight_decay, optimizer, scheduler, warmup_epochs, feature_cache, features_dir
        )
        self.save_task_hyperparameters()
        self.build_frozen_backbone(backbone, checkpoint, backbone_kwargs, embedding, resize_to)
        self.head = nn.Linear(self.backbone.embed_dim, self.task.num_outputs)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.backbone(images)

    def logits(self, batch: dict) -> torch.Tensor:
        return self.head(self.embeddings(batch)[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images).float())
