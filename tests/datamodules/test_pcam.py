"""PCam from its published HDF5 files: official splits, lazy per-process reading, layout and label errors."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest

from medtransfer.datamodules import PCam
from medtransfer.datamodules.errors import BadLabelError, DatasetLayoutError
from medtransfer.datamodules.pcam import HDF5Source


def test_official_splits_labels_task_and_slide_groups(pcam_root, check_batches):
    dm = PCam(root=str(pcam_root), image_size=32, batch_size=8)
    sources = dm.sources()
    assert {k: len(v) for k, v in sources.items()} == {"train": 24, "val": 8, "test": 8}
    assert dm.task.kind == "binary" and dm.task.class_names == ("normal", "metastasis")
    assert dm.augmentation == "histology" and PCam(root=str(pcam_root)).image_size == 96
    assert sources["val"].ids[0] == "valid_000000"
    assert np.array_equal(sources["train"].labels, np.tile([0, 1], 12))
    with h5py.File(pcam_root / "camelyonpatch_level_2_split_test_x.h5") as f:
        assert np.array_equal(sources["test"].load_image(3), f["x"][3])
    assert sources["train"].groups[5] == "train_slide_1"
    check_batches(dm, 32)


def test_fraction_keeps_slides_together(pcam_root):
    dm = PCam(root=str(pcam_root), train_fraction=0.5, fraction_seed=2)
    train = dm.split_source("train")
    chosen = set(train.groups.tolist())
    rest = set(dm.sources()["train"].groups.tolist()) - chosen
    assert len(train) == 12 and len(chosen) == 3 and len(rest) == 3
    assert np.bincount(train.labels).tolist() == [6, 6]


def test_images_are_read_lazily_one_handle_per_process(pcam_root):
    source = PCam(root=str(pcam_root)).sources()["train"]
    assert source._file is None  # nothing opened by listing the split
    source.load_image(0)
    assert source._file is not None
    clone = pickle.loads(pickle.dumps(source))  # what a DataLoader worker receives
    assert clone._file is None and np.array_equal(clone.load_image(1), source.load_image(1))


def test_rewriting_the_images_file_changes_every_pixel_stamp(pcam_root):
    x_path = pcam_root / "camelyonpatch_level_2_split_valid_x.h5"
    before = PCam(root=str(pcam_root)).sources()["val"].pixel_stamps()
    later = x_path.stat().st_mtime_ns + 10**9
    os.utime(x_path, ns=(later, later))  # as rewriting it would
    after = PCam(root=str(pcam_root)).sources()["val"].pixel_stamps()
    assert len(before) == len(after) == 8 and len(set(before)) == len(set(after)) == 1
    assert before[0] != after[0] and after[0].endswith(f":{later}")


def test_worker_processes_read_the_hdf5(pcam_root):
    dm = PCam(root=str(pcam_root), image_size=32, batch_size=4, num_workers=2)
    dm.setup("fit")
    assert sum(len(b["id"]) for b in dm.val_dataloader()) == 8


def test_missing_files_are_listed_with_what_was_found(pcam_root, tmp_path):
    (pcam_root / "camelyonpatch_level_2_split_test_y.h5").unlink()
    with pytest.raises(DatasetLayoutError) as err:
        PCam(root=str(pcam_root)).sources()
    text = str(err.value)
    assert "camelyonpatch_level_2_split_test_y.h5   <- missing" in text
    assert "found instead:" in text and "camelyonpatch_level_2_split_train_x.h5" in text
    assert "zenodo.org/records/2546921" in text
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        PCam(root=str(tmp_path / "nowhere")).sources()


def test_gzipped_files_are_named(pcam_root):
    path = pcam_root / "camelyonpatch_level_2_split_valid_y.h5"
    with path.open("rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    with pytest.raises(DatasetLayoutError, match=r"still gzipped.*gunzip.*download: true"):
        PCam(root=str(pcam_root)).sources()


def _rewrite(path, key, data):
    path.unlink()
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)


def test_wrong_keys_shapes_and_labels(pcam_root):
    x = pcam_root / "camelyonpatch_level_2_split_valid_x.h5"
    y = pcam_root / "camelyonpatch_level_2_split_valid_y.h5"
    _rewrite(x, "images", np.zeros((8, 96, 96, 3), np.uint8))
    with pytest.raises(
        DatasetLayoutError, match=r"valid_x.h5: no HDF5 dataset 'x' \(found keys \['images'\]\)"
    ):
        HDF5Source(x, y, "valid")
    _rewrite(x, "x", np.zeros((8, 64, 64, 3), np.uint8))
    with pytest.raises(
        DatasetLayoutError, match=r"'x' is uint8 \(8, 64, 64, 3\), expected uint8 N x 96 x 96 x 3"
    ):
        HDF5Source(x, y, "valid")
    _rewrite(x, "x", np.zeros((7, 96, 96, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="holds 7 images but .* holds 8 labels"):
        HDF5Source(x, y, "valid")
    _rewrite(y, "y", np.full((8, 2), 1, np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"'y' has shape \(8, 2\)"):
        HDF5Source(x, y, "valid")
    _rewrite(y, "y", np.asarray([0, 1, 2, 0, 1, 0, 1, 0], np.uint8).reshape(8, 1, 1, 1))
    with pytest.raises(BadLabelError, match="label 2 at index 2"):
        HDF5Source(x, y, "valid")
    y.write_bytes(b"not hdf5")
    with pytest.raises(DatasetLayoutError, match="not a readable HDF5 file"):
        HDF5Source(x, y, "valid")
