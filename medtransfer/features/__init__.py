"""Feature stores: embeddings of a frozen backbone computed once per (weights, dataset, split, eval transform)
and reused by the linear probe, the LR/WD sweep, kNN and frozen DVME. See ``store.py`` for the format and API;
``EmbeddingsDataModule`` serves them in place of a datamodule's images to the heads that read them."""

from .datamodule import EmbeddingsDataModule
from .extract import DEFAULT_ROOT, embed_split, store_for
from .fingerprint import fingerprint_key, store_fingerprint, store_path
from .loader import FeatureBatches
from .store import (
    FeatureStore,
    FingerprintMismatchError,
    IncompleteStoreError,
    StoreError,
    StoreMismatchError,
    check_aligned,
)

__all__ = [
    "DEFAULT_ROOT",
    "EmbeddingsDataModule",
    "FeatureBatches",
    "FeatureStore",
    "FingerprintMismatchError",
    "IncompleteStoreError",
    "StoreError",
    "StoreMismatchError",
    "check_aligned",
    "embed_split",
    "fingerprint_key",
    "store_fingerprint",
    "store_for",
    "store_path",
]
