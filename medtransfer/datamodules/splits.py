"""Carved splits: validation/test splits cut from a pool where a dataset publishes none (seeded, stratified,
patient-grouped), and the CSV of every sample's split that a paper can publish."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import ConfigValueError
from ..utils.atomic import atomic_path
from .config_values import config_key
from .copies import grouped_with_copies
from .errors import DatasetLayoutError, DatasetTooSmallError
from .fractions import stratified_group_keys
from .sources import Source

log = logging.getLogger(__name__)


def carve_assignment(
    labels: np.ndarray,
    groups: np.ndarray | None,
    fractions: Mapping[str, float],
    seed: int,
    dataset: str = "",
) -> np.ndarray:
    """The split name of every sample: each name in ``fractions`` gets that share of every stratum (by
    patient), the rest is ``train``. Patients keep all their images in one split."""
    check_carved_shares(fractions, dataset)
    group_of, keys, _ = stratified_group_keys(labels, groups, seed)
    group_split = np.full(len(keys), "train", dtype=object)
    start = 0.0
    for name, share in fractions.items():
        group_split[(keys >= start) & (keys < start + share)] = name
        start += share
    return group_split[group_of]


def check_carved_shares(fractions: Mapping[str, float], dataset: str = "") -> None:
    """Every split to carve gets a positive share and the shares leave training images: a ConfigValueError
    naming the ``<split>_fraction`` keys otherwise (a share of 0 is allowed in a config, for a dataset that
    has that split of its own)."""
    prefix = f"{dataset}: " if dataset else ""
    for name, share in fractions.items():
        if share <= 0:
            raise ConfigValueError(
                f"{prefix}{config_key(f'{name}_fraction')} is {share}, but the dataset has no {name} split "
                "of its own: give a share in (0, 1) (e.g. 0.1) to carve one from the training images"
            )
    if sum(fractions.values()) >= 1:
        keys = " + ".join(config_key(f"{name}_fraction") for name in fractions)
        raise ConfigValueError(
            f"{prefix}{keys} = {sum(fractions.values()):g} leaves no training images: carved split fractions "
            f"must be positive and sum to less than 1, got {dict(fractions)}"
        )


def carve_sources(
    pool: Source, fractions: Mapping[str, float], seed: int, dataset: str, pool_name: str = "train"
) -> dict[str, Source]:
    """Split ``pool`` into ``train`` plus the splits named in ``fractions``, and log that it happened.
    A patient's images, and byte-identical copies of an image, stay in one split."""
    assignment = carve_assignment(pool.labels, grouped_with_copies(pool), fractions, seed, dataset)
    carved = {name: pool.subset(np.flatnonzero(assignment == name)) for name in ("train", *fractions)}
    for name, source in carved.items():
        if len(source) == 0:
            raise DatasetTooSmallError(
                f"{dataset}: carving {dict(fractions)} from {len(pool)} {pool_name} samples left the {name} "
                "split empty; the dataset is too small for these fractions: add images, or change "
                f"{config_key('val_fraction')} / {config_key('test_fraction')}"
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
        raise DatasetLayoutError(f"{dataset}: no training split (found {sorted(available)})")
    wanted = {
        name: share
        for name, share in (("val", val_fraction), ("test", test_fraction))
        if name not in available
    }
    if not wanted:
        return dict(available)
    carved = carve_sources(available["train"], wanted, seed, dataset)
    return {**available, **carved}
