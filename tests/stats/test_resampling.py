"""Bootstrap resamples as count weights: the same draws, statistics and percentile intervals as
``scipy.stats.bootstrap``; patient-level resampling keeps a patient's images together."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medtransfer.stats.resampling import (
    bootstrap_resamples,
    full_sample,
    percentile_interval,
    seed_sequence,
)
from medtransfer.stats.weighted import TestMetrics, auroc


@pytest.fixture
def binary_predictions():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    probs = (1 / (1 + np.exp(-(rng.normal(size=300) + 1.2 * labels)))).astype(np.float32)
    probs[:20] = np.round(probs[:20], 1)  # some ties
    return labels, probs


def test_percentile_interval_of_auroc_equals_scipy_bootstrap(binary_predictions):
    labels, probs = binary_predictions
    batch = 250  # scipy draws batch by batch; the same batch size gives the same draws

    def statistic(y, p):  # scipy resamples (label, probability) pairs of the same rows
        return roc_auc_score(y, p)

    reference = stats.bootstrap((labels, probs), statistic, paired=True, vectorized=False, n_resamples=1000,
                                batch=batch, method="percentile", rng=np.random.default_rng(7))
    draws = bootstrap_resamples(len(labels), 1000, np.random.default_rng(7), batch=batch)
    replicates = auroc(probs, labels == 1, draws)
    np.testing.assert_allclose(replicates, reference.bootstrap_distribution, rtol=0, atol=1e-12)
    low, high = percentile_interval(replicates)
    assert (low, high) == pytest.approx(
        (reference.confidence_interval.low, reference.confidence_interval.high), abs=1e-12)


def test_percentile_interval_of_accuracy_equals_scipy_bootstrap(binary_predictions):
    labels, probs = binary_predictions
    correct = ((probs > 0.5) == labels).astype(np.float64)
    reference = stats.bootstrap((correct,), np.mean, n_resamples=2000, batch=400, method="percentile",
                                confidence_level=0.9, rng=np.random.default_rng(11))
    draws = bootstrap_resamples(len(labels), 2000, np.random.default_rng(11), batch=400)
    accuracy = TestMetrics("binary", labels, probs).evaluate(draws, ["acc"])["acc"]
    low, high = percentile_interval(accuracy, confidence=0.9)
    assert low == pytest.approx(reference.confidence_interval.low, abs=1e-12)
    assert high == pytest.approx(reference.confidence_interval.high, abs=1e-12)


def test_weights_are_draw_counts_and_deterministic():
    draws = bootstrap_resamples(50, 300, seed_sequence(0, "x"))
    weights = np.concatenate(draws.blocks, axis=1)
    assert weights.shape == (50, 300) and draws.resamples == 300 and not draws.grouped
    assert (weights.sum(axis=0) == 50).all()  # each resample draws n samples
    again = np.concatenate(bootstrap_resamples(50, 300, seed_sequence(0, "x")).blocks, axis=1)
    other = np.concatenate(bootstrap_resamples(50, 300, seed_sequence(0, "y")).blocks, axis=1)
    assert (weights == again).all() and not (weights == other).all()
    assert (full_sample(5).blocks[0] == 1).all()


def test_patient_level_resampling_draws_whole_patients():
    groups = np.array(["p1", "p1", "p1", "p2", "p3", "p3", "p4"])
    draws = bootstrap_resamples(len(groups), 500, 0, groups=groups)
    weights = np.concatenate(draws.blocks, axis=1)
    assert draws.grouped and draws.units == 4
    for patient in np.unique(groups):
        rows = weights[groups == patient]
        assert (rows == rows[0]).all()  # a patient's images are drawn together
    per_patient = np.stack([weights[groups == p][0] for p in np.unique(groups)])
    assert (per_patient.sum(axis=0) == 4).all()  # 4 patients drawn per resample


def test_undefined_resamples_are_left_out_of_the_interval():
    values = np.array([0.1, np.nan, 0.2, 0.3, np.nan])
    assert percentile_interval(values, 0.5) == pytest.approx(np.quantile([0.1, 0.2, 0.3], [0.25, 0.75]))
    assert all(np.isnan(percentile_interval(np.full(3, np.nan))))
