"""The store format: round trip, verification, atomic writes, alignment checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtransfer.features import store as store_module
from medtransfer.features.store import (
    FeatureStore,
    FingerprintMismatchError,
    IncompleteStoreError,
    StoreMismatchError,
    check_aligned,
)

FINGERPRINT = {"backbone": {"name": "b", "weights": "abc"}, "data": {"dataset": "D"}, "split": "val",
               "transform": {"t": (1, 2)}, "image_size": 32}


def write_example(path, n=5, dim=3, fingerprint=FINGERPRINT, ids=None):
    features = np.arange(n * dim, dtype=np.float16).reshape(n, dim) / 7
    ids = ids or [f"s{i}" for i in range(n)]
    return FeatureStore.write(path, features, ids, np.arange(n) % 2, fingerprint), features


def test_round_trip_keeps_ids_labels_dtype_and_fingerprint(tmp_path):
    written, features = write_example(tmp_path / "store")
    store = FeatureStore.open(tmp_path / "store", expected_fingerprint=FINGERPRINT)
    assert store.features.dtype == np.float16 and store.features.shape == (5, 3)
    np.testing.assert_array_equal(store.features, features)
    assert store.ids.tolist() == ["s0", "s1", "s2", "s3", "s4"]
    np.testing.assert_array_equal(store.labels, [0, 1, 0, 1, 0])
    assert store.fingerprint["transform"] == {"t": [1, 2]} and store.fingerprint["split"] == "val"
    assert store.key == written.key and len(store.key) == 16
    np.testing.assert_array_equal(store.rows_of(["s3", "s0"]), [3, 0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_unknown_ids_are_a_clear_error(tmp_path):
    store, _ = write_example(tmp_path / "store")
    with pytest.raises(StoreMismatchError, match="has no sample"):
        store.rows_of(["s1", "other"])


def test_fingerprint_mismatch_is_refused(tmp_path):
    write_example(tmp_path / "store")
    other = FINGERPRINT | {"image_size": 64}
    with pytest.raises(FingerprintMismatchError, match="image_size: store has 32, expected 64"):
        FeatureStore.open(tmp_path / "store", expected_fingerprint=other)


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove", "manifest"])
def test_damaged_store_is_refused(tmp_path, damage):
    write_example(tmp_path / "store")
    features = tmp_path / "store" / "features.npy"
    if damage == "truncate":
        features.write_bytes(features.read_bytes()[:-4])
    elif damage == "flip":
        raw = bytearray(features.read_bytes())
        raw[-1] ^= 0xFF
        features.write_bytes(bytes(raw))
    elif damage == "remove":
        (tmp_path / "store" / "store.json").unlink()
    else:
        manifest = json.loads((tmp_path / "store" / "store.json").read_text())
        manifest["fingerprint"]["split"] = "test"
        (tmp_path / "store" / "store.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompleteStoreError, match="delete"):
        FeatureStore.open(tmp_path / "store")


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real_save = store_module._save_array
    calls = []

    def disk_full_on_second_file(file, array):
        calls.append(file.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(file, array)

    monkeypatch.setattr(store_module, "_save_array", disk_full_on_second_file)
    with pytest.raises(OSError, match="No space"):
        write_example(tmp_path / "store")
    assert list(tmp_path.iterdir()) == []  # no store, no temporary directory
    with pytest.raises(IncompleteStoreError, match="no feature store"):
        FeatureStore.open(tmp_path / "store")


def test_non_finite_features_are_not_written(tmp_path):
    features = np.array([[1.0, np.inf]], dtype=np.float16)
    with pytest.raises(store_module.StoreError, match="NaN or inf"):
        FeatureStore.write(tmp_path / "store", features, ["a"], np.array([0]), FINGERPRINT)
    assert not (tmp_path / "store").exists()


def test_stores_of_different_datasets_or_ids_are_not_combined(tmp_path):
    a, _ = write_example(tmp_path / "a")
    b, _ = write_example(tmp_path / "b", fingerprint=FINGERPRINT | {"backbone": {"name": "other"}})
    check_aligned([a, b])  # two backbones over the same samples
    c, _ = write_example(tmp_path / "c", fingerprint=FINGERPRINT | {"data": {"dataset": "E"}})
    with pytest.raises(StoreMismatchError, match="differ in data"):
        check_aligned([a, c])
    d, _ = write_example(tmp_path / "d", ids=[f"x{i}" for i in range(5)])
    with pytest.raises(StoreMismatchError, match="different sample ids"):
        check_aligned([a, d])
