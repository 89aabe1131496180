"""What a run decides, beside how it ranks: the balanced accuracy of its test decisions, and whether those
decisions are degenerate.

AUROC and kappa score how a model orders its probabilities; a finetune whose three seeds gave every test image
the majority class (accuracy 0.516, F1 0) still ordered them well enough to stand in bold as the best. So the
report shows, beside each cell's primary metric, a thresholded metric, and flags a run whose decisions are
one class for every test sample or whose probabilities do not vary; such a cell is marked and never bold.

Balanced accuracy (the mean over classes of the share of each class's samples decided as that class; for
multilabel, the mean over labels of the mean of sensitivity and specificity) is the thresholded metric: its
chance level does not move with the class balance (50 for a binary task, 100 / C for C classes), so a model
that decides one class scores exactly chance whatever the prevalence, where accuracy rewards the majority
class and F1 depends on which class is called positive.

Decisions: multiclass, the most probable class; binary and multilabel, each class whose probability reaches
its threshold, as ``medtransfer predict`` decides: 0.5, or the thresholds results.json records under
``extra.decision.thresholds`` (``{class name: threshold}``, the form ``medtransfer predict`` writes beside its
predictions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..outputs.predictions import Predictions
from ..outputs.thresholds import DEFAULT_THRESHOLD
from ..task import Task

CONSTANT_SPREAD = 1e-4  # probabilities that vary less than this over the test set are constant


@dataclass(frozen=True)
class Decisions:
    """A run's balanced accuracy on its test decisions, and why those decisions are degenerate (or None)."""

    balanced_accuracy: float
    flag: str | None


def recorded_decision(results: dict) -> dict | None:
    """The thresholds results.json records (``extra.decision.thresholds``: ``{class name: threshold}``), or
    None."""
    thresholds = ((results.get("extra") or {}).get("decision") or {}).get("thresholds")
    if not isinstance(thresholds, dict):
        return None
    return {str(k): float(v) for k, v in thresholds.items() if isinstance(v, (int, float)) and not
            isinstance(v, bool)}


def decisions_of(predictions: Predictions, recorded: dict | None) -> Decisions | None:
    """The decisions of a run's test ``predictions`` at its ``recorded`` thresholds (None: 0.5); None when the
    predictions have no labels to score them against."""
    if predictions.labels is None or len(predictions) == 0:
        return None
    thresholds, rule = thresholds_of(predictions.task, recorded)
    decided = decide(predictions, thresholds)
    score = balanced_accuracy(predictions.task, predictions.labels, decided)
    return Decisions(score, degenerate(predictions, decided, rule))


def thresholds_of(task: Task, recorded: dict | None) -> tuple[np.ndarray, str]:
    """Per-class thresholds (binary: the positive class's) and how to name them: the ``recorded`` ones (a
    class missing there keeps 0.5), else 0.5. Multiclass tasks take the most probable class instead."""
    if task.kind == "multiclass":
        return np.empty(0), "most probable class"
    names = task.class_names[1:] if task.kind == "binary" else task.class_names
    if not recorded or not any(name in recorded for name in names):
        return np.full(len(names), DEFAULT_THRESHOLD), f"threshold {DEFAULT_THRESHOLD}"
    values = [recorded.get(name, DEFAULT_THRESHOLD) for name in names]
    return np.array(values), "thresholds " + ", ".join(f"{v:g}" for v in values) + " from results.json"


def decide(predictions: Predictions, thresholds: np.ndarray) -> np.ndarray:
    """``N`` decided classes (binary, multiclass) or ``N x C`` 0/1 decisions (multilabel)."""
    kind = predictions.task.kind
    if kind == "multiclass":
        return predictions.probs.argmax(axis=1)
    if kind == "binary":
        return (predictions.probs >= thresholds[0]).astype(np.int64)
    return (predictions.probs >= thresholds[None, :]).astype(np.int64)


def balanced_accuracy(task: Task, labels: np.ndarray, decided: np.ndarray) -> float:
    """The mean over classes present in ``labels`` of their recall; multilabel: that of each label's two
    outcomes, averaged over labels."""
    if task.kind != "multilabel":
        return mean_recall(labels, decided)
    return float(np.mean([mean_recall(labels[:, c], decided[:, c]) for c in range(labels.shape[1])]))


def mean_recall(labels: np.ndarray, decided: np.ndarray) -> float:
    return float(np.mean([np.mean(decided[labels == c] == c) for c in np.unique(labels)]))


def degenerate(predictions: Predictions, decided: np.ndarray, rule: str) -> str | None:
    """Why a run's test decisions say nothing about its images: its probabilities do not vary, or it decides
    the same for every test sample; None when neither."""
    spread = np.ptp(predictions.probs, axis=0)
    if np.max(spread) < CONSTANT_SPREAD:
        return f"its probabilities are constant (spread below {CONSTANT_SPREAD:g} over the test set)"
    if not (decided == decided[0]).all():
        return None
    names = predictions.task.class_names
    if predictions.task.kind == "multilabel":
        chosen = ", ".join(f"'{n}'" for n, on in zip(names, decided[0], strict=True) if on) or "no label"
        return f"it decides {chosen} for every test sample ({rule})"
    return f"it decides '{names[int(decided[0])]}' for every test sample ({rule})"
