"""EyePACS and APTOS 2019 from their Kaggle CSVs and image folders."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from medtransfer.datamodules import APTOS2019, EyePACS
from medtransfer.datamodules.errors import BadLabelError, DatasetLayoutError
from medtransfer.datamodules.transforms import build_transform


def test_eyepacs_official_test_and_patient_grouped_validation(eyepacs_root, check_batches, caplog):
    with caplog.at_level(logging.INFO):
        dm = EyePACS(root=str(eyepacs_root), val_fraction=0.2, image_size=32, batch_size=8)
        sources = dm.sources()
    assert "EyePACS: carved val from the 60 train samples" in caplog.text
    assert len(sources["test"]) == 10 and sources["test"].ids[0] == "100_left"
    assert len(sources["train"]) + len(sources["val"]) == 60
    assert not set(sources["train"].groups) & set(sources["val"].groups)  # both eyes stay together
    assert sorted(set(sources["val"].labels.tolist())) == [0, 1, 2, 3, 4]  # stratified by grade
    assert dm.task.primary_metric == "kappa" and dm.task.ordinal and dm.task.num_classes == 5
    assert dm.augmentation == "fundus"
    check_batches(dm, 32)


def test_eyepacs_without_solution_carves_test_too(eyepacs_root, caplog):
    (eyepacs_root / "retinopathy_solution.csv").unlink()
    with caplog.at_level(logging.INFO):
        sources = EyePACS(root=str(eyepacs_root), val_fraction=0.2, test_fraction=0.2).sources()
    assert "no retinopathy_solution.csv" in caplog.text
    groups = [set(s.groups.tolist()) for s in sources.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(s) for s in sources.values()) == 60
    again = EyePACS(root=str(eyepacs_root), val_fraction=0.2, test_fraction=0.2).sources()
    assert again["test"].ids == sources["test"].ids  # seeded


def test_eyepacs_fraction_is_patient_grouped(eyepacs_root):
    dm = EyePACS(root=str(eyepacs_root), train_fraction=0.3, fraction_seed=4)
    chosen = dm.split_source("train")
    assert len(chosen) % 2 == 0
    assert all(chosen.groups.tolist().count(g) == 2 for g in chosen.groups)


def test_eyepacs_bad_inputs_name_file_and_row(eyepacs_root, tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"trainLabels.csv   <- missing(.|\n)*kaggle.com"):
        EyePACS(root=str(tmp_path)).sources()
    labels = eyepacs_root / "trainLabels.csv"
    text = labels.read_text()
    labels.write_text(text.replace("3_left,3", "3_left,7"))
    with pytest.raises(BadLabelError, match=r"trainLabels.csv row 6: level='7' is outside the 5 classes"):
        EyePACS(root=str(eyepacs_root)).sources()
    labels.write_text(text.replace("image,level", "name,level"))
    with pytest.raises(DatasetLayoutError, match=r"no column\(s\) \['image'\]"):
        EyePACS(root=str(eyepacs_root)).sources()
    labels.write_text(text)
    (eyepacs_root / "train" / "4_right.jpeg").unlink()
    with pytest.raises(
        DatasetLayoutError,
        match=r"1 of 60 listed images are missing(.|\n)*4_right.jpeg "
        r"\(trainLabels.csv row 9\)",
    ):
        EyePACS(root=str(eyepacs_root)).sources()
    assert len(EyePACS(root=str(eyepacs_root), skip_corrupt=True, val_fraction=0.2).sources()["train"]) < 59


def test_aptos_carves_stratified_val_and_test(aptos_root, check_batches):
    dm = APTOS2019(root=str(aptos_root), val_fraction=0.25, test_fraction=0.25, image_size=32, batch_size=4)
    sources = dm.sources()
    assert {k: len(v) for k, v in sources.items()} == {"train": 20, "val": 10, "test": 10}
    for split in ("val", "test"):
        assert np.bincount(sources[split].labels).tolist() == [2, 2, 2, 2, 2]
    assert sources["train"].groups is None
    assert (
        APTOS2019(root=str(aptos_root), split_seed=1).sources()["val"].ids
        != APTOS2019(root=str(aptos_root), split_seed=2).sources()["val"].ids
    )
    check_batches(dm, 32)


def test_fundus_transform_crops_the_black_border():
    image = np.zeros((60, 100, 3), np.uint8)
    image[10:50, 30:70] = 200
    out = build_transform("fundus", 16, train=False)(image=image)["image"]
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and out.min() == 200
    augmented = build_transform("fundus", 16, train=True)(image=image)["image"]
    assert augmented.shape == (16, 16, 3) and augmented.dtype == np.uint8
