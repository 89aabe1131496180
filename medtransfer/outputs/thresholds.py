"""Decision thresholds for binary and multilabel predictions, chosen on labelled validation data.

Rules, applied to each class (binary: the positive class) on its own:

- ``f1``: the probability threshold that maximises F1 of that class (precision and recall of "probability >=
  threshold"), ties going to the highest such threshold (fewest positives);
- ``youden``: the threshold that maximises Youden's J = sensitivity + specificity - 1 (the ROC point farthest
  above the diagonal), ties to the highest threshold.

Candidate thresholds are the observed validation probabilities, so "probability >= threshold" reproduces
exactly the validation decisions the rule scored. A class without both positive and negative validation
samples has no defined optimum: it keeps 0.5 and is reported as such.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5
THRESHOLD_RULES = ("f1", "youden")


def choose_threshold(labels: np.ndarray, probs: np.ndarray, rule: str) -> float | None:
    """The ``rule``'s threshold for one class from 0/1 ``labels`` and its ``probs``; None when the labels hold
    one value only."""
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(-probs, kind="stable")
    sorted_probs, sorted_labels = probs[order], labels[order]
    last_of_value = np.r_[sorted_probs[1:] != sorted_probs[:-1], True]  # predicted positive: all up to here
    true_pos = np.cumsum(sorted_labels)[last_of_value]
    predicted = (np.arange(len(probs)) + 1)[last_of_value]
    candidates = sorted_probs[last_of_value]
    if rule == "f1":
        score = 2 * true_pos / (predicted + positives)
    elif rule == "youden":
        false_pos = predicted - true_pos
        score = true_pos / positives - false_pos / negatives
    else:
        raise ValueError(f"unknown threshold rule {rule!r}; use one of {list(THRESHOLD_RULES)}")
    best = int(np.flatnonzero(score >= score.max() - 1e-12)[0])  # candidates descend: the highest threshold
    return float(candidates[best])


def choose_thresholds(kind: str, labels: np.ndarray, probs: np.ndarray,
                      rule: str) -> tuple[np.ndarray, list[int]]:
    """Per-class thresholds (binary: one, for the positive class) and the classes left at 0.5 for want of
    both positive and negative validation samples."""
    if kind == "binary":
        labels, probs = np.asarray(labels).reshape(-1, 1), np.asarray(probs).reshape(-1, 1)
    thresholds, undefined = [], []
    for column in range(probs.shape[1]):
        chosen = choose_threshold(labels[:, column], probs[:, column], rule)
        if chosen is None:
            undefined.append(column)
        thresholds.append(DEFAULT_THRESHOLD if chosen is None else chosen)
    return np.asarray(thresholds, dtype=np.float64), undefined
