"""Calibration of predicted probabilities: ECE, the Brier score, and a reliability diagram's bins.

Expected calibration error (ECE) over equal-width confidence bins, the Brier score, and the bins a reliability
diagram draws.

Binning follows torchmetrics' ``BinaryCalibrationError`` / ``MulticlassCalibrationError`` (``n_bins`` equal
bins on [0, 1], left-closed, a confidence of exactly 1 in a slot of its own, L1 norm), so the numbers here
and the ``test/ece`` that a run logs agree. Binary: the confidence is the probability of the positive class
and "correct" is the label; multiclass: the top probability and whether its class is the label; multilabel:
each label on its own, like binary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BINS = 15  # torchmetrics' default


def bin_edges(n_bins: int = N_BINS) -> np.ndarray:
    """The ``n_bins + 1`` float32 bin edges torchmetrics compares confidences with.

    They are ``torch.linspace`` in float32, which differs from numpy's by an ulp at some edges (and between
    CPUs: it is vectorised).
    """
    import torch  # here, not at the top: processes that never bin (the benchmark report) skip its import

    return torch.linspace(0, 1, n_bins + 1, dtype=torch.float32).numpy()


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin of each confidence, ``0 .. n_bins`` (``n_bins``: a confidence of exactly 1).

    Confidences are compared in float32, as the model's probabilities are.
    """
    edges = bin_edges(n_bins)
    index = np.searchsorted(edges, np.asarray(confidence, dtype=np.float32), side="right") - 1
    return np.clip(index, 0, n_bins)


def confidence_and_correct(kind: str, labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What is binned: ``(confidence, correct)``.

    Each is ``N`` (binary, multiclass) or ``N x C`` (multilabel, one column per label). Binary ``probs`` are
    the positive-class probabilities.
    """
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels)
    if kind == "multiclass":
        predicted = probs.argmax(axis=1)
        return probs.max(axis=1), (predicted == labels).astype(np.float64)
    return probs, labels.astype(np.float64)


@dataclass
class Reliability:
    """A reliability diagram's data, and the expected calibration error over all its bins.

    Attributes:
        edges: the bin edges (``bin_edges``).
        counts: per bin (``n_bins + 1`` slots), the number of predictions.
        mean_confidence: per bin, their mean confidence (NaN for empty bins).
        frequency: per bin, how often they were correct (NaN for empty bins).
        ece: the expected calibration error over all of them.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    frequency: np.ndarray
    ece: float


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> Reliability:
    """Bin ``confidence_and_correct``'s pairs as torchmetrics does, for a reliability diagram."""
    confidence = np.asarray(confidence, dtype=np.float32)
    index = bin_index(confidence, n_bins)
    counts = np.bincount(index, minlength=n_bins + 1).astype(np.float64)
    conf_sum = np.bincount(index, weights=confidence.astype(np.float64), minlength=n_bins + 1)
    correct_sum = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(counts > 0, conf_sum / counts, np.nan)
        frequency = np.where(counts > 0, correct_sum / counts, np.nan)
    ece = float(np.abs(correct_sum - conf_sum).sum() / max(1.0, counts.sum()))
    return Reliability(bin_edges(n_bins), counts, mean_confidence, frequency, ece)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """Sum over bins of |mean correct - mean confidence| weighted by the bin's share of predictions."""
    return reliability(confidence, correct, n_bins).ece


def brier_per_sample(kind: str, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each sample's Brier score; their mean is the Brier score.

    ``(p - y)^2`` (binary), ``sum_k (p_k - [y = k])^2`` (multiclass, from 0 to 2), the mean over labels of
    ``(p_c - y_c)^2`` (multilabel).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if kind == "multiclass":
        onehot = np.eye(probs.shape[1])[labels]
        return ((probs - onehot) ** 2).sum(axis=1)
    squared = (probs - labels.astype(np.float64)) ** 2
    return squared if kind == "binary" else squared.mean(axis=1)
