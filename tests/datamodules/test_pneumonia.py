"""Kermany pneumonia chest X-rays, including the Kaggle copy's nesting and macOS debris."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.datamodules import ChestXrayPneumonia
from medtransfer.datamodules.errors import DatasetLayoutError
from medtransfer.datamodules.pneumonia import patient_of


def test_patient_ids_from_file_names():
    assert patient_of("person12_bacteria_47.jpeg") == "person12"
    assert patient_of("person1946_virus_4874.jpeg") == "person1946"
    assert patient_of("IM-0115-0001.jpeg") == "IM-0115"
    assert patient_of("NORMAL2-IM-1427-0001.jpeg") == "NORMAL2-IM-1427"
    assert patient_of("odd.jpeg") == "odd"


def test_kaggle_layout_read_once_with_carved_patient_validation(pneumonia_root, check_batches):
    dm = ChestXrayPneumonia(root=str(pneumonia_root), val_fraction=0.25, image_size=32, batch_size=8)
    sources = dm.sources()
    # train 8 patients x 5 images + val 1 x 5 joined, test 3 x 5; the nested duplicate is not read
    assert len(sources["train"]) + len(sources["val"]) == 45 and len(sources["test"]) == 15
    assert not set(sources["train"].groups) & set(sources["val"].groups)
    assert set(sources["val"].labels.tolist()) == {0, 1}
    assert not any("__MACOSX" in i or ".DS_Store" in i for s in sources.values() for i in s.ids)
    assert sources["test"].ids[0].startswith("test/NORMAL/")
    assert dm.task.kind == "binary" and dm.augmentation == "chest_xray"
    check_batches(dm, 32)


def test_official_validation_and_root_at_any_level(pneumonia_root):
    dm = ChestXrayPneumonia(root=str(pneumonia_root / "chest_xray"), validation="official")
    assert {k: len(v) for k, v in dm.sources().items()} == {"train": 40, "val": 5, "test": 15}
    images = dm.sources()["test"].load_image(0)
    assert images.shape == (36, 44, 3) and (images[..., 0] == images[..., 1]).all()  # grey to 3 channels


def test_chest_transform_keeps_uint8_and_size(pneumonia_root):
    dm = ChestXrayPneumonia(root=str(pneumonia_root), image_size=24)
    dm.setup("fit")
    item = dm.dataset("train", train_transform=True)[(0, 0)]
    assert item["image"].shape == (3, 24, 24) and item["image"].dtype.is_floating_point is False
    assert np.ptp(item["image"].numpy()) > 0


def test_missing_layout_is_explained(tmp_path):
    (tmp_path / "chest_xray" / "train" / "NORMAL").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        ChestXrayPneumonia(root=str(tmp_path)).sources()
    assert "chest_xray/train/PNEUMONIA   <- missing" in str(err.value)
    assert "chest_xray/train/NORMAL\n" in str(err.value) and "found instead: chest_xray/" in str(err.value)
    assert "mendeley" in str(err.value)
