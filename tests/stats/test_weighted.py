"""Weighted metrics against their references: with all weights 1 they are the metrics a run logs (the
torchmetrics objects of ``lightning_modules.metrics``), and a resample's value is those metrics on the
resampled rows; weighted AUROC equals scikit-learn's with sample weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medtransfer.lightning_modules.metrics import (
    build_calibration_metrics,
    build_metrics,
    build_per_class_auroc,
    calibration_values,
)
from medtransfer.stats.resampling import Resamples, bootstrap_resamples, full_sample
from medtransfer.stats.weighted import TestMetrics, auroc
from medtransfer.task import Task

TASKS = {
    "binary": Task("binary", ("normal", "lesion")),
    "multiclass": Task("multiclass", ("g0", "g1", "g2", "g3", "g4"), ordinal=True, primary_metric="kappa"),
    "multilabel": Task("multilabel", ("a", "b", "c", "d")),
}


def predictions(kind: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    task = TASKS[kind]
    if kind == "binary":
        labels = rng.integers(0, 2, n)
        probs = 1 / (1 + np.exp(-(rng.normal(size=n) + labels)))
    elif kind == "multiclass":
        labels = rng.choice(5, n, p=[0.4, 0.3, 0.2, 0.1, 0.0])  # grade 4 never occurs: AUROC undefined
        logits = rng.normal(size=(n, 5)) + 1.5 * np.eye(5)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    else:
        labels = (rng.random((n, 4)) < [0.5, 0.2, 0.05, 0.3]).astype(np.int64)
        probs = 1 / (1 + np.exp(-(rng.normal(size=(n, 4)) + 2 * labels - 1)))
    probs = np.round(probs.astype(np.float32), 2)  # ties, and confidences on bin edges
    probs[:3] = 0.5  # on the binary threshold
    return task, labels, probs


def logged_metrics(task: Task, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """What a run logs for its test split (``TaskModule._finish_epoch``)."""
    p, y = torch.tensor(probs), torch.tensor(labels)
    metrics, calibration = build_metrics(task), build_calibration_metrics(task)
    metrics.update(p, y)
    calibration.update(p, y)
    values = {name: float(v) for name, v in metrics.compute().items()}
    values.update(calibration_values(task, calibration.compute()))
    per_class = build_per_class_auroc(task)
    if per_class is not None:
        per_class.update(p, y)
        per_class_values = zip(task.class_names, per_class.compute(), strict=True)
        values.update({f"auroc/{c}": float(v) for c, v in per_class_values})
    return values


@pytest.mark.parametrize("kind", TASKS)
def test_full_sample_equals_the_logged_metrics(kind):
    task, labels, probs = predictions(kind, 400)
    metrics = TestMetrics(kind, labels, probs, class_names=list(task.class_names), ordinal=task.ordinal)
    ours = {name: float(v[0]) for name, v in metrics.evaluate(full_sample(len(labels))).items()}
    reference = logged_metrics(task, labels, probs)
    assert set(reference) <= set(ours)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, abs=2e-6), name


@pytest.mark.parametrize("kind", TASKS)
def test_a_resample_equals_the_metrics_of_its_rows(kind):
    task, labels, probs = predictions(kind, 300, seed=1)
    losses = np.random.default_rng(2).random(len(labels))
    metrics = TestMetrics(kind, labels, probs, losses, list(task.class_names), task.ordinal)
    draws = bootstrap_resamples(len(labels), 3, 5)
    values = metrics.evaluate(draws)
    weights = np.concatenate(draws.blocks, axis=1)
    for b in range(3):
        rows = np.repeat(np.arange(len(labels)), weights[:, b])
        reference = logged_metrics(task, labels[rows], probs[rows])
        reference["loss"] = losses[rows].mean()
        for name, value in reference.items():
            if np.isnan(value):
                assert np.isnan(values[name][b]), name
            else:
                assert values[name][b] == pytest.approx(value, abs=2e-6), (name, b)


def test_weighted_auroc_equals_scikit_learn_with_sample_weights():
    rng = np.random.default_rng(4)
    scores = np.round(rng.random(500), 2)
    labels = rng.random(500) < 0.1
    weights = rng.integers(0, 4, (500, 6)).astype(np.uint8)
    blocks = [weights[:, :4].copy(), weights[:, 4:].copy()]
    draws = Resamples(blocks, 500, 500, False, int(weights.sum(0).max()))
    ours = auroc(scores, labels, draws)
    for b in range(6):
        assert ours[b] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights[:, b]), abs=1e-12)


def test_auroc_is_nan_without_positives_or_negatives():
    weights = np.array([[1, 0], [1, 2], [0, 1]], dtype=np.uint8)  # resample 1 has only negatives
    draws = Resamples([weights], 3, 3, False, 3)
    values = auroc(np.array([0.9, 0.1, 0.2]), np.array([True, False, False]), draws)
    assert values[0] == 1.0 and np.isnan(values[1])
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([False, False]), full_sample(2))).all()


def test_unknown_metric_names_are_refused():
    metrics = TestMetrics("binary", np.array([0, 1]), np.array([0.2, 0.7]))
    assert "loss" not in metrics.names()  # no per-sample losses given
    with pytest.raises(KeyError, match="loss"):
        metrics.evaluate(full_sample(2), ["loss"])
