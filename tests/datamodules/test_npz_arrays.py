"""Large .npz arrays are unpacked once and memory-mapped; small ones are read; a failed unpack says where."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.datamodules import MedMNIST, npz_arrays
from medtransfer.datamodules.npz_arrays import ArrayCacheError, load_npz

from .conftest import write_medmnist


@pytest.fixture
def archive(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, (7, 5, 5, 3), dtype=np.uint8), "labels": np.arange(7),
              "fortran": np.asfortranarray(rng.normal(size=(4, 3)))}
    np.savez_compressed(path, **arrays)
    return path, arrays


def test_large_arrays_are_memory_mapped_copies_and_unpacked_once(archive, tmp_path, monkeypatch):
    path, expected = archive
    monkeypatch.setattr(npz_arrays, "MAP_ABOVE_BYTES", 200)  # images (203 B) and fortran (224 B), not labels
    monkeypatch.setattr(npz_arrays, "CHUNK_BYTES", 7)  # several chunks per array
    loaded = load_npz(path, tmp_path / "cache")
    assert isinstance(loaded["images"], np.memmap) and isinstance(loaded["fortran"], np.memmap)
    assert not isinstance(loaded["labels"], np.memmap)
    for name, array in expected.items():
        np.testing.assert_array_equal(loaded[name], array)
    files = sorted((tmp_path / "cache").rglob("*"))
    stamps = [f.stat().st_mtime_ns for f in files if f.is_file()]
    load_npz(path, tmp_path / "cache")
    assert sorted((tmp_path / "cache").rglob("*")) == files
    assert [f.stat().st_mtime_ns for f in files if f.is_file()] == stamps  # reused, not rewritten
    assert not [f for f in files if f.name.endswith(".tmp")]


def test_a_replaced_archive_is_unpacked_again(archive, tmp_path, monkeypatch):
    path, _ = archive
    monkeypatch.setattr(npz_arrays, "MAP_ABOVE_BYTES", 200)
    load_npz(path, tmp_path / "cache")
    np.savez_compressed(path, images=np.zeros((9, 5, 5, 3), np.uint8), labels=np.arange(9),
                        fortran=np.zeros((4, 3)))
    assert load_npz(path, tmp_path / "cache")["images"].shape == (9, 5, 5, 3)


def test_a_cache_folder_that_cannot_be_written_is_named(archive, tmp_path, monkeypatch):
    path, _ = archive
    monkeypatch.setattr(npz_arrays, "MAP_ABOVE_BYTES", 200)
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    with pytest.raises(ArrayCacheError, match="MEDTRANSFER_CACHE"):
        load_npz(path, blocked)


def test_medmnist_batches_are_the_same_from_memory_maps(tmp_path, monkeypatch):
    write_medmnist(tmp_path / "medmnist" / "retinamnist.npz", {"train": 12, "val": 4, "test": 4}, colour=True,
                   classes=5)
    options = {"root": str(tmp_path / "medmnist"), "flag": "retinamnist", "augmentation": "none",
               "batch_size": 4, "cache_dir": str(tmp_path / "cache")}
    in_memory = MedMNIST(**options)
    in_memory.setup("fit")
    monkeypatch.setattr(npz_arrays, "MAP_ABOVE_BYTES", 0)
    mapped = MedMNIST(**options)
    mapped.prepare_data()
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.npy")) == sorted(
        f"{split}_{part}.npy" for split in ("train", "val", "test") for part in ("images", "labels"))
    mapped.setup("fit")
    assert isinstance(mapped.sources()["train"].images, np.memmap)
    for a, b in zip(in_memory.train_dataloader(), mapped.train_dataloader(), strict=True):
        assert a["id"] == b["id"]
        np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
        np.testing.assert_array_equal(a["label"].numpy(), b["label"].numpy())
