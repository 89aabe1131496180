"""Label fractions: nested, stratified, patient-grouped, deterministic, with the counts asked for."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from medtransfer.datamodules import SyntheticMedical
from medtransfer.datamodules.fractions import select_fraction

RNG = np.random.default_rng(0)
LABELS = RNG.choice(5, size=2000, p=[0.45, 0.2, 0.15, 0.12, 0.08])
PATIENT_LABELS = np.repeat(LABELS[::2], 2)  # both images of a patient share the grade
PATIENTS = np.asarray([f"patient{i // 2}" for i in range(2000)])
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_fractions_are_nested_for_one_seed(seed):
    subsets = [set(select_fraction(PATIENT_LABELS, f, seed, PATIENTS).tolist()) for f in FRACTIONS]
    for smaller, larger in pairwise(subsets):
        assert smaller <= larger
    counts = [set(select_fraction(LABELS, c, seed).tolist()) for c in (10, 50, 200, 1000)]
    for smaller, larger in pairwise(counts):
        assert smaller <= larger


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.5])
def test_fractions_are_stratified(fraction):
    chosen = select_fraction(LABELS, fraction, 3)
    expected = np.bincount(LABELS) * fraction
    assert np.abs(np.bincount(LABELS[chosen], minlength=5) - expected).max() <= 1.0


def test_patients_are_never_split_and_strata_hold():
    chosen = select_fraction(PATIENT_LABELS, 0.1, 0, PATIENTS)
    taken = set(PATIENTS[chosen].tolist())
    left_out = set(PATIENTS[np.setdiff1d(np.arange(2000), chosen)].tolist())
    assert not taken & left_out
    expected = np.bincount(PATIENT_LABELS) * 0.1
    assert np.abs(np.bincount(PATIENT_LABELS[chosen], minlength=5) - expected).max() <= 2.0


def test_counts_are_exact_without_patients_and_close_with_them():
    assert len(select_fraction(LABELS, 100, 0)) == 100
    assert len(select_fraction(LABELS, 100.0, 0)) == 100
    assert len(select_fraction(LABELS, 0.1, 0)) == 200
    assert len(select_fraction(LABELS, 0.0126, 0)) == 25  # rounded, not inflated per class
    assert 200 <= len(select_fraction(PATIENT_LABELS, 0.1, 0, PATIENTS)) <= 201


def test_every_class_is_represented_even_at_tiny_fractions():
    chosen = select_fraction(LABELS, 5, 0)
    assert sorted(set(LABELS[chosen].tolist())) == [0, 1, 2, 3, 4]
    assert len(select_fraction(LABELS, 2, 0)) == 5  # one per class wins over a smaller count


def test_multilabel_small_fractions_are_not_inflated_by_rare_patterns():
    labels = (np.random.default_rng(1).random((3000, 14)) < 0.15).astype(np.float32)  # hundreds of patterns
    chosen = select_fraction(labels, 0.01, 0)
    assert len(chosen) == 30
    assert set(chosen.tolist()) <= set(select_fraction(labels, 0.1, 0).tolist())


def test_deterministic_for_a_seed_and_different_across_seeds():
    first = select_fraction(LABELS, 0.1, 5, PATIENTS)
    assert np.array_equal(first, select_fraction(LABELS, 0.1, 5, PATIENTS))
    assert not np.array_equal(first, select_fraction(LABELS, 0.1, 6, PATIENTS))


def test_whole_split_and_bad_values():
    assert np.array_equal(select_fraction(LABELS, 1.0, 0), np.arange(2000))
    assert np.array_equal(select_fraction(LABELS, 1, 0), np.arange(2000))  # 1 means all, never one sample
    for bad in (0, 0.0, -0.5, 1.5, 2001, True, "half"):
        with pytest.raises(ValueError, match="train_fraction"):
            select_fraction(LABELS, bad, 0)
    with pytest.raises(ValueError, match="empty"):
        select_fraction(np.asarray([]), 0.5, 0)


def test_datamodule_applies_fraction_to_train_only():
    full = SyntheticMedical(num_train=64, num_val=16, num_test=16, native_size=16, image_size=16)
    part = SyntheticMedical(
        num_train=64,
        num_val=16,
        num_test=16,
        native_size=16,
        image_size=16,
        train_fraction=0.25,
        fraction_seed=1,
    )
    full.setup("fit")
    part.setup("fit")
    assert len(part.split_source("train")) == 16
    assert len(part.split_source("val")) == len(full.split_source("val")) == 16
    assert set(part.split_source("train").ids) <= set(full.split_source("train").ids)
