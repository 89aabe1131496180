"""DINO (Caron et al. 2021): a student matches a momentum teacher's centred, sharpened output over multi-crop
views (the teacher sees the global views only); the teacher is the backbone kept."""

from __future__ import annotations

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad

from ...backbones.backbone import Backbone
from .base import Progress, SSLMethod, check_momentum, frozen_copy


class DINO(SSLMethod):
    """Args:
        hidden_dim, bottleneck_dim, output_dim: DINO head sizes (paper: 2048, 256, 65536).
        batch_norm: BatchNorm in the head (off for ViTs, as in the paper).
        norm_last_layer: weight-normalise the last layer (more stable).
        freeze_last_layer: epochs during which the last layer is not updated.
        teacher_temp, warmup_teacher_temp, warmup_teacher_temp_epochs: teacher temperature, warmed up
            linearly from ``warmup_teacher_temp`` over the first epochs.
        student_temp: student temperature.
        center_momentum: momentum of the teacher output's centre (averaged over all processes).
        momentum: teacher EMA momentum, [start, end] on a cosine schedule (paper: 0.996 to 1).
    """

    name = "dino"
    multi_crop = True

    def __init__(self, backbone: Backbone, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 output_dim: int = 65536, batch_norm: bool = False, norm_last_layer: bool = True,
                 freeze_last_layer: int = 1, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 0, student_temp: float = 0.1, center_momentum: float = 0.9,
                 momentum: tuple[float, float] = (0.996, 1.0)) -> None:
        super().__init__(backbone)
        self.momentum = check_momentum(momentum, self.name)
        def head() -> DINOProjectionHead:
            return DINOProjectionHead(backbone.embed_dim, hidden_dim, bottleneck_dim, output_dim,
                                      batch_norm=batch_norm, freeze_last_layer=freeze_last_layer,
                                      norm_last_layer=norm_last_layer)

        self.head = head()
        self.teacher_backbone = frozen_copy(backbone)
        # the weight-normalised last layer cannot be deep-copied: the teacher head is built and loaded
        self.teacher_head = head()
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(
            output_dim=output_dim, warmup_teacher_temp=warmup_teacher_temp, teacher_temp=teacher_temp,
            warmup_teacher_temp_epochs=warmup_teacher_temp_epochs, student_temp=student_temp,
            center_momentum=center_momentum)

    def student_teacher_pairs(self):
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def loss(self, views: list[torch.Tensor], global_views: int, progress: Progress) -> torch.Tensor:
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(v)).float() for v in views[:global_views]]
        student = [self.head(self.backbone(v)).float() for v in views]
        return self.criterion(teacher, student, epoch=progress.epoch)

    def after_backward(self, progress: Progress) -> None:
        self.head.cancel_last_layer_gradients(progress.epoch)

    def teacher_temperature(self, epoch: int) -> float:
        schedule = self.criterion.teacher_temp_schedule
        return float(schedule[epoch]) if epoch < len(schedule) else float(self.criterion.teacher_temp)

    def logged_values(self, progress: Progress) -> dict[str, float]:
        return super().logged_values(progress) | {"teacher_temp": self.teacher_temperature(progress.epoch)}

    def exported_backbone(self) -> Backbone:
        """DINO evaluates the teacher, whose weights average the student's over training."""
        return self.teacher_backbone
