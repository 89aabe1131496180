"""The report's feature-map section: for each dataset, a t-SNE (and UMAP where ``umap-learn`` is installed)
of every backbone's stored test features, coloured by class, with the class separation on the full features
(``medtransfer.features.maps``; docs/feature-maps.md).

Stores are matched to the report's runs by the fingerprint of their backbone's weights (store.json
``fingerprint.backbone.weights`` against results.json ``model.backbones[].fingerprint``) and dataset, so
panels carry the grid's labels (``random``, ``simclr``); a store of a multi-backbone run only (DVME) is
labelled ``<run label>: <backbone name>``; a store no run claims keeps its folder names. Where one label has
several stores, the store of the lowest seed is drawn, and a note says whether their weights differ per seed
(random initialisation) or the same weights were extracted more than once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..features import maps
from ..features.store import FeatureStore
from .aggregate import Collection, Record
from .sections import Section

TITLE = "Feature maps"
TABLE = "feature_separation"


@dataclass(frozen=True)
class Owner:
    """What a run says about the stores of one backbone's weights: the labels a panel takes from it."""

    dataset: str
    backbone: str
    shared: bool  # the backbone is one of several in its run (DVME): a weaker claim on the label
    seed: int
    class_names: tuple[str, ...] | None


def feature_map_section(collection: Collection, features_root: Path | None = None,
                        split: str = "test") -> Section | None:
    """The feature-map section of the report on ``collection``, or None when no feature store is found.

    Args:
        collection: the report's runs (``aggregate.collect``).
        features_root: the folder of feature stores (default: the ``features_dir`` the runs' configs name,
            else ``<collection root>/features``).
        split: the split drawn.
    """
    broken: list[str] = []
    grouped = maps.open_stores(store_roots(collection, features_root), split, broken)
    if not grouped:
        return None
    owners = store_owners(collection.records)
    methods = ["tsne", "umap"] if maps.umap_available() else ["tsne"]
    markdown = [
        f"Each backbone's stored {split} features in 2-D, coloured by class; the numbers are computed on the "
        "full-dimensional standardised features (leave-one-out 20-NN balanced accuracy, cosine, and the "
        "silhouette score), since a 2-D picture alone can mislead.", ""]
    figures: dict[str, bytes] = {}
    rows: list[dict] = []
    captions: list[str] = []
    try:
        for (dataset, store_split), stores in sorted(grouped.items()):
            panels, notes = panels_of(stores, owners, collection.level_order.get("backbone", []),
                                      collection.root)
            label = next((o.dataset for s in stores if (o := owner_of(s, owners))), dataset)
            for method in methods:
                drawn = [maps.feature_map(store, name, method, class_names=names)
                         for name, store, names in panels]
                figure = maps.maps_figure(drawn, f"{label} ({store_split})", method)
                name = f"feature_map_{file_part(label)}_{store_split}_{method}.png"
                figures[name] = maps.figure_png(figure)
                markdown.append(f"![{label} {method}](plots/{name})")
            rows += maps.separation_rows(drawn, label, store_split)
            captions.append(f"{label}: {maps.caption(drawn, methods[0], maps.DEFAULT_MAX_POINTS, 0)}")
            markdown += ["", *notes]
    except maps.FeatureMapError as error:
        return Section(TITLE, [f"Feature maps were not drawn: {error}"])
    table = pd.DataFrame(rows).drop(columns="store")
    markdown += ["", *separation_markdown(table), ""]
    if len(methods) == 1:
        markdown.append("UMAP maps were skipped: umap-learn is not installed (pip install umap-learn).")
    markdown += [f"Unreadable store left out: {message}" for message in broken]
    return Section(TITLE, markdown, figures, {TABLE: table}, {TABLE: " ".join(captions)})


def store_roots(collection: Collection, features_root: Path | None) -> list[Path]:
    """Where to look for stores: ``features_root``, else the runs' ``features_dir`` folders that exist, else
    ``<collection root>/features``."""
    if features_root is not None:
        return [Path(features_root)] if Path(features_root).is_dir() else []
    named = {Path(d) for r in collection.records
             if (d := (((r.results.get("config") or {}).get("model") or {}).get("init_args") or {})
                 .get("features_dir"))}
    found = sorted(p for p in named if p.is_dir())
    default = collection.root / "features"
    return found or ([default] if default.is_dir() else [])


