"""DeLong's variance of AUROC, and the covariance of the AUROCs of several models on the same test samples.

After DeLong, DeLong & Clarke-Pearson (Biometrics 1988), computed from midranks (Sun & Xu, IEEE SPL 2014).

Each positive's placement ``v10`` is the share of negatives it outscores (ties one half), each negative's
``v01`` the share of positives that outscore it; AUROC is the mean of either, and its variance is
``var(v10) / m + var(v01) / n``. With patient groups the images of one patient are not independent: the
clustered form (Obuchowski, Biometrics 1997) sums each patient's centred placements, scaled as in the
AUROC's linear expansion, and takes the variance over patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Components:
    """The AUROCs of ``k`` models and each sample's centred placement.

    Attributes:
        auroc: the ``k`` AUROCs.
        centred: ``k x N`` in sample order: ``v10 - auroc`` for positives, ``v01 - auroc`` for negatives.
        positive: ``N`` booleans: which samples are positive.
    """

    auroc: np.ndarray
    centred: np.ndarray
    positive: np.ndarray


def components(scores: np.ndarray, positive: np.ndarray) -> Components:
    """Placements of ``scores`` (``N``, or ``k x N`` for k models on the same samples)."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = np.asarray(positive, dtype=bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("AUROC needs at least one positive and one negative sample")
    overall = stats.rankdata(scores, axis=1)
    v10 = (overall[:, positive] - stats.rankdata(scores[:, positive], axis=1)) / n
    v01 = 1 - (overall[:, ~positive] - stats.rankdata(scores[:, ~positive], axis=1)) / m
    auroc = v10.mean(axis=1)
    centred = np.empty_like(scores)
    centred[:, positive] = v10 - auroc[:, None]
    centred[:, ~positive] = v01 - auroc[:, None]
    return Components(auroc, centred, positive)


def variance(centred: np.ndarray, positive: np.ndarray, groups: np.ndarray | None = None) -> float:
    """DeLong's variance of the AUROC, clustered by ``groups`` when given.

    Also of a difference or mean of AUROCs: pass the same combination of their centred placements.
    """
    return float(covariance(np.asarray(centred)[None, :], positive, groups)[0, 0])


def covariance(centred: np.ndarray, positive: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``k x k`` covariance of ``k`` AUROCs from their centred placements (``k x N``)."""
    centred = np.atleast_2d(centred)
    positive = np.asarray(positive, dtype=bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if groups is None:
        v10, v01 = centred[:, positive], centred[:, ~positive]
        return v10 @ v10.T / (m * max(1, m - 1)) + v01 @ v01.T / (n * max(1, n - 1))
    # linear expansion: auroc_hat - auroc = sum_i v10_i / m + sum_j v01_j / n (centred); sum it per patient
    influence = np.where(positive, centred / m, centred / n)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    count = int(codes.max()) + 1
    per_group = np.zeros((centred.shape[0], count))
    for row in range(centred.shape[0]):
        per_group[row] = np.bincount(codes, weights=influence[row], minlength=count)
    return per_group @ per_group.T * count / max(1, count - 1)


def interval(auroc: float, var: float, confidence: float = 0.95) -> tuple[float, float]:
    """The normal (Wald) interval ``auroc +- z * sqrt(var)``, cut to [0, 1]."""
    half = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(max(0.0, var))
    return float(max(0.0, auroc - half)), float(min(1.0, auroc + half))


def p_value(difference: float, var: float) -> float:
    """Two-sided p of a difference of AUROCs (DeLong's z test).

    1 when there is no difference and no variance (a model against itself).
    """
    if var <= 0:
        return 1.0 if difference == 0 else 0.0
    return float(2 * stats.norm.sf(abs(difference) / np.sqrt(var)))
