"""Feature stores: the embeddings of one (backbone weights, dataset, split, eval transform).

See docs/architecture.md, "Feature stores". A store is computed once and reused by every frozen-backbone head
(linear probe, LR sweep, kNN, frozen DVME).

On disk a store is a directory ``<root>/<dataset>/<backbone>/<split>-<key>/`` holding

- ``features.npy``: ``N x D`` float16, one contiguous array; row ``i`` is sample ``i`` of the WHOLE split, in
  the order of the datamodule's source (label fractions select rows later, so one extraction serves every
  fraction);
- ``ids.npy``: the ``N`` sample ids (fixed-width unicode, no pickle);
- ``labels.npy``: ``N`` int64 (binary, multiclass) or ``N x C`` float32 (multilabel);
- ``store.json``: the ``fingerprint`` (everything the features depend on), its ``key``, the shapes, the size
  and SHA-256 of every file, and the ids of unreadable samples the datamodule skipped (``skip_corrupt``).

``key`` hashes the fingerprint, so a change of backbone weights, embedding recipe, dataset (its samples and
labels), split, eval transform, image size or package version gives a new directory; a store is never modified
in place. A store is written into a hidden temporary directory next to its final place, verified, and renamed
last: an interrupted extraction (crash, disk full) leaves at most a ``.tmp-*`` directory, never a store that
looks complete.

Public API (stable; heads such as frozen DVME build on it):

- ``FeatureStore``: ``features``, ``ids``, ``labels``, ``fingerprint``, ``key``, ``path``;
  ``FeatureStore.open`` (verifies completeness, checksums and, when given, the expected fingerprint),
  ``FeatureStore.write`` (atomic), ``rows_of(ids)``.
- ``check_aligned(stores)``: stores of several backbones over the same dataset split, with the same ids in the
  same order (raises ``StoreMismatchError`` naming what differs).
- ``store_for(backbone, datamodule, split, root)`` in ``medtransfer.features.extract``: the store of that
  (backbone, datamodule, split), extracted first when absent (each DDP rank extracts its shard).
- Errors: ``StoreError`` and its subclasses ``IncompleteStoreError``, ``FingerprintMismatchError``,
  ``StoreMismatchError``, ``StoreWriteError``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedTransferError
from ..utils.atomic import flush_to_disk, fsync_path, write_failure
from ..utils.hashing import file_digest
from .fingerprint import as_json, fingerprint_key

FORMAT = "medtransfer.features/1"
STORE_FILE = "store.json"
ARRAY_FILES = ("features.npy", "ids.npy", "labels.npy")
TMP_PREFIX = ".tmp-"


class StoreError(MedTransferError, RuntimeError):
    """A feature store cannot be used as asked."""


class IncompleteStoreError(StoreError):
    """A store directory is missing files, or its files are truncated or altered."""


class StoreWriteError(StoreError, OSError):
    """A store could not be written (disk full, read-only folder); nothing of it was left behind."""


class FingerprintMismatchError(StoreError):
    """A store was computed from other inputs than the ones asked for."""


class StoreMismatchError(StoreError):
    """Stores (or a store and a dataset) that should describe the same samples do not."""


@dataclass(frozen=True)
class FeatureStore:
    """The embeddings of one split, with their ids, labels and the fingerprint they were computed from.

    Attributes:
        path: the store's directory.
        features: ``N x D`` float16, memory-mapped read-only.
        ids: the ``N`` sample ids.
        labels: ``N`` int64 (binary, multiclass) or ``N x C`` float32 (multilabel).
        fingerprint: everything the features depend on.
        key: the hash of ``fingerprint`` that names the directory.
        skipped: the ids of unreadable samples the datamodule skipped (``skip_corrupt``).
    """

    path: Path
    features: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    fingerprint: dict
    key: str
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row index of each of ``ids`` (ids skipped as unreadable at extraction are left out).

        Raises:
            StoreMismatchError: names ids the store does not hold.
        """
        position = {sample_id: row for row, sample_id in enumerate(self.ids.tolist())}
        skipped = set(self.skipped)
        ids = [i for i in ids if i not in skipped]
        missing = [i for i in ids if i not in position]
        if missing:
            raise StoreMismatchError(
                f"feature store {self.path} has no sample(s) {missing[:5]} ({len(missing)} missing): it was "
                "extracted from another dataset or split; delete it or point features_dir elsewhere"
            )
        return np.asarray([position[i] for i in ids], dtype=np.int64)

    @classmethod
    def open(
        cls, path: str | Path, expected_fingerprint: dict | None = None, verify: bool = True
    ) -> FeatureStore:
        """Open a complete store.

        Args:
            path: the store's directory.
            expected_fingerprint: must equal the stored one, when given.
            verify: also check every file's SHA-256 (sizes and shapes are always checked).
        """
        path = Path(path)
        manifest = _read_manifest(path)
        for name in ARRAY_FILES:
            _check_file(path, name, manifest["files"].get(name), verify)
        features = np.load(path / "features.npy", mmap_mode="r", allow_pickle=False)
        ids = np.load(path / "ids.npy", allow_pickle=False)
        labels = np.load(path / "labels.npy", allow_pickle=False)
        n, dim = manifest["num_samples"], manifest["dim"]
        if features.shape != (n, dim) or features.dtype != np.float16 or len(ids) != n or len(labels) != n:
            raise IncompleteStoreError(
                f"feature store {path}: arrays have shapes features {features.shape} {features.dtype}, ids "
                f"{ids.shape}, labels {labels.shape}, but {STORE_FILE} says {n} x {dim} float16; "
                "delete the directory"
            )
        fingerprint = manifest["fingerprint"]
        if fingerprint_key(fingerprint) != manifest["key"]:
            raise IncompleteStoreError(
                f"feature store {path}: {STORE_FILE} was edited (its key does not match its "
                "fingerprint); delete the directory"
            )
        if expected_fingerprint is not None:
            check_fingerprint(path, fingerprint, expected_fingerprint)
        return cls(
            path, features, ids, labels, fingerprint, manifest["key"], tuple(manifest.get("skipped", ()))
        )

    @classmethod
    def write(
        cls,
        path: str | Path,
        features: np.ndarray,
        ids: Sequence[str],
        labels: np.ndarray,
        fingerprint: dict,
        skipped: Sequence[str] = (),
    ) -> FeatureStore:
        """Write a store atomically at ``path`` and return it opened.

        If a complete store with the same fingerprint already sits there (another process won the race), that
        one is returned.
        """
        path = Path(path)
        fingerprint = as_json(fingerprint)
        features = np.ascontiguousarray(features)
        if features.ndim != 2 or features.dtype != np.float16:
            raise ValueError(
                f"features must be an N x D float16 array, got {features.shape} {features.dtype}"
            )
        if not _all_finite(features):
            raise StoreError(
                f"features for {path} hold NaN or inf (float16 overflow or a broken backbone); "
                "nothing was written"
            )
        ids_array = np.asarray([str(i) for i in ids])
        labels = np.ascontiguousarray(labels)
        if len(ids_array) != len(features) or len(labels) != len(features):
            raise ValueError(
                f"{len(features)} feature rows, {len(ids_array)} ids and {len(labels)} labels differ"
            )
        if len(set(ids_array.tolist())) != len(ids_array):
            raise StoreMismatchError(
                f"sample ids of {path} are not unique: the dataset split repeats samples"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}-"))
        except OSError as error:
            raise StoreWriteError(f"feature store {path}: {write_failure(path.parent, error)}") from error
        try:
            files = {}
            for name, array in zip(ARRAY_FILES, (features, ids_array, labels), strict=True):
                files[name] = _save_array(tmp / name, array)
            manifest = {
                "format": FORMAT,
                "key": fingerprint_key(fingerprint),
                "num_samples": len(features),
                "dim": int(features.shape[1]),
                "dtype": "float16",
                "files": files,
                "fingerprint": fingerprint,
                "skipped": [str(i) for i in skipped],
            }
            _write_synced(tmp / STORE_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
            cls.open(tmp, expected_fingerprint=fingerprint)
            try:
                os.rename(tmp, path)
            except OSError:
                if not (path / STORE_FILE).exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer finished first
            fsync_path(path.parent)
        except BaseException as error:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(error, OSError) and not isinstance(error, MedTransferError):
                raise StoreWriteError(f"feature store {path}: {write_failure(path.parent, error)}") from error
            raise
        return cls.open(path, expected_fingerprint=fingerprint, verify=False)


def is_store(path: str | Path) -> bool:
    """A directory that a completed write left (it may still fail verification when opened)."""
    return (Path(path) / STORE_FILE).is_file()


def check_fingerprint(path: Path, stored: dict, expected: dict) -> None:
    """Refuse a store computed from other inputs: ``FingerprintMismatchError`` naming each differing entry."""
    expected = as_json(expected)
    if stored == expected:
        return
    differing = sorted(k for k in set(stored) | set(expected) if stored.get(k) != expected.get(k))
    detail = "; ".join(f"{k}: store has {stored.get(k)!r}, expected {expected.get(k)!r}" for k in differing)
    raise FingerprintMismatchError(
        f"feature store {path} was computed from other inputs ({detail}); it cannot be reused. "
        "Let medtransfer "
        "extract a new store (the default path is keyed by the fingerprint) or delete this one"
    )


def check_aligned(stores: Sequence[FeatureStore]) -> None:
    """Stores to be combined (several backbones, one split) must describe the same samples in the same order.

    Raises:
        StoreMismatchError: names what differs.
    """
    if not stores:
        raise ValueError("no feature stores to combine")
    first = stores[0]
    for other in stores[1:]:
        for part in ("data", "split", "transform", "image_size"):
            if other.fingerprint.get(part) != first.fingerprint.get(part):
                raise StoreMismatchError(
                    f"feature stores {first.path} and {other.path} differ in {part} "
                    f"({first.fingerprint.get(part)!r} vs {other.fingerprint.get(part)!r}): "
                    "stores of different "
                    "datasets or splits cannot be combined"
                )
        if len(other) != len(first) or not np.array_equal(other.ids, first.ids):
            raise StoreMismatchError(
                f"feature stores {first.path} and {other.path} hold different sample ids; "
                "re-extract them from the same dataset"
            )


def _read_manifest(path: Path) -> dict:
    manifest_path = path / STORE_FILE
    if not path.is_dir():
        raise IncompleteStoreError(f"no feature store at {path}")
    if not manifest_path.is_file():
        raise IncompleteStoreError(
            f"{path} has no {STORE_FILE}: an extraction was interrupted before it finished; "
            "delete the directory"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as err:
        raise IncompleteStoreError(
            f"{manifest_path} is unreadable ({err}); delete the store directory"
        ) from None
    missing = [
        k for k in ("format", "key", "num_samples", "dim", "files", "fingerprint") if k not in manifest
    ]
    if missing or manifest.get("format") != FORMAT:
        raise IncompleteStoreError(
            f"{manifest_path} is not a {FORMAT} manifest (missing {missing} or format "
            f"{manifest.get('format')!r}); delete the store directory"
        )
    return manifest


def _check_file(path: Path, name: str, record: dict | None, verify: bool) -> None:
    file = path / name
    if record is None or not file.is_file():
        raise IncompleteStoreError(f"feature store {path} is missing {name}; delete the directory")
    size = file.stat().st_size
    if size != record["bytes"]:
        raise IncompleteStoreError(
            f"feature store file {file} has {size} bytes, {record['bytes']} were written: "
            "it is truncated or was changed; delete the store directory"
        )
    if verify and file_digest(file) != record["sha256"]:
        raise IncompleteStoreError(
            f"feature store file {file} does not match its SHA-256 checksum: it is "
            "corrupted; delete the store directory"
        )


def _all_finite(features: np.ndarray, rows: int = 65_536) -> bool:
    """Every value finite, checked a block of rows at a time (no N x D mask of the whole split)."""
    return all(np.isfinite(features[start : start + rows]).all() for start in range(0, len(features), rows))


def _save_array(file: Path, array: np.ndarray) -> dict:
    with open(file, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        flush_to_disk(handle)
    return {"bytes": file.stat().st_size, "sha256": file_digest(file)}


def _write_synced(file: Path, data: bytes) -> None:
    with open(file, "wb") as handle:
        handle.write(data)
        flush_to_disk(handle)



