"""A learning-rate / weight-decay sweep of linear probes trained together in one pass over the features."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ..runtime.training_bar import step_value_on_bar
from ..task import Task
from .base import Optimizer, Schedule
from .frozen import SingleBackboneModule
from .head_stack import HeadStack
from .headwise_optimizer import HeadwiseOptimizer
from .metrics import binary_auroc_rows, build_metrics, metric_targets, probabilities
from .selection import best_index, grid_edges, warn_grid_edges

# SGD with momentum on standardised features: rates around 0.1, and the L2 weight decay searched too, since an
# unpenalised head trained to convergence overfits as the exact solver's path shows
DEFAULT_LRS = (0.01, 0.03, 0.1, 0.3, 1.0)
DEFAULT_WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # up to the strong penalties good features select


class LinearSweep(SingleBackboneModule):
    """One linear head per (learning rate, weight decay) pair, all trained at once; validation picks one.

    All heads train at once on the same batches (as in DINOv2's linear evaluation): the heads are one stacked
    weight, applied in one matrix product and stepped by one ``HeadwiseOptimizer`` update, so ten heads cost
    little more than one.

    After every validation epoch the head with the best validation primary metric (``val/auroc`` or
    ``val/kappa``; ties go to the lower validation loss) is selected, and ``val/*`` report that head;
    checkpoints keep the selection, so the test after fit measures only the head chosen on validation. The
    test split never takes part in the choice. results.json ``extra.sweep`` holds the chosen values and every
    head's metrics on the last validation; a choice at either end of ``lrs`` or ``weight_decays`` is warned
    about when fitting ends and recorded in ``extra.sweep.grid_edge``.

    Args:
        backbone, checkpoint, backbone_kwargs, embedding, resize_to: as for ``LinearProbe``.
        lrs: learning rates to try.
        weight_decays: weight decays to try (every pair with ``lrs`` gets a head).
        feature_cache, features_dir, standardize, memory_format: see ``FrozenBackboneModule``.
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
        weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
        feature_cache: bool = True,
        features_dir: str | None = None,
        standardize: bool = True,
        task: Task | None = None,
        optimizer: Optimizer = "sgd",
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        memory_format: Literal["contiguous", "channels_last"] | None = None,
    ) -> None:
        if not lrs or not weight_decays:
            raise ValueError("model.lrs and model.weight_decays each need at least one value")
        super().__init__(
            task, max(lrs), 0.0, optimizer, scheduler, warmup_epochs, feature_cache, features_dir,
            standardize, memory_format,
        )
        self.save_task_hyperparameters()
        self.build_frozen_backbone(backbone, checkpoint, backbone_kwargs, embedding, resize_to)
        self.grid = [(float(lr), float(wd)) for lr, wd in itertools.product(lrs, weight_decays)]
        self.heads = HeadStack(len(self.grid), self.backbone.embed_dim, self.task.num_outputs)
        self.val_outputs = HeadOutputs()
        # fed with outputs already gathered from every rank: computing must not gather again
        self.scorer = build_metrics(self.task, sync_on_compute=False)
        self.primary_scorer = build_metrics(self.task, sync_on_compute=False)[self.task.primary_metric]
        self.register_buffer("selected", torch.tensor(0))
        self._last_val: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def guarded_parameters(self) -> list:
        """None: the heads are independent, and one whose learning rate is too high may diverge alone.

        Such a head loses the selection on its non-finite validation score; when every head diverges, the
        training loss is not finite and the guard stops the run.
        """
        return []

    def logits(self, batch: dict) -> torch.Tensor:
        """The selected head (used for test and predict)."""
        return self.heads.head(int(self.selected), self.embeddings(batch)[0])

    def head_losses_of(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task loss of every head (``H``) from ``H x B x outputs`` logits, computed in one call."""
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
        logits = self.heads(self.embeddings(batch)[0])
        losses = self.head_losses_of(logits, labels)
        chosen = int(self.selected)
        self.record_step("train", probabilities(self.task, logits[chosen].detach()),
                         metric_targets(self.task, labels), losses[chosen])
        if "image" in batch:  # as in TaskModule.training_step: no per-step log on cached features
            loss = losses[chosen]
            self.log("train/loss_step", loss, prog_bar=step_value_on_bar(loss), batch_size=len(labels))
        # heads share no parameters: each gets the gradient of its own loss. A head whose learning rate is
        # too high for the data diverges alone; it gets no gradient (and loses the selection on its
        # non-finite validation score). Only when every head diverged does the loss say so (run.guards).
        finite = torch.isfinite(losses)
        kept = torch.where(finite, losses, torch.zeros_like(losses)).sum()
        return torch.where(finite.any(), kept, losses.sum())  # no host sync: a step stays queued on a GPU

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.val_outputs.update(self.heads(self.embeddings(batch)[0]).detach(), batch["label"])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_outputs.reset()
            return
        logits, labels = self.val_outputs.compute()  # H x N x outputs over the whole split, every rank
        self.val_outputs.reset()
        targets = metric_targets(self.task, labels)
        losses = self.head_losses_of(logits, labels)
        scores = self._primary_scores(logits, targets)
        best = best_index(scores, [float(loss) for loss in losses])
        self.selected.fill_(best)
        self._last_val = (logits, targets, losses)
        values = self._score(logits[best], targets) | {"loss": float(losses[best])}
        self.epoch_metrics["val"] = values
        lr, wd = self.grid[best]
        self.log_dict({f"val/{k}": v for k, v in values.items()}, prog_bar=True, sync_dist=False)
        self.log_dict({"val/selected_lr": lr, "val/selected_weight_decay": wd}, sync_dist=False)

    def _score(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """The task's metrics of one head's logits on the gathered split."""
        self.scorer.update(probabilities(self.task, logits), targets)
        values = {name: float(v) for name, v in self.scorer.compute().items()}
        self.scorer.reset()
        return values

    def _primary_scores(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
        """Every head's primary metric (what selection needs) from ``H x N x outputs`` logits.

        A binary AUROC is computed for all heads in one pass (ten torchmetrics computations an epoch were a
        sweep's largest cost over one probe); other metrics head by head. A head with a non-finite logit
        (diverged) scores NaN, which selection ranks last: the metrics would rank its NaN predictions as
        numbers.
        """
        per_head = logits.reshape(len(logits), -1)
        if self.task.kind == "binary" and self.task.primary_metric == "auroc":
            scores = binary_auroc_rows(torch.sigmoid(per_head.float()), targets).tolist()
        else:
            scores = [self._primary_score(logits[h], targets) for h in range(len(self.grid))]
        finite = torch.isfinite(per_head).all(dim=1).tolist()
        return [score if ok else math.nan for score, ok in zip(scores, finite, strict=True)]

    def _primary_score(self, logits: torch.Tensor, targets: torch.Tensor) -> float:
        """The task's primary metric alone (what selection needs) of one head's logits."""
        self.primary_scorer.update(probabilities(self.task, logits), targets)
        value = float(self.primary_scorer.compute())
        self.primary_scorer.reset()
        return value

    @property
    def head_results(self) -> list[dict[str, float]]:
        """Every head's validation metrics and loss on the last validation (empty before the first)."""
        if self._last_val is None:
            return []
        logits, targets, losses = self._last_val
        return [self._score(logits[h], targets) | {"loss": float(losses[h])} for h in range(len(self.grid))]

    def grid_edge(self) -> list[dict]:
        """Notes for a selected learning rate or weight decay at the end of its grid."""
        lr, wd = self.grid[int(self.selected)]
        lrs, wds = zip(*self.grid, strict=True)
        return grid_edges({"lrs": lrs, "weight_decays": wds}, {"lrs": lr, "weight_decays": wd})

    def on_fit_end(self) -> None:
        super().on_fit_end()
        warn_grid_edges(type(self).__name__, self.grid_edge())

    def make_optimizer(self) -> HeadwiseOptimizer:
        """One optimizer for every head, with weight decay on the weights only.

        Decaying the biases would pull every head towards equal class priors, which costs ordinal (kappa) and
        imbalanced tasks dearly, and the exact solver does not penalise them either.
        """
        lrs, wds = zip(*self.grid, strict=True)
        optimizer = HeadwiseOptimizer([self.heads.weight], lrs, wds, kind=self.optimizer_name)
        optimizer.add_param_group({"params": [self.heads.bias], "head_weight_decays": [0.0] * len(self.grid)})
        return optimizer

    def extra_results(self) -> dict:
        lr, wd = self.grid[int(self.selected)]
        validated = self.head_results  # every head's, or none before the first validation
        heads = [
            {"lr": h_lr, "weight_decay": h_wd, **{f"val/{k}": v for k, v in values.items()}}
            for (h_lr, h_wd), values in zip(self.grid[: len(validated)], validated, strict=True)
        ]
        return {"sweep": {"selected": {"lr": lr, "weight_decay": wd}, "selected_on": "val", "heads": heads,
                          "grid_edge": self.grid_edge()}}


class HeadOutputs(Metric):
    """Every head's logits and the labels over a split.

    Computing gathers them from every DDP rank (each sample is on exactly one rank), so all heads are scored
    on the whole split.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.logits.append(logits.transpose(0, 1))  # B x H x outputs: the sample dimension first, to cat
        self.labels.append(labels)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.logits).transpose(0, 1), dim_zero_cat(self.labels)
