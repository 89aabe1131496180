"""Per-backbone importance of a fused model: how much each backbone's embedding moves the prediction.

Two kinds are kept apart, because they answer different questions:

- ``importance`` (ablation): for each sample, replace backbone ``k``'s embedding by its training mean and
  measure how far the model's scores move (logits for binary/multilabel, log-probabilities for multiclass, L1
  over the outputs); the shares over backbones sum to 1. It is the same measure for every fusion, so ``dvme``
  and ``concat`` runs compare, and it tracks where the signal is: a backbone the model ignores scores near 0.
- mixing weights: what the fusion itself computes, the mean attention each backbone's token receives
  (``dvme``) or the softmax weights (``dme``). They describe how tokens are mixed, not how much each one
  matters: a DVME output token keeps its own source through the residual path whatever the attention does,
  and a DME projection can scale a small weight back up, so on their own they can sit near uniform while one
  backbone carries all the signal.

``ImportanceMeter`` accumulates either kind over a split, overall and per class (by true label), synchronised
across DDP ranks like the other metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchmetrics import Metric

from ..task import Task

ScoreFn = Callable[[list[torch.Tensor]], torch.Tensor]


def ablation_importance(scores: ScoreFn, embeddings: Sequence[torch.Tensor],
                        references: Sequence[torch.Tensor]) -> torch.Tensor:
    """``B x K`` shares (rows sum to 1) of the change in ``scores`` when each embedding in turn is replaced
    by its reference; uniform for a sample no replacement changes."""
    embeddings = list(embeddings)
    base = scores(embeddings)
    changes = []
    for k, reference in enumerate(references):
        replaced = list(embeddings)
        replaced[k] = reference.to(embeddings[k].dtype).expand_as(embeddings[k])
        changes.append((scores(replaced) - base).abs().float().sum(dim=-1))
    changes = torch.stack(changes, dim=1)
    total = changes.sum(dim=1, keepdim=True)
    uniform = torch.full_like(changes, 1.0 / changes.shape[1])
    return torch.where(total > 0, changes / total.clamp_min(torch.finfo(changes.dtype).tiny), uniform)


class EmbeddingMeans(nn.Module):
    """Running means of each backbone's embedding over training batches (the ablation reference).

    The first ``window`` batches are averaged exactly, later ones enter an exponential average over about
    ``window`` batches, so the means follow embeddings that change during end-to-end training. Saved in
    checkpoints; DDP keeps them equal on every rank (buffers are broadcast from rank 0)."""

    def __init__(self, embed_dims: Sequence[int], window: int = 100) -> None:
        super().__init__()
        self.window = window
        for k, dim in enumerate(embed_dims):
            self.register_buffer(f"mean_{k}", torch.zeros(dim))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))
        self.num_sources = len(embed_dims)

    @property
    def ready(self) -> bool:
        return bool(self.batches > 0)

    def means(self) -> list[torch.Tensor]:
        return [getattr(self, f"mean_{k}") for k in range(self.num_sources)]

    @torch.no_grad()
    def update(self, embeddings: Sequence[torch.Tensor]) -> None:
        weight = 1.0 / min(int(self.batches) + 1, self.window)
        for mean, embedding in zip(self.means(), embeddings, strict=True):
            mean.lerp_(embedding.detach().float().mean(dim=0), weight)
        self.batches += 1


class ImportanceMeter(Metric):
    """Mean ``B x K`` importance over a split, overall and per class (samples whose true label is the class,
    or which carry the finding for multilabel tasks)."""

    full_state_update = False

    def __init__(self, task: Task, num_sources: int) -> None:
        super().__init__()
        self.kind = task.kind
        self.num_classes = task.num_classes
        self.add_state("total", torch.zeros(num_sources, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("class_total", torch.zeros(task.num_classes, num_sources, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("class_count", torch.zeros(task.num_classes, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, importance: torch.Tensor, labels: torch.Tensor) -> None:
        importance = importance.detach().double()
        if self.kind == "multilabel":
            membership = labels.detach().round().double()
        else:
            classes = labels.detach().long().reshape(-1)
            membership = torch.nn.functional.one_hot(classes, self.num_classes).double()
        self.total += importance.sum(dim=0)
        self.count += importance.shape[0]
        self.class_total += membership.T @ importance
        self.class_count += membership.sum(dim=0)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(``K`` overall mean, ``C x K`` per-class means with NaN rows for classes with no samples)."""
        overall = self.total / self.count.clamp_min(1)
        per_class = self.class_total / self.class_count.unsqueeze(1)
        return overall.float(), per_class.float()


def importance_table(overall: torch.Tensor, per_class: torch.Tensor, backbones: Sequence[str],
                     class_names: Sequence[str]) -> dict:
    """``{"overall": {backbone: share}, "per_class": {class: {backbone: share}}}`` (classes with no samples
    left out)."""
    overall = overall.reshape(-1)  # torchmetrics returns one backbone's share as a scalar
    table = {"overall": dict(zip(backbones, overall.tolist(), strict=True)), "per_class": {}}
    for name, row in zip(class_names, per_class, strict=True):
        if not bool(torch.isnan(row).any()):
            table["per_class"][name] = dict(zip(backbones, row.tolist(), strict=True))
    return table
