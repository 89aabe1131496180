"""Intervals over seeds and test images, paired comparisons of two methods, and Holm's correction.

The paired comparisons are of two methods on the same test images; Holm's correction is over the comparisons
of one table.

Every run of a table scored on one test set shares the same image resamples (count weights), so for a
resample both methods see the same images: the comparison is paired. Training seeds are resampled too, with
replacement, and a resample's score is the mean over its drawn seeds; two methods run with the same seeds are
drawn seed by seed together (seed ``s`` selects the same label-fraction subset for both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .resampling import DEFAULT_CONFIDENCE, percentile_interval

VERDICTS = ("better", "worse", "no detected difference")


def seed_draws(seeds: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples x seeds`` indices of seeds drawn with replacement (all 0 for a single seed)."""
    if seeds == 1:
        return np.zeros((resamples, 1), dtype=np.int64)
    return rng.integers(0, seeds, (resamples, seeds))


def mean_over_drawn_seeds(replicates: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """For each resample ``b``, the mean over its drawn seeds of ``replicates[seed, b]`` (``seeds x B``)."""
    columns = np.arange(replicates.shape[1])[:, None]
    return replicates[draws, columns].mean(axis=1)


def seeds_and_images_interval(
    replicates: np.ndarray, rng: np.random.Generator, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of the mean score over seeds, resampling seeds and test images.

    Every resampled value is a mean of scores, so the interval stays within the metric's range.

    Args:
        replicates: ``seeds x B`` scores of each run in each image resample.
        rng: draws the seeds.
        confidence: the interval's level.
    """
    draws = seed_draws(replicates.shape[0], replicates.shape[1], rng)
    return percentile_interval(mean_over_drawn_seeds(replicates, draws), confidence)


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided p of "no difference" from a bootstrap distribution of a difference.

    Twice the smaller share of resamples on either side of 0 (ties on both), with the +1 of a Monte Carlo
    p-value, at most 1. A model against itself has every difference 0, hence p = 1.
    """
    values = np.asarray(differences, dtype=np.float64)
    values = values[~np.isnan(values)]
    total = len(values)
    if total == 0:
        return float("nan")
    below = (np.count_nonzero(values <= 0) + 1) / (total + 1)
    above = (np.count_nonzero(values >= 0) + 1) / (total + 1)
    return float(min(1.0, 2 * min(below, above)))


@dataclass
class PairedDifference:
    """``a - b`` of the mean score over seeds, with its bootstrap interval and p-value."""

    difference: float
    low: float
    high: float
    p_value: float


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    a_scores: np.ndarray,
    b_scores: np.ndarray,
    rng: np.random.Generator,
    paired_seeds: bool,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedDifference:
    """Compare method ``a`` with method ``b`` on the same image resamples.

    Args:
        a: ``seeds x B`` scores of each run of method ``a`` in each image resample.
        b: the same for method ``b``, in the same resamples.
        a_scores: each run's score on the whole test set; the difference of the means of ``a_scores`` and
            ``b_scores`` is the estimate.
        b_scores: the same for method ``b``.
        rng: draws the seeds.
        paired_seeds: ``a`` and ``b`` ran with the same seeds, in the same row order: draw them together.
        confidence: the interval's level.

    Raises:
        ValueError: ``a`` and ``b`` do not have the same number of resamples.
    """
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the methods have {a.shape[1]} and {b.shape[1]} resamples: they must share them")
    resamples = a.shape[1]
    draws_a = seed_draws(a.shape[0], resamples, rng)
    if paired_seeds and a.shape[0] == b.shape[0]:
        draws_b = draws_a
    else:
        draws_b = seed_draws(b.shape[0], resamples, rng)
    differences = mean_over_drawn_seeds(a, draws_a) - mean_over_drawn_seeds(b, draws_b)
    low, high = percentile_interval(differences, confidence)
    estimate = float(np.mean(a_scores) - np.mean(b_scores))
    return PairedDifference(estimate, low, high, bootstrap_p_value(differences))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, Scand. J. Statist. 1979).

    The i-th smallest p times the number of hypotheses not yet rejected, made non-decreasing, at most 1. NaN
    stays NaN and is not counted.
    """
    values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(len(values), np.nan)
    known = np.flatnonzero(~np.isnan(values))
    order = known[np.argsort(values[known], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def verdict(difference: float, adjusted_p: float, alpha: float = 0.05, higher_is_better: bool = True) -> str:
    """``better`` / ``worse`` when the (Holm-adjusted) p is below ``alpha``, else ``no detected difference``.

    No detected difference is not evidence that the methods are equal.
    """
    if np.isnan(adjusted_p) or adjusted_p >= alpha or difference == 0:
        return VERDICTS[2]
    return VERDICTS[0] if (difference > 0) == higher_is_better else VERDICTS[1]
