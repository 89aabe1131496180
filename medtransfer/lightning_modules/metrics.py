"""torchmetrics per task kind, named as docs/architecture.md says: ``auroc``, ``acc``, ``f1``, ``kappa``
(ordinal only), and at test time the calibration of the probabilities: ``ece`` and ``brier`` (``ece/<class>``
per label for multilabel).

All are torchmetrics objects, so under DDP they are synchronised over the whole split when computed.

AUROC is undefined for a class whose targets hold only positives or only negatives (e.g. a rare class missing
from a small validation split). torchmetrics scores such a class 0 and averages it in, which silently drags
the macro AUROC down; here it is NaN, left out of the macro average, and a warning names it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from scipy.stats import rankdata
from torchmetrics import Metric, MetricCollection
from torchmetrics import classification as C
from torchmetrics.functional.classification import binary_calibration_error
from torchmetrics.utilities import dim_zero_cat

from ..task import Task


def _defined_auroc(per_class: torch.Tensor, positives: torch.Tensor, total: int,
                   names: list[str]) -> torch.Tensor:
    """Per-class AUROC with NaN where a class has no positive or no negative target."""
    defined = (positives > 0) & (positives < total)
    if not bool(defined.all()):
        missing = [name for name, ok in zip(names, defined.tolist(), strict=True) if not ok]
        rank_zero_warn(f"AUROC is undefined for {missing}: the split has only positives or only negatives "
                       "for them; reported as NaN and left out of the macro average")
    return torch.where(defined, per_class.float(), torch.full_like(per_class.float(), float("nan")))


class DefinedBinaryAUROC(C.BinaryAUROC):
    """BinaryAUROC that is NaN (not 0) when the split holds one class only."""

    def compute(self) -> torch.Tensor:
        target = dim_zero_cat(self.target)
        value = super().compute()
        return _defined_auroc(value.reshape(1), target.sum().reshape(1), len(target), ["positive class"])[0]


class DefinedMulticlassAUROC(C.MulticlassAUROC):
    """One-vs-rest AUROC per class; ``macro`` averages over the classes where it is defined."""

    def __init__(self, num_classes: int, average: str | None = "macro", class_names: list[str] | None = None,
                 **kwargs):
        super().__init__(num_classes=num_classes, average=None, **kwargs)
        self.macro = average == "macro"
        self.class_names = class_names or [str(c) for c in range(num_classes)]

    def compute(self) -> torch.Tensor:
        target = dim_zero_cat(self.target)
        positives = torch.bincount(target.long(), minlength=self.num_classes)
        per_class = _defined_auroc(super().compute(), positives, len(target), self.class_names)
        return per_class.nanmean() if self.macro else per_class


class DefinedMultilabelAUROC(C.MultilabelAUROC):
    """Per-label AUROC; ``macro`` averages over the labels where it is defined."""

    def __init__(self, num_labels: int, average: str | None = "macro", class_names: list[str] | None = None,
                 **kwargs):
        super().__init__(num_labels=num_labels, average=None, **kwargs)
        self.macro = average == "macro"
        self.class_names = class_names or [str(c) for c in range(num_labels)]

    def compute(self) -> torch.Tensor:
        target = dim_zero_cat(self.target)
        per_class = _defined_auroc(super().compute(), target.sum(dim=0), len(target), self.class_names)
        return per_class.nanmean() if self.macro else per_class


def binary_auroc_rows(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The AUROC of every row of ``scores`` (``H x N``) against the binary ``targets`` (``N``), in one pass.

    The rank-sum (Mann-Whitney) statistic on midranks, as ``stats.delong`` ranks: ties count one half, as in
    ``BinaryAUROC``, which computes one row at a time. A sweep scores its heads with it every validation
    epoch. NaN for every row when ``targets`` hold one class; scores must be finite (a NaN is ranked as a
    number, as ``BinaryAUROC`` does).
    """
    labels = targets.reshape(-1).cpu().numpy()
    if not ((labels == 0) | (labels == 1)).all():  # as BinaryAUROC's argument check: never read 2 as positive
        values = sorted(set(labels.tolist()))
        raise ValueError(f"binary AUROC needs targets of 0 and 1, got the values {values}")
    positive = labels == 1
    positives = int(positive.sum())
    negatives = positive.size - positives
    if positives == 0 or negatives == 0:
        return torch.full((len(scores),), float("nan"), dtype=torch.float64)
    ranks = rankdata(scores.double().cpu().numpy(), axis=1)
    rank_sums = ranks[:, positive].sum(axis=1)
    return torch.from_numpy((rank_sums - positives * (positives + 1) / 2) / (positives * negatives))


def build_metrics(task: Task, sync_on_compute: bool = True) -> MetricCollection:
    """Macro-averaged AUROC and F1, accuracy (fraction of correct predictions; per label for multilabel), and
    quadratic weighted kappa for ordinal tasks. Thresholds: 0.5 for binary/multilabel, argmax for
    multiclass. ``sync_on_compute=False`` for metrics fed with outputs already gathered from every rank."""
    n = task.num_classes
    names = list(task.class_names)
    sync = {"sync_on_compute": sync_on_compute}
    if task.kind == "binary":
        return MetricCollection({"auroc": DefinedBinaryAUROC(**sync), "acc": C.BinaryAccuracy(**sync),
                                 "f1": C.BinaryF1Score(**sync)})
    if task.kind == "multiclass":
        metrics = {
            "auroc": DefinedMulticlassAUROC(num_classes=n, average="macro", class_names=names, **sync),
            "acc": C.MulticlassAccuracy(num_classes=n, average="micro", **sync),
            "f1": C.MulticlassF1Score(num_classes=n, average="macro", **sync),
        }
        if task.ordinal:
            metrics["kappa"] = C.MulticlassCohenKappa(num_classes=n, weights="quadratic", **sync)
        return MetricCollection(metrics)
    return MetricCollection({
        "auroc": DefinedMultilabelAUROC(num_labels=n, average="macro", class_names=names, **sync),
        "acc": C.MultilabelAccuracy(num_labels=n, average="macro", **sync),
        "f1": C.MultilabelF1Score(num_labels=n, average="macro", **sync),
    })


