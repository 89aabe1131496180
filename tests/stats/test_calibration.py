"""Calibration against its references: torchmetrics' calibration error (same bins, edges included) and
scikit-learn's Brier score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from medtransfer.stats.calibration import (
    N_BINS,
    bin_edges,
    bin_index,
    brier_per_sample,
    confidence_and_correct,
    expected_calibration_error,
    reliability,
)


def test_bins_are_torchmetrics_bins_at_the_edges():
    edges = bin_edges()
    assert len(edges) == N_BINS + 1 and edges.dtype == np.float32
    # every edge belongs to the bin it opens, and a confidence of exactly 1 to a slot of its own
    assert bin_index(edges).tolist() == list(range(N_BINS + 1))
    below = np.nextafter(edges[1:], np.float32(0))
    assert bin_index(below).tolist() == list(range(N_BINS))


@pytest.mark.parametrize("n_bins", [10, 15])
def test_binary_ece_equals_torchmetrics(n_bins):
    rng = np.random.default_rng(0)
    probs = np.concatenate([bin_edges(n_bins), rng.random(500).astype(np.float32)])  # edges included
    labels = (rng.random(len(probs)) < probs).astype(np.int64)
    reference = binary_calibration_error(torch.tensor(probs), torch.tensor(labels), n_bins=n_bins)
    ours = expected_calibration_error(*confidence_and_correct("binary", labels, probs), n_bins=n_bins)
    assert ours == pytest.approx(float(reference), abs=1e-6)


def test_multiclass_ece_equals_torchmetrics():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4) * 0.5, 600).astype(np.float32)
    labels = rng.integers(0, 4, 600)
    reference = multiclass_calibration_error(torch.tensor(probs), torch.tensor(labels), num_classes=4,
                                             n_bins=15)
    ours = expected_calibration_error(*confidence_and_correct("multiclass", labels, probs))
    assert ours == pytest.approx(float(reference), abs=1e-6)


def test_brier_equals_scikit_learn():
    rng = np.random.default_rng(2)
    probs = rng.random(300)
    labels = rng.integers(0, 2, 300)
    assert brier_per_sample("binary", labels, probs).mean() == pytest.approx(brier_score_loss(labels, probs))
    multi = rng.dirichlet(np.ones(3), 300)
    classes = rng.integers(0, 3, 300)
    assert brier_per_sample("multiclass", classes, multi).mean() == pytest.approx(
        brier_score_loss(classes, multi, labels=[0, 1, 2]))
    per_label = rng.random((300, 4))
    targets = rng.integers(0, 2, (300, 4))
    expected = np.mean([brier_score_loss(targets[:, c], per_label[:, c]) for c in range(4)])
    assert brier_per_sample("multilabel", targets, per_label).mean() == pytest.approx(expected)


def test_reliability_bins():
    probs = np.array([0.05, 0.05, 0.95, 0.95, 0.95, 1.0], dtype=np.float32)
    labels = np.array([0, 1, 1, 1, 0, 1])
    bins = reliability(probs, labels, n_bins=10)
    assert bins.counts.tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1]
    assert bins.frequency[0] == 0.5 and bins.frequency[9] == pytest.approx(2 / 3)
    assert np.isnan(bins.mean_confidence[1])
    # |0.5 - 0.05| * 2/6 + |2/3 - 0.95| * 3/6 + |1 - 1| * 1/6
    assert bins.ece == pytest.approx(0.45 * 2 / 6 + (0.95 - 2 / 3) * 3 / 6, abs=1e-6)
