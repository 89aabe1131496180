"""Bootstrap resamples as count weights.

``weights[i, b]`` is how often test sample ``i`` is drawn in resample ``b``. Drawing whole patients
(``groups``) keeps several images of one patient together, since they are not independent observations.

Draws follow ``scipy.stats.bootstrap`` exactly (``rng.integers(0, n, (batch, n))`` per batch), so with the
same generator and batch size both see the same resamples; intervals are its percentile intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
BLOCK_ELEMENTS = 1 << 20  # samples x resamples per block of weights: 2 MB, read from the cache by every class


def seed_sequence(seed: int, *keys: object) -> np.random.SeedSequence:
    """A generator seed from a user seed and labels (a dataset, a comparison).

    It is stable across processes and Python versions (never from the clock, never from ``hash()``).
    """
    words = [int(seed)]
    for key in keys:
        digest = hashlib.sha256(str(key).encode()).digest()
        words.append(int.from_bytes(digest[:8], "little"))
    return np.random.SeedSequence(words)


@dataclass
class Resamples:
    """Count weights of ``resamples`` bootstrap draws over ``n`` samples.

    They are stored as blocks of columns (``n x block`` each, C-contiguous) so products over samples read
    memory in order.

    ``units`` is what was drawn: ``n`` samples, or the number of groups (patients) when resampling is
    grouped.
    """

    blocks: list[np.ndarray]
    n: int
    units: int
    grouped: bool
    max_total: int  # the largest total weight of one resample: bounds every sum over samples

    @property
    def resamples(self) -> int:
        return sum(block.shape[1] for block in self.blocks)


def block_size(n: int, resamples: int) -> int:
    """Resamples per block of weights: as many as ``BLOCK_ELEMENTS`` weights hold, from 1 to ``resamples``."""
    return int(max(1, min(resamples, BLOCK_ELEMENTS // max(1, n))))


def draw_counts(units: int, resamples: int, rng: np.random.Generator, batch: int) -> Iterator[np.ndarray]:
    """``batch x units`` draw counts per batch, as ``scipy.stats.bootstrap(..., batch=batch)`` draws."""
    for start in range(0, resamples, batch):
        rows = min(batch, resamples - start)
        drawn = rng.integers(0, units, (rows, units))
        counts = np.empty((rows, units), dtype=np.int64)
        for row in range(rows):
            counts[row] = np.bincount(drawn[row], minlength=units)
        yield counts


def bootstrap_resamples(
    n: int,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator | int | np.random.SeedSequence = 0,
    groups: np.ndarray | None = None,
    batch: int | None = None,
) -> Resamples:
    """Resample ``n`` test samples ``resamples`` times with replacement.

    Args:
        n: the number of test samples.
        resamples: the number of resamples.
        rng: a generator, or a seed of one.
        groups: one label per sample (e.g. a patient id): draw whole groups instead of samples.
        batch: resamples drawn per generator call (as ``scipy.stats.bootstrap``'s ``batch``); default: the
            block size.
    """
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one sample and one resample, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(rng)
    codes = None
    units = n
    if groups is not None:
        _, codes = np.unique(np.asarray(groups), return_inverse=True)
        units = int(codes.max()) + 1
    batch = batch or block_size(n, resamples)
    blocks = []
    for counts in draw_counts(units, resamples, rng, batch):
        weights = counts if codes is None else counts[:, codes]
        blocks.append(weights.T)
    largest = max(int(block.sum(axis=0).max()) for block in blocks)
    # the integer type that holds any sum of weights over samples, so sums need no wider copy of the weights
    dtype = np.uint16 if largest < 1 << 16 else np.uint32
    blocks = [np.ascontiguousarray(block, dtype=dtype) for block in blocks]
    return Resamples(blocks, n, units, codes is not None, largest)


def full_sample(n: int) -> Resamples:
    """The original sample as one "resample" of weight 1 each.

    Metrics evaluated on it are the point estimates.
    """
    return Resamples([np.ones((n, 1), dtype=np.uint16 if n < 1 << 16 else np.uint32)], n, n, False, n)


def percentile_interval(
    replicates: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """The percentile bootstrap interval, as ``scipy.stats.bootstrap(method="percentile")``.

    Linear interpolation between order statistics. Replicates where the statistic is undefined (NaN, e.g. a
    resample without positives for AUROC) are left out; none defined gives NaN.
    """
    values = np.asarray(replicates, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)
