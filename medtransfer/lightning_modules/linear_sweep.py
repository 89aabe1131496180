"""A learning-rate / weight-decay sweep of linear probes trained together in one pass over the features."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from ..task import Task
from .frozen import SingleBackboneModule
from .metrics import build_metrics, metric_targets, probabilities

DEFAULT_LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)


class LinearSweep(SingleBackboneModule):
    """One linear head per (learning rate, weight decay) pair, all trained at once on the same batches (as in
    DINOv2's linear evaluation): one optimizer with a parameter group per head, one stacked matrix product per
    step, so ten heads cost little more than one.

    After every validation epoch the head with the best validation primary metric (``val/auroc`` or
    ``val/kappa``; ties go to the lower validation loss) is selected, and ``val/*`` report that head;
    checkpoints keep the selection, so the test after fit measures only the head chosen on validation. The
    test split never takes part in the choice. results.json ``extra.sweep`` holds the chosen values and every
    head's validation metrics.

    Args:
        backbone, checkpoint, backbone_kwargs, embedding, resize_to: as for ``LinearProbe``.
        lrs: learning rates to try.
        weight_decays: weight decays to try (every pair with ``lrs`` gets a head).
        feature_cache, features_dir: see ``FrozenBackboneModule``.
        task, optimizer, scheduler, warmup_epochs: see ``TaskModule`` (the schedule scales every head's rate).
    """

    def __init__(
        self,
        backbone: str = "resnet50.tv_in1k",
        checkpoint: str | None = None,
        backbone_kwargs: dict | None = None,
        embedding: str | None = None,
        resize_to: int | None = None,
        lrs: Sequence[float] = DEFAULT_LRS,
        weight_decays: Sequence[float] = (0.0,),
        feature_cache: bool = True,
        features_dir: str | None = None,
        task: Task | None = None,
        optimizer: str = "adamw",
        scheduler: str = "cosine",
        warmup_epochs: float = 0.0,
    ) -> None:
        if not lrs or not weight_decays:
            raise ValueError("model.lrs and model.weight_decays each need at least one value")
        super().__init__(
            task, max(lrs), 0.0, optimizer, scheduler, warmup_epochs, feature_cache, features_dir
        )
        self.save_task_hyperparameters()
        self.build_frozen_backbone(backbone, checkpoint, backbone_kwargs, embedding, resize_to)
        self.grid = [(float(lr), float(wd)) for lr, wd in itertools.product(lrs, weight_decays)]
        self.heads = nn.ModuleList(
            nn.Linear(self.backbone.embed_dim, self.task.num_outputs) for _ in self.grid
        )
        self.head_metrics = nn.ModuleList(build_metrics(self.task) for _ in self.grid)
        self.head_losses = nn.ModuleList(MeanMetric() for _ in self.grid)
        self.register_buffer("selected", torch.tensor(0))
        self.head_results: list[dict[str, float]] = []

    def all_logits(self, batch: dict) -> torch.Tensor:
        """``H x B x outputs``: every head on the batch, in one product."""
        weight = torch.stack([head.weight for head in self.heads])
        bias = torch.stack([head.bias for head in self.heads])
        return torch.einsum("bd,hod->hbo", self.embeddings(batch)[0], weight) + bias[:, None]

    def logits(self, batch: dict) -> torch.Tensor:
        """The selected head (used for test and predict)."""
        return self.heads[int(self.selected)](self.embeddings(batch)[0])

    def head_losses_of(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss of every head (``H``), computed in one call."""
        heads, batch = logits.shape[:2]
        if self.task.kind == "multiclass":
            losses = F.cross_entropy(
                logits.reshape(heads * batch, -1), labels.long().repeat(heads), reduction="none"
            )
            return losses.view(heads, batch).mean(dim=1)
        target = labels.float().reshape(batch, -1).expand(heads, batch, logits.shape[-1])
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labels = batch["label"]
        logits = self.all_logits(batch)
        losses = self.head_losses_of(logits, labels)
        chosen = int(self.selected)
        self.split_metrics["train_split"].update(
            probabilities(self.task, logits[chosen].detach()), metric_targets(self.task, labels)
        )
        self.split_losses["train_split"].update(losses[chosen].detach(), weight=len(labels))
        if "image" in batch:  # as in TaskModule.training_step: no per-step log on cached features
            self.log("train/loss_step", losses[chosen], prog_bar=True, batch_size=len(labels))
        return losses.sum()  # heads share no parameters: each gets the gradient of its own loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        labels = batch["label"]
        logits = self.all_logits(batch).detach()
        losses = self.head_losses_of(logits, labels)
        targets = metric_targets(self.task, labels)
        for h in range(len(self.grid)):
            self.head_metrics[h].update(probabilities(self.task, logits[h]), targets)
            self.head_losses[h].update(losses[h], weight=len(labels))

    def on_validation_epoch_end(self) -> None:
        results = []
        for metrics, loss in zip(self.head_metrics, self.head_losses, strict=True):
            if not self.trainer.sanity_checking:
                results.append(
                    {name: float(v) for name, v in metrics.compute().items()}
                    | {"loss": float(loss.compute())}
                )
            metrics.reset()
            loss.reset()
        if self.trainer.sanity_checking:
            return
        primary = self.task.primary_metric
        best = max(
            range(len(results)), key=lambda h: (_finite(results[h][primary]), _finite(-results[h]["loss"]))
        )
        self.selected.fill_(best)
        self.head_results = results
        self.epoch_metrics["val"] = results[best]
        lr, wd = self.grid[best]
        self.log_dict({f"val/{k}": v for k, v in results[best].items()}, prog_bar=True, sync_dist=False)
        self.log_dict({"val/selected_lr": lr, "val/selected_weight_decay": wd}, sync_dist=False)

    def parameter_groups(self) -> list[dict]:
        return [
            {"params": list(head.parameters()), "lr": lr, "weight_decay": wd}
            for head, (lr, wd) in zip(self.heads, self.grid, strict=True)
        ]

    def extra_results(self) -> dict:
        lr, wd = self.grid[int(self.selected)]
        validated = self.grid[: len(self.head_results)]  # empty before the first validation
        heads = [
            {"lr": h_lr, "weight_decay": h_wd, **{f"val/{k}": v for k, v in values.items()}}
            for (h_lr, h_wd), values in zip(validated, self.head_results, strict=True)
        ]
        return {"sweep": {"selected": {"lr": lr, "weight_decay": wd}, "selected_on": "val", "heads": heads}}


def _finite(value: float) -> float:
    """NaN (an undefined metric, e.g. AUROC with one class present) ranks last."""
    return value if math.isfinite(value) else -math.inf
