"""DeLong's AUROC variance: a worked example by hand, an independent pairwise implementation of the 1988
formulas, and the (paired, and patient-level) bootstrap variance on large samples."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.stats import delong
from medtransfer.stats.resampling import bootstrap_resamples
from medtransfer.stats.weighted import auroc


def test_worked_example_by_hand():
    # positives 0.9, 0.6, 0.3; negatives 0.7, 0.3, 0.2, 0.1 (one tie, at 0.3)
    # v10 (share of negatives below each positive, ties 1/2): 4/4, 3/4, 2.5/4 -> AUROC = 9.5/12
    # v01 (share of positives above each negative): 1/3, 2.5/3, 3/3, 3/3
    # S10 = var(1, .75, .625) = 0.0364583..., S01 = var(1/3, 5/6, 1, 1) = 0.0995370...
    # var = S10 / 3 + S01 / 4
    scores = np.array([0.9, 0.6, 0.3, 0.7, 0.3, 0.2, 0.1])
    positive = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    parts = delong.components(scores, positive)
    assert parts.auroc[0] == pytest.approx(9.5 / 12)
    s10 = np.var([1, 0.75, 0.625], ddof=1)
    s01 = np.var([1 / 3, 2.5 / 3, 1, 1], ddof=1)
    assert s10 == pytest.approx(7 / 192) and s01 == pytest.approx(43 / 432)
    assert delong.variance(parts.centred[0], positive) == pytest.approx(s10 / 3 + s01 / 4)
    assert delong.variance(parts.centred[0], positive) == pytest.approx(7 / 576 + 43 / 1728)


def pairwise_delong(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) from the kernel psi(x, y) over every (positive, negative) pair."""
    aucs, v10s, v01s = [], [], []
    for row in scores:
        x, y = row[positive], row[~positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.array(v10s)), np.cov(np.array(v01s))
    return np.array(aucs), s10 / positive.sum() + s01 / (~positive).sum()


def correlated_models(n: int, seed: int, shift=(1.0, 1.3)):
    """Two models' scores on the same samples, with correlated errors."""
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    shared = rng.normal(size=n)
    scores = np.stack([s * positive + 0.7 * shared + 0.7 * rng.normal(size=n) for s in shift])
    return np.round(scores, 2), positive


def test_covariance_equals_the_pairwise_formulas():
    scores, positive = correlated_models(300, 0)
    parts = delong.components(scores, positive)
    aucs, cov = pairwise_delong(scores, positive)
    np.testing.assert_allclose(parts.auroc, aucs, atol=1e-12)
    np.testing.assert_allclose(delong.covariance(parts.centred, positive), cov, rtol=1e-10)


def test_variance_agrees_with_the_bootstrap_on_a_large_sample():
    scores, positive = correlated_models(4000, 1)
    parts = delong.components(scores, positive)
    draws = bootstrap_resamples(len(positive), 2000, 5)
    a, b = (auroc(row, positive, draws) for row in scores)
    assert delong.variance(parts.centred[0], positive) == pytest.approx(a.var(ddof=1), rel=0.10)
    difference = parts.centred[0] - parts.centred[1]
    assert delong.variance(difference, positive) == pytest.approx((a - b).var(ddof=1), rel=0.10)


def test_clustered_variance_agrees_with_the_patient_level_bootstrap():
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(1500), rng.integers(1, 7, 1500))  # 1 to 6 images per patient
    sick = rng.random(1500) < 0.3
    positive = sick[patients] & (rng.random(len(patients)) < 0.9)
    scores = 1.2 * positive + rng.normal(size=1500)[patients] + 0.6 * rng.normal(size=len(patients))
    parts = delong.components(scores, positive)
    clustered = delong.variance(parts.centred[0], positive, groups=patients)
    draws = bootstrap_resamples(len(patients), 2000, 6, groups=patients)
    assert clustered == pytest.approx(auroc(scores, positive, draws).var(ddof=1), rel=0.10)
    # images of one patient are not independent: ignoring that underestimates the variance here
    assert delong.variance(parts.centred[0], positive) < 0.8 * clustered
    # one image per patient: the clustered form is DeLong's (up to n / (n - 1) factors)
    singles = np.arange(len(positive))
    assert delong.variance(parts.centred[0], positive, groups=singles) == pytest.approx(
        delong.variance(parts.centred[0], positive), rel=0.01)


def test_interval_and_p_value():
    assert delong.interval(0.9, 0.0025) == pytest.approx((0.9 - 1.959964 * 0.05, 0.9 + 1.959964 * 0.05))
    assert delong.interval(0.99, 0.01) == (pytest.approx(0.99 - 1.959964 * 0.1), 1.0)  # cut at 1
    assert delong.p_value(0.0, 0.0) == 1.0  # a model against itself
    assert delong.p_value(0.1, 0.0025) == pytest.approx(0.0455, abs=1e-4)  # z = 2
