"""Carved splits: validation/test splits cut from a pool where a dataset publishes none (seeded, stratified,
patient-grouped), and the CSV of every sample's split that a paper can publish."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path
from .fractions import stratified_group_keys
from .sources import Source

log = logging.getLogger(__name__)


def carve_assignment(
    labels: np.ndarray, groups: np.ndarray | None, fractions: Mapping[str, float], seed: int
) -> np.ndarray:
    """The split name of every sample: each name in ``fractions`` gets that share of every stratum (by
    patient), the rest is ``train``. Patients keep all their images in one split."""
    total = sum(fractions.values())
    if any(f <= 0 for f in fractions.values()) or total >= 1:
        raise ValueError(
            f"carved split fractions must be positive and sum to less than 1, got {dict(fractions)}"
        )
    group_of, keys, _ = stratified_group_keys(labels, groups, seed)
    group_split = np.full(len(keys), "train", dtype=object)
    start = 0.0
    for name, share in fractions.items():
        group_split[(keys >= start) & (keys < start + share)] = name
        start += share
    return group_split[group_of]


def carve_sources(
    pool: Source, fractions: Mapping[str, float], seed: int, dataset: str, pool_name: str = "train"
) -> dict[str, Source]:
    """Split ``pool`` into ``train`` plus the splits named in ``fractions``, and log that it happened."""
    assignment = carve_assignment(pool.labels, pool.groups, fractions, seed)
    carved = {name: pool.subset(np.flatnonzero(assignment == name)) for name in ("train", *fractions)}
    for name, source in carved.items():
        if len(source) == 0:
            raise ValueError(
                f"{dataset}: carving {dict(fractions)} from {len(pool)} {pool_name} samples left the {name} "
                "split "
                "empty; the dataset is too small for these fractions"
            )
    patients = "patient-grouped" if pool.groups is not None else "one sample per patient"
    log.info(
        "%s: carved %s from the %d %s samples (split_seed=%d, stratified, %s): %s",
        dataset,
        " and ".join(fractions),
        len(pool),
        pool_name,
        seed,
        patients,
        ", ".join(f"{name} {len(source)}" for name, source in carved.items()),
    )
    return carved


def write_split_file(path: str | Path, sources: Mapping[str, Source]) -> Path:
    """Write ``id,split,label,patient`` for every sample, so a carved split can be published and reused
    (``CSVDataset`` reads it back with ``split_column: split``)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split", "label", "patient"])
        for split, source in sources.items():
            for i, sample_id in enumerate(source.ids):
                label = source.labels[i]
                label_text = (
                    "|".join(str(int(v)) for v in np.atleast_1d(label)) if np.ndim(label) else int(label)
                )
                patient = "" if source.groups is None else source.groups[i]
                writer.writerow([sample_id, split, label_text, patient])
    return Path(path)


def complete_splits(
    available: Mapping[str, Source], val_fraction: float, test_fraction: float, seed: int, dataset: str
) -> dict[str, Source]:
    """``train``/``val``/``test`` from the splits a dataset has, carving the missing ones from ``train``."""
    if "train" not in available:
        raise ValueError(f"{dataset}: no training split (found {sorted(available)})")
    wanted = {
        name: share
        for name, share in (("val", val_fraction), ("test", test_fraction))
        if name not in available
    }
    if not wanted:
        return dict(available)
    carved = carve_sources(available["train"], wanted, seed, dataset)
    return {**available, **carved}
