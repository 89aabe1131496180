"""No patient in two splits (``datamodules.patient_splits``): splits the user made are refused, naming the
patients and their images per split; a published dataset's official splits are kept with a warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from medtransfer.datamodules import ImageFolder
from medtransfer.datamodules.errors import PatientLeakError
from medtransfer.datamodules.patient_splits import check_patients_in_one_split


class Grouped:
    """A source as the check reads it: one patient id per image, or None where patients are unknown."""

    def __init__(self, *patients: str | None) -> None:
        self.groups = None if patients == (None,) else np.asarray(patients)


def test_patients_in_two_user_made_splits_are_named_with_their_images_per_split():
    sources = {"train": Grouped("a", "a", "b", "c", "d", "e"), "val": Grouped("b", "f"),
               "test": Grouped("a", "c", "d", "e", "g")}
    with pytest.raises(PatientLeakError) as refused:
        check_patients_in_one_split("Mine", sources, None, "FIX")
    assert str(refused.value) == (
        "Mine: 5 patient(s) have images in more than one split: 'a' (train 2, test 1); 'b' (train 1, val 1); "
        "'c' (train 1, test 1) and 2 more; a model tested on a patient it was trained on scores higher than "
        "on a new one (leakage); FIX")


def test_official_splits_are_kept_with_a_warning_and_unknown_patients_are_no_leak(caplog):
    sources = {"train": Grouped("a", "b"), "val": Grouped(None), "test": Grouped("b")}
    with caplog.at_level(logging.WARNING):
        check_patients_in_one_split("Published", sources, "the dataset's official splits", "FIX")
    (record,) = caplog.records
    assert record.getMessage().endswith("(leakage) (kept: the dataset's official splits)")
    check_patients_in_one_split("Mine", {s: Grouped(None) for s in ("train", "val", "test")}, None, "FIX")


def test_an_image_folder_whose_split_folders_share_a_patient_is_refused(tmp_path):
    layout = {"train/normal": ["P1_a", "P2_a"], "train/sick": ["P3_a", "P4_a"],
              "test/normal": ["P5_a"], "test/sick": ["P1_b"]}
    rng = np.random.default_rng(0)
    for folder, names in layout.items():
        (tmp_path / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(tmp_path / folder / f"{name}.png")
    data = ImageFolder(root=str(tmp_path), patient_pattern=r"^(P\d+)_", image_size=8, val_fraction=0.25)
    with pytest.raises(PatientLeakError, match=r"'P1' \((train|val) 1, test 1\).*move each patient's images"):
        data.setup("fit")
