"""Label fractions (docs/architecture.md): stratified, patient-grouped, seeded and nested subsets of the
training split.

Both label fractions and carved splits come from one seeded ordering of the patients
(``stratified_group_keys``): every patient gets a key in [0, 1) by systematic sampling within its stratum, so
any key threshold picks about the same share of every stratum, a smaller threshold picks a subset of a larger
one, and a patient is never split.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigValueError
from .config_values import config_key, is_integer, is_number
from .errors import DatasetTooSmallError


def strata_of(labels: np.ndarray) -> np.ndarray:
    """One stratum per sample: the class for single-label data, the label pattern for multilabel data."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    patterns = np.packbits(labels.astype(bool), axis=1)
    _, strata = np.unique(patterns, axis=0, return_inverse=True)
    return strata.reshape(-1)


def patient_keys(groups) -> np.ndarray:
    """Each sample's patient id as text: the key patients are grouped and compared by (7 and '7' are one)."""
    return np.asarray([str(g) for g in np.asarray(groups).tolist()])


def group_index(groups: np.ndarray | None, n: int) -> np.ndarray:
    """A dense group number per sample (groups numbered in order of first appearance); each sample its own
    group when ``groups`` is None."""
    if groups is None:
        return np.arange(n)
    keys = patient_keys(groups)
    if len(keys) != n:
        raise ValueError(f"{len(keys)} patient ids for {n} samples")
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    appearance = np.argsort(np.argsort(first))
    return appearance[inverse.reshape(-1)]


def stratified_group_keys(
    labels: np.ndarray, groups: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group_of_sample, key_of_group, stratum_of_group)``: systematic random sampling of patients within
    each stratum.

    A patient belongs to the stratum of its first sample. Within a stratum of ``n_s`` samples the patients are
    shuffled by ``seed`` and patient ``g`` gets key ``(samples before g + u_s * size_g) / n_s`` with one
    random offset ``u_s`` per stratum, so the patients with keys below ``t`` hold about ``t * n_s`` samples
    of every stratum, for every ``t``, and even single-patient strata land at a uniformly random place.
    """
    labels = np.asarray(labels)
    n = len(labels)
    group_of = group_index(groups, n)
    num_groups = int(group_of.max()) + 1 if n else 0
    first_sample = np.full(num_groups, n, dtype=np.int64)
    np.minimum.at(first_sample, group_of, np.arange(n))
    sizes = np.bincount(group_of, minlength=num_groups)
    group_stratum = strata_of(labels)[first_sample]

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(num_groups)
    keys = np.empty(num_groups, dtype=np.float64)
    for stratum in np.unique(group_stratum):
        members = shuffled[group_stratum[shuffled] == stratum]
        member_sizes = sizes[members]
        before = np.concatenate([[0], np.cumsum(member_sizes)[:-1]])
        keys[members] = (before + rng.random() * member_sizes) / member_sizes.sum()
    return group_of, keys, group_stratum


def select_fraction(
    labels: np.ndarray,
    fraction: float | int,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted indices of a stratified, patient-grouped subset holding ``fraction`` of ``labels`` (or that many
    samples).

    Patients are taken in the seeded order of ``stratified_group_keys`` until the target count is reached, so
    the subset for a smaller fraction is contained in the one for a larger fraction with the same seed; for
    single-label data the first patient of every class comes first, so every class is represented. The count
    is exact without patients and overshoots by less than one patient's images with them.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        raise DatasetTooSmallError("cannot take a label fraction of an empty training split")
    target = _target_count(fraction, n)
    if target >= n:
        return np.arange(n)
    group_of, keys, group_stratum = stratified_group_keys(labels, groups, seed)
    if labels.ndim == 1:
        keys = _classes_first(keys, group_stratum)
    order = np.argsort(keys, kind="stable")
    taken = np.cumsum(np.bincount(group_of, minlength=len(keys))[order])
    num_chosen = int(np.searchsorted(taken, target)) + 1
    if labels.ndim == 1:
        num_chosen = max(num_chosen, len(np.unique(labels)))
    chosen = np.zeros(len(keys), dtype=bool)
    chosen[order[:num_chosen]] = True
    return np.flatnonzero(chosen[group_of])


def _classes_first(keys: np.ndarray, group_stratum: np.ndarray) -> np.ndarray:
    """Move the lowest-keyed patient of every class to the front (keys below 0), keeping the order
    otherwise."""
    keys = keys.copy()
    for stratum in np.unique(group_stratum):
        members = np.flatnonzero(group_stratum == stratum)
        best = members[np.argmin(keys[members])]
        keys[best] -= 1.0
    return keys


def sample_count(fraction: float | int) -> int | None:
    """The number of samples ``train_fraction`` names when it is a count (an integer, or a whole float above
    1); None when it is a share of the split."""
    if is_integer(fraction) or (float(fraction) > 1 and float(fraction).is_integer()):
        return int(fraction)
    return None


def check_train_fraction(fraction: float | int) -> None:
    """``fraction`` is a share in (0, 1] or a sample count of at least 1, else a ConfigValueError (checked
    when a datamodule is built; a count above the training split's size is only known once it is read)."""
    if is_number(fraction):
        count = sample_count(fraction)
        if (count is None and 0.0 < float(fraction) <= 1.0) or (count is not None and count >= 1):
            return
    raise ConfigValueError(
        f"{config_key('train_fraction')}: {fraction!r} is neither a share of the training split nor a sample "
        "count: expected a number in (0, 1] (0.1 keeps 10% of the training split, 1 keeps all of it) or a "
        "whole number of samples >= 1 (e.g. 100)"
    )


def _target_count(fraction: float | int, n: int) -> int:
    """The number of samples ``train_fraction`` asks for: a count as given, a fraction of ``n`` rounded; ``1``
    (int or float) is the whole split, never a single sample."""
    check_train_fraction(fraction)
    if fraction == 1:
        return n
    count = sample_count(fraction)
    if count is None:
        return max(1, int(round(float(fraction) * n)))
    if count > n:
        raise ConfigValueError(
            f"{config_key('train_fraction')}: {count} samples asked for, but the training split has {n}: "
            f"give at most {n} samples, or a share in (0, 1]"
        )
    return count