def build_per_class_auroc(task: Task) -> DefinedMultilabelAUROC | None:
    """Per-class AUROC for multilabel tasks (``test/auroc/<class name>``)."""
    if task.kind != "multilabel":
        return None
    return DefinedMultilabelAUROC(num_labels=task.num_classes, average=None,
                                  class_names=list(task.class_names))


CALIBRATION_BINS = 15  # torchmetrics' default; medtransfer.stats.calibration bins the same way


class BrierScore(Metric):
    """Mean squared error of the probabilities: ``(p - y)^2`` (binary), ``sum_k (p_k - [y = k])^2``
    (multiclass, from 0 to 2), averaged over labels for multilabel. Lower is better; 0.25 for a binary
    model that always says 0.5."""

    full_state_update = False

    def __init__(self, kind: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        probs = probs.double()
        if self.kind == "multiclass":
            targets = F.one_hot(targets.long(), probs.shape[1]).double()
            squared = ((probs - targets) ** 2).sum(dim=1)
        else:
            squared = (probs - targets.double()) ** 2
            if self.kind == "multilabel":
                squared = squared.mean(dim=1)
        self.total += squared.sum()
        self.count += squared.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


class MultilabelCalibrationError(Metric):
    """Expected calibration error of each label's probability (torchmetrics' binary ECE per label); the
    macro average is ``ece`` and each label's ``ece/<class>``."""

    full_state_update = False

    def __init__(self, num_labels: int, n_bins: int = CALIBRATION_BINS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.n_bins = n_bins
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        self.probs.append(probs.float())
        self.targets.append(targets.long())

    def compute(self) -> torch.Tensor:
        probs, targets = dim_zero_cat(self.probs), dim_zero_cat(self.targets)
        return torch.stack([binary_calibration_error(probs[:, c].contiguous(), targets[:, c].contiguous(),
                                                     n_bins=self.n_bins)
                            for c in range(self.num_labels)])


def build_calibration_metrics(task: Task) -> MetricCollection:
    """``ece`` (expected calibration error, 15 equal-width bins, L1: torchmetrics' definition) and ``brier``.
    Binary: calibration of the positive-class probability; multiclass: of the top class (confidence against
    accuracy); multilabel: per label."""
    if task.kind == "binary":
        ece = C.BinaryCalibrationError(n_bins=CALIBRATION_BINS)
    elif task.kind == "multiclass":
        ece = C.MulticlassCalibrationError(num_classes=task.num_classes, n_bins=CALIBRATION_BINS)
    else:
        ece = MultilabelCalibrationError(num_labels=task.num_classes)
    return MetricCollection({"ece": ece, "brier": BrierScore(task.kind)})


def calibration_values(task: Task, computed: dict[str, torch.Tensor]) -> dict[str, float]:
    """Plain numbers from ``build_calibration_metrics(...).compute()``: per-label ECEs become
    ``ece/<class>`` next to their mean."""
    values = {"brier": float(computed["brier"])}
    ece = computed["ece"]
    if ece.ndim == 0:
        values["ece"] = float(ece)
    else:
        values["ece"] = float(ece.mean())
        values.update({f"ece/{name}": float(v) for name, v in zip(task.class_names, ece, strict=True)})
    return values


def sample_losses(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's task loss (``B``; its mean is ``task_loss``): for multilabel, the mean over labels."""
    logits = logits.float()
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float().reshape(-1),
                                                  reduction="none")
    if task.kind == "multiclass":
        return F.cross_entropy(logits, labels.long(), reduction="none")
    return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(dim=1)


def build_curve_metrics(task: Task) -> tuple[C.BinaryROC | C.MulticlassROC | C.MultilabelROC,
                                             C.BinaryConfusionMatrix | C.MulticlassConfusionMatrix
                                             | C.MultilabelConfusionMatrix]:
    """ROC curves (one per class, one-vs-rest, for multiclass/multilabel) and the confusion matrix (one 2 x 2
    matrix per class for multilabel), for the test-time pictures."""
    n = task.num_classes
    if task.kind == "binary":
        return C.BinaryROC(), C.BinaryConfusionMatrix()
    if task.kind == "multiclass":
        return C.MulticlassROC(num_classes=n), C.MulticlassConfusionMatrix(num_classes=n)
    return C.MultilabelROC(num_labels=n), C.MultilabelConfusionMatrix(num_labels=n)


def probabilities(task: Task, logits: torch.Tensor) -> torch.Tensor:
    """Binary: ``B`` positive-class probabilities; multiclass: softmax ``B x C``; multilabel: sigmoid
    ``B x C``."""
    logits = logits.float()
    if task.kind == "binary":
        return torch.sigmoid(logits.reshape(-1))
    if task.kind == "multiclass":
        return logits.softmax(dim=-1)
    return torch.sigmoid(logits)


def task_loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits for binary and multilabel, cross-entropy for multiclass (computed in float32)."""
    logits = logits.float()
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float().reshape(-1))
    if task.kind == "multiclass":
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def metric_targets(task: Task, labels: torch.Tensor) -> torch.Tensor:
    """Integer targets for torchmetrics (multilabel float labels rounded to 0/1)."""
    return labels.long() if task.kind != "multilabel" else labels.round().long()
