"""torchmetrics per task kind, named as DESIGN.md says: ``auroc``, ``acc``, ``f1``, ``kappa`` (ordinal only).

All are torchmetrics objects, so under DDP they are synchronised over the whole split when computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics import classification as C

from ..task import Task


def build_metrics(task: Task) -> MetricCollection:
    """Macro-averaged AUROC and F1, accuracy, and quadratic weighted kappa for ordinal tasks."""
    n = task.num_classes
    if task.kind == "binary":
        return MetricCollection({"auroc": C.BinaryAUROC(), "acc": C.BinaryAccuracy(), "f1": C.BinaryF1Score()})
    if task.kind == "multiclass":
        metrics = {
            "auroc": C.MulticlassAUROC(num_classes=n, average="macro"),
            "acc": C.MulticlassAccuracy(num_classes=n, average="micro"),
            "f1": C.MulticlassF1Score(num_classes=n, average="macro"),
        }
        if task.ordinal:
            metrics["kappa"] = C.MulticlassCohenKappa(num_classes=n, weights="quadratic")
        return MetricCollection(metrics)
    return MetricCollection({
        "auroc": C.MultilabelAUROC(num_labels=n, average="macro"),
        "acc": C.MultilabelAccuracy(num_labels=n, average="macro"),
        "f1": C.MultilabelF1Score(num_labels=n, average="macro"),
    })


def build_per_class_auroc(task: Task) -> C.MultilabelAUROC | None:
    """Per-class AUROC for multilabel tasks (``test/auroc/<class name>``)."""
    return C.MultilabelAUROC(num_labels=task.num_classes, average=None) if task.kind == "multilabel" else None


def probabilities(task: Task, logits: torch.Tensor) -> torch.Tensor:
    """Binary: ``B`` positive-class probabilities; multiclass: softmax ``B x C``; multilabel: sigmoid ``B x C``."""
    logits = logits.float()
    if task.kind == "binary":
        return torch.sigmoid(logits.reshape(-1))
    if task.kind == "multiclass":
        return logits.softmax(dim=-1)
    return torch.sigmoid(logits)


def task_loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits for binary and multilabel, cross-entropy for multiclass."""
    logits = logits.float()
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float().reshape(-1))
    if task.kind == "multiclass":
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def metric_targets(task: Task, labels: torch.Tensor) -> torch.Tensor:
    return labels.long() if task.kind != "multilabel" else labels.round().long()
