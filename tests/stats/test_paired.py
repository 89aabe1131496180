"""Paired comparisons: a model against itself, coverage of a known AUROC difference, seeds resampled too,
Holm's correction and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medtransfer.stats import delong
from medtransfer.stats.paired import (
    bootstrap_p_value,
    holm,
    mean_over_drawn_seeds,
    paired_difference,
    seed_draws,
    seeds_and_images_interval,
    verdict,
)
from medtransfer.stats.resampling import bootstrap_resamples, full_sample
from medtransfer.stats.weighted import auroc


def two_models(n: int, rng: np.random.Generator, means=(1.2, 0.8), rho: float = 0.5):
    """Binormal scores of two models with correlated noise: population AUROC = Phi(mean / sqrt(2))."""
    positive = rng.random(n) < 0.4
    noise = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n).T
    return np.stack([m * positive + e for m, e in zip(means, noise, strict=True)]), positive


def test_a_model_against_itself_gives_p_1_and_an_interval_around_0():
    rng = np.random.default_rng(0)
    scores, positive = two_models(300, rng)
    draws = bootstrap_resamples(300, 500, 1)
    reps = np.stack([auroc(scores[0], positive, draws)] * 3)  # three seeds of one model
    full = np.full(3, auroc(scores[0], positive, full_sample(300))[0])
    result = paired_difference(reps, reps, full, full, rng, paired_seeds=True)
    assert result.p_value == 1.0 and result.difference == 0.0
    assert result.low <= 0 <= result.high
    parts = delong.components(scores[0], positive)
    same = parts.centred[0] - parts.centred[0]
    assert delong.p_value(0.0, delong.variance(same, positive)) == 1.0


def test_paired_interval_covers_a_known_auroc_difference_in_95_percent_of_repetitions():
    means = (1.2, 0.8)
    truth = stats.norm.cdf(means[0] / np.sqrt(2)) - stats.norm.cdf(means[1] / np.sqrt(2))
    rng = np.random.default_rng(12)
    covered, delong_covered = 0, 0
    repetitions = 200
    for _ in range(repetitions):
        scores, positive = two_models(400, rng, means)
        draws = bootstrap_resamples(400, 400, rng)
        a, b = (auroc(row, positive, draws)[None, :] for row in scores)
        full = [auroc(row, positive, full_sample(400)) for row in scores]
        result = paired_difference(a, b, full[0], full[1], rng, paired_seeds=True)
        covered += result.low <= truth <= result.high
        parts = delong.components(scores, positive)
        spread = 1.959964 * np.sqrt(delong.variance(parts.centred[0] - parts.centred[1], positive))
        difference = parts.auroc[0] - parts.auroc[1]
        delong_covered += difference - spread <= truth <= difference + spread
    # 95% of 200: a binomial standard deviation is 1.5 points
    assert 0.90 <= covered / repetitions <= 0.99
    assert 0.90 <= delong_covered / repetitions <= 0.99


def test_seeds_are_resampled_with_the_images():
    replicates = np.array([[0.80, 0.81, 0.82], [0.90, 0.91, 0.92]])  # 2 seeds x 3 image resamples
    draws = np.array([[0, 0], [1, 1], [0, 1]])
    np.testing.assert_allclose(mean_over_drawn_seeds(replicates, draws), [0.80, 0.91, 0.87])
    assert (seed_draws(1, 4, np.random.default_rng(0)) == 0).all()
    # the interval reflects the seeds' spread, and never leaves the range of the scores
    low, high = seeds_and_images_interval(replicates, np.random.default_rng(1))
    assert 0.80 <= low < 0.83 and 0.89 < high <= 0.92


def test_seed_variation_widens_the_interval_of_a_difference():
    rng = np.random.default_rng(3)
    base = rng.normal(0.8, 0.01, 1000)
    a = np.stack([base + 0.02 + shift for shift in (-0.03, 0.0, 0.03)])  # seeds spread widely
    b = np.stack([base] * 3)
    narrow = paired_difference(a[1:2], b[1:2], a[1:2, :1].ravel(), b[1:2, :1].ravel(), rng, True)
    wide = paired_difference(a, b, a[:, 0], b[:, 0], rng, True)
    assert narrow.high - narrow.low < 1e-9  # one seed, identical image noise: the difference is exact
    assert wide.high - wide.low > 0.03


def test_bootstrap_p_value():
    assert bootstrap_p_value(np.zeros(99)) == 1.0
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(2 / 100)  # never below 2 / (B + 1)
    assert bootstrap_p_value(np.r_[-np.ones(10), np.ones(89)]) == pytest.approx(2 * 11 / 100)
    assert bootstrap_p_value(np.r_[np.nan, -np.ones(3)]) == pytest.approx(2 * 1 / 4)


def test_holm_adjusted_p_values_by_hand():
    # sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1 = 0.5)
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    # step-down: a later product smaller than an earlier one is raised to it; capped at 1
    assert holm([0.04, 0.001, 0.9]) == pytest.approx([0.08, 0.003, 0.9])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_verdicts():
    assert verdict(0.02, 0.01) == "better" and verdict(-0.02, 0.01) == "worse"
    assert verdict(0.02, 0.2) == "no detected difference"
    assert verdict(-0.1, 0.001, higher_is_better=False) == "better"  # a lower loss
    assert verdict(0.02, float("nan")) == "no detected difference"
