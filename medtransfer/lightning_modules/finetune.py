"""Finetuning: the whole network trains, the backbone optionally at a lower learning rate."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..backbones import create_backbone
from ..task import Task
from .base import Optimizer, Schedule, TaskModule, check_lr_multiplier, check_memory_format


class Finetune(TaskModule):
    """Backbone plus linear head, all trainable.

    Args:
        backbone, checkpoint, backbone_kwargs, embedding, resize_to: as for ``LinearProbe``.
        stem: ``small`` gives a ResNet the small-image stem of MedMNIST v2's ResNets at 28 px (3x3 stride-1
            conv1, no max-pool; random initialisation or an export trained so, never pretrained 7x7 weights);
            ``imagenet`` keeps timm's; null: the checkpoint export's, else imagenet (``backbones/stem.py``).
        normalisation: ``{mean: [...], std: [...]}`` (the [0, 1] scale) instead of the weights' own, e.g.
            the 0.5 / 0.5 of MedMNIST v2's from-scratch training; null: the weights'.
        backbone_lr_multiplier: the backbone's learning rate is ``lr * backbone_lr_multiplier`` (e.g. 0.1).
        head_dropout: dropout before the linear head.
        memory_format: ``channels_last`` keeps the backbone's convolution weights and each batch (on the
            device, still uint8) in NHWC layout: faster convolutions on GPUs with tensor cores (with
            ``trainer.precision: bf16-mixed`` or ``16-mixed``) and on recent CPUs; outputs equal the default
            ``contiguous`` layout's to float rounding.
        compile: ``true`` compiles the backbone's forward (normalisation included) with ``torch.compile`` on
            its first batch, or a mapping of ``torch.compile`` arguments (``{mode: max-autotune}``). The
            module is compiled in place, so checkpoints keep their usual keys and load either way.
        task, lr, weight_decay, optimizer, scheduler, warmup_epochs, milestones: see ``TaskModule``.
    """

    def __init__(
        self,
        backbone: str = "resnet50.tv_in1k",
        checkpoint: str | None = None,
        backbone_kwargs: dict | None = None,
        embedding: str | None = None,
        resize_to: int | None = None,
        backbone_lr_multiplier: float = 1.0,
        head_dropout: float = 0.0,
        task: Task | None = None,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        optimizer: Optimizer = "adamw",
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        memory_format: Literal["contiguous", "channels_last"] = "contiguous",
        compile: bool | dict = False,
        stem: Literal["imagenet", "small"] | None = None,
        normalisation: dict | None = None,
        milestones: list[int] | None = None,
    ) -> None:
        super().__init__(task, lr, weight_decay, optimizer, scheduler, warmup_epochs, milestones)
        check_lr_multiplier(backbone_lr_multiplier)
        check_memory_format(memory_format, nullable=False)
        self.save_task_hyperparameters()
        self.backbone = create_backbone(backbone, checkpoint=checkpoint, embedding=embedding,
                                        resize_to=resize_to, stem=stem, normalisation=normalisation,
                                        **(backbone_kwargs or {}))
        if memory_format == "channels_last":
            self.backbone.use_channels_last()
        if compile:
            # nn.Module.compile, not torch.compile(module): no ``_orig_mod.`` wrapper in the state dict
            self.backbone.compile(**(compile if isinstance(compile, dict) else {}))
        self.backbone_lr_multiplier = backbone_lr_multiplier
        self.head = nn.Sequential(nn.Dropout(head_dropout),
                                  nn.Linear(self.backbone.embed_dim, self.task.num_outputs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def logits(self, batch: dict) -> torch.Tensor:
        return self(batch["image"])

    def parameter_groups(self) -> list[dict]:
        return [
            {"params": list(self.backbone.parameters()), "lr": self.lr * self.backbone_lr_multiplier},
            {"params": list(self.head.parameters()), "lr": self.lr},
        ]

    def backbone_descriptions(self) -> list[dict]:
        """The weights the run started from (the fingerprint is taken before training: pre-flight)."""
        return [self.backbone.describe()]

    def produced_weights(self) -> dict:
        """The finetuned backbone as the model holds it now.

        After ``fit``, that is the checkpoint it was tested with.
        """
        return {"what": "finetuned backbone", "fingerprint": self.backbone.current_fingerprint()}