def store_owners(records: list[Record]) -> dict[tuple[str, str], Owner]:
    """The run that names each (backbone weights fingerprint, dataset): a single-backbone run before a
    multi-backbone one, then the lowest seed."""
    owners: dict[tuple[str, str], Owner] = {}
    for record in records:
        backbones = record.results["model"].get("backbones") or []
        data = record.results.get("data") or {}
        names = (record.results.get("task") or {}).get("class_names")
        for backbone in backbones:
            shared = len(backbones) > 1
            label = record.labels.get("backbone", backbone.get("name", "?"))
            owner = Owner(record.labels.get("dataset", str(data.get("dataset"))),
                          f"{label}: {backbone.get('name')}" if shared else label, shared,
                          record.seed if record.seed is not None else 0, tuple(names) if names else None)
            key = (str(backbone.get("fingerprint")), str(data.get("dataset", data.get("name"))))
            if key not in owners or (owner.shared, owner.seed) < (owners[key].shared, owners[key].seed):
                owners[key] = owner
    return owners


def owner_of(store: FeatureStore, owners: dict[tuple[str, str], Owner]) -> Owner | None:
    """The run that names ``store``, matched by its weights' fingerprint and dataset, or None."""
    weights = (store.fingerprint.get("backbone") or {}).get("weights")
    dataset = (store.fingerprint.get("data") or {}).get("dataset")
    return owners.get((str(weights), str(dataset)))


def panels_of(stores: list[FeatureStore], owners: dict[tuple[str, str], Owner], order: list[str],
              root: Path) -> tuple[list[tuple[str, FeatureStore, tuple[str, ...] | None]], list[str]]:
    """One (label, store, class names) per panel, in the grid's backbone order (runs' labels first, then
    folder names), and notes on the stores not drawn."""
    fallback = dict(zip((s.path for s in stores), maps.folder_labels(stores), strict=True))
    chosen: dict[str, tuple[tuple, FeatureStore, tuple[str, ...] | None]] = {}
    weights: dict[str, list[str]] = {}  # per label, the weights fingerprint of each of its stores
    for store in stores:
        owner = owner_of(store, owners)
        label = owner.backbone if owner else fallback[store.path]
        rank = (owner.seed if owner else 0, str(store.path))
        weights.setdefault(label, []).append(str((store.fingerprint.get("backbone") or {}).get("weights")))
        if label not in chosen or rank < chosen[label][0]:
            chosen[label] = (rank, store, owner.class_names if owner else None)

    def position(label: str) -> tuple:
        base = label.split(": ")[0]
        return (order.index(base) if base in order else len(order), label)

    ordered = sorted(chosen, key=position)
    panels = [(label, chosen[label][1], chosen[label][2]) for label in ordered]
    notes = [_several_stores_note(label, weights[label], chosen[label][1], root) for label in ordered
             if len(weights[label]) > 1]
    return panels, notes


def _several_stores_note(label: str, weights: list[str], drawn: FeatureStore, root: Path) -> str:
    """Why one label has several stores, and which is drawn: weights that differ per seed (random
    initialisation), or the same weights extracted more than once (another folder or other settings). The
    drawn store is named relative to the report's folder of runs where it lies inside it, so a published
    summary does not carry the machine's paths."""
    distinct = len(set(weights))
    if distinct > 1:
        return (f"{label}: {len(weights)} stores of {distinct} different weights (one per seed, e.g. random "
                "initialisation); the lowest seed's is drawn.")
    path, root = Path(drawn.path).resolve(), root.resolve()
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    return (f"{label}: {len(weights)} stores of the same weights (extracted into other folders or with other "
            f"settings); {shown} is drawn.")


def separation_markdown(table: pd.DataFrame) -> list[str]:
    """The class-separation table as markdown lines."""
    lines = ["| dataset | backbone | kNN balanced accuracy | chance | silhouette | points |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r.dataset} | {r.backbone} | {r.knn_balanced_accuracy:.3f} | {r.chance:.2f} | "
              f"{r.silhouette:.3f} | {r.points} of {r.store_rows} |" for r in table.itertuples()]
    return lines


def file_part(text: str) -> str:
    """``text`` safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
