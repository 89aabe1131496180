"""Carved splits: seeded, stratified, patient-grouped, disjoint; and the published split file."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest

from medtransfer.datamodules.sources import ArraySource
from medtransfer.datamodules.splits import carve_assignment, carve_sources, complete_splits, write_split_file

LABELS = np.random.default_rng(0).choice(3, size=1200, p=[0.6, 0.3, 0.1])
PATIENT_LABELS = np.repeat(LABELS[::3], 3)
PATIENTS = np.repeat(np.arange(400), 3)


def test_carved_splits_are_stratified_grouped_and_sized():
    split = carve_assignment(PATIENT_LABELS, PATIENTS, {"val": 0.1, "test": 0.2}, seed=0)
    for name, share in (("val", 0.1), ("test", 0.2), ("train", 0.7)):
        expected = np.bincount(PATIENT_LABELS) * share
        assert np.abs(np.bincount(PATIENT_LABELS[split == name], minlength=3) - expected).max() <= 3
    owners = {}
    for patient, name in zip(PATIENTS.tolist(), split.tolist(), strict=True):
        assert owners.setdefault(patient, name) == name  # one split per patient


def test_carving_is_deterministic_per_seed():
    first = carve_assignment(LABELS, None, {"val": 0.1}, seed=3)
    assert np.array_equal(first, carve_assignment(LABELS, None, {"val": 0.1}, seed=3))
    assert not np.array_equal(first, carve_assignment(LABELS, None, {"val": 0.1}, seed=4))


def test_bad_fractions_and_too_small_pools():
    with pytest.raises(ValueError, match="sum to less than 1"):
        carve_assignment(LABELS, None, {"val": 0.5, "test": 0.5}, seed=0)
    tiny = ArraySource(np.zeros((2, 4, 4), np.uint8), np.asarray([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="too small"):
        carve_sources(tiny, {"val": 0.1, "test": 0.1}, 0, "Tiny")


def test_carving_logs_and_completes_missing_splits(caplog):
    images = np.random.default_rng(0).integers(0, 256, (1200, 4, 4), np.uint8)
    pool = ArraySource(images, PATIENT_LABELS, [str(i) for i in range(1200)], PATIENTS)
    with caplog.at_level(logging.INFO, logger="medtransfer.datamodules.splits"):
        splits = complete_splits({"train": pool}, 0.1, 0.2, seed=0, dataset="Demo")
    assert "Demo: carved val and test from the 1200 train samples (split_seed=0" in caplog.text
    assert sum(len(s) for s in splits.values()) == 1200
    assert not set(splits["train"].ids) & set(splits["test"].ids)
    assert complete_splits(splits, 0.1, 0.2, 0, "Demo") == splits  # nothing left to carve


def test_split_file_lists_every_sample(tmp_path):
    sources = {
        "train": ArraySource(
            np.zeros((2, 4, 4), np.uint8), np.asarray([0, 1]), ["a", "b"], np.asarray(["p1", "p2"])
        ),
        "test": ArraySource(np.zeros((1, 4, 4), np.uint8), np.asarray([[1.0, 0.0]]), ["c"]),
    }
    path = write_split_file(tmp_path / "out" / "splits.csv", sources)
    rows = list(csv.DictReader(path.open()))
    assert rows == [
        {"id": "a", "split": "train", "label": "0", "patient": "p1"},
        {"id": "b", "split": "train", "label": "1", "patient": "p2"},
        {"id": "c", "split": "test", "label": "1|0", "patient": ""},
    ]
