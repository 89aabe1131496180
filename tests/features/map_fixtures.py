"""Tiny feature stores whose classes are well separated or mixed, for the feature-map tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtransfer.features.store import FeatureStore


def class_store(path: Path, separated: bool, n: int = 60, dim: int = 16, seed: int = 0, weights: str = "w0",
                dataset: str = "Toy", split: str = "test", labels: np.ndarray | None = None) -> FeatureStore:
    """A store of ``n`` rows in two classes (alternating): shifted apart by 4 std when ``separated``, the
    same distribution otherwise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2 if labels is None else labels
    classes = labels if labels.ndim == 1 else (labels.sum(axis=1) > 0).astype(int)
    features = rng.normal(size=(n, dim)) + (4.0 * classes[:, None] if separated else 0.0)
    fingerprint = {"backbone": {"name": path.parent.name, "weights": weights},
                   "data": {"dataset": dataset}, "split": split}
    return FeatureStore.write(path, features.astype(np.float16), [f"s{i}" for i in range(n)], labels,
                              fingerprint)
