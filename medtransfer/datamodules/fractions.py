"""Label fractions (DESIGN.md): stratified, patient-grouped, seeded and nested subsets of the training split."""

from __future__ import annotations

import math

import numpy as np


def strata_of(labels: np.ndarray) -> np.ndarray:
    """One stratum per sample: the class for single-label data, the label pattern for multilabel data."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    patterns = np.packbits(labels.astype(bool), axis=1)
    _, strata = np.unique(patterns, axis=0, return_inverse=True)
    return strata.reshape(-1)


def group_ranking(groups: np.ndarray, seed: int) -> dict:
    """A seeded random rank for every group; the same seed always ranks the same groups the same way."""
    unique = sorted(set(groups.tolist()), key=str)
    order = np.random.default_rng(seed).permutation(len(unique))
    return {g: int(r) for g, r in zip(unique, order, strict=True)}


def select_fraction(
    labels: np.ndarray,
    fraction: float | int,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of a stratified, grouped subset of ``labels`` holding ``fraction`` of them (or that many samples).

    Groups (patients) are ranked once by ``seed`` and taken in rank order within each stratum until the stratum's
    share is reached, so the subset for a smaller fraction is always contained in the one for a larger fraction
    with the same seed. A group belongs to the stratum of its first sample, so a patient is never split.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise ValueError("cannot take a label fraction of an empty training split")
    fraction = _as_fraction(fraction, n)
    if fraction >= 1.0:
        return np.arange(n)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    strata = strata_of(labels)
    rank = group_ranking(groups, seed)

    first_stratum: dict = {}
    members: dict = {}
    for i, g in enumerate(groups.tolist()):
        first_stratum.setdefault(g, strata[i])
        members.setdefault(g, []).append(i)

    chosen: list[int] = []
    for stratum in np.unique(strata):
        stratum_groups = sorted((g for g, s in first_stratum.items() if s == stratum), key=rank.__getitem__)
        size = sum(len(members[g]) for g in stratum_groups)
        target = max(1, math.ceil(fraction * size - 1e-9))
        taken = 0
        for g in stratum_groups:
            if taken >= target:
                break
            chosen.extend(members[g])
            taken += len(members[g])
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _as_fraction(fraction: float | int, n: int) -> float:
    if isinstance(fraction, bool):
        raise ValueError(f"train_fraction must be a float in (0, 1] or a sample count, got {fraction!r}")
    if isinstance(fraction, int) or (isinstance(fraction, float) and fraction > 1 and fraction.is_integer()):
        count = int(fraction)
        if count < 1 or count > n:
            raise ValueError(f"train_fraction={count} samples, but the training split has {n}")
        return count / n
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1] or a sample count, got {fraction!r}")
    return float(fraction)
