"""Feature maps as in Truong et al. (2021): a 2-D embedding (t-SNE, or UMAP where ``umap-learn`` is installed)
of a backbone's STORED features, coloured by class, with a class-separation number computed on the
full-dimensional features (a 2-D picture alone can mislead: t-SNE makes clusters of noise and tears real
ones).

Nothing here runs a backbone: the features are read from feature stores (``store.py``). A store larger than
``max_points`` is subsampled, stratified by class and seeded, and the number is computed on the same rows.

- ``class_groups``: the colour (and the class the number scores) of every row: the class for binary and
  multiclass stores; for multilabel stores the number of findings (``no finding``, ``1 finding``, ``2
  findings``, ``3+ findings``), or one chosen class against the rest (``class_index``).
- ``separation``: leave-one-out kNN balanced accuracy (k = 20, cosine) and the silhouette score, both on the
  standardised full-dimensional features.
- ``feature_map``: one store's map and number; ``maps_figure``: one panel per backbone; ``figure_png``;
  ``log_to_tensorboard``: the figure (and optionally the projector's embeddings) to a TensorBoard log dir.

scikit-learn (a dev dependency) is imported when a map is drawn, with a one-line error naming how to install
it when it is absent. See docs/feature-maps.md.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import MedTransferError
from .store import STORE_FILE, TMP_PREFIX, FeatureStore, StoreError

METHODS = {"tsne": "t-SNE", "umap": "UMAP"}  # name -> what captions call it
DEFAULT_MAX_POINTS = 2000
KNN_K = 20
MAX_FINDINGS = 3  # multilabel colours: no finding, 1, 2, 3+ findings
PCA_DIMS = 50  # t-SNE runs on the first 50 principal components, as is usual (faster, less noise)


class FeatureMapError(MedTransferError):
    """A feature map cannot be drawn as asked (no stores, an empty store, a missing optional package)."""


@dataclass(frozen=True)
class Separation:
    """How well the classes separate in the full-dimensional features of ``n`` rows.

    Attributes:
        knn_balanced_accuracy: leave-one-out kNN (k = 20, cosine) balanced accuracy: class imbalance cannot
            flatter it; ``chance`` is what a feature-less guess gets.
        silhouette: the silhouette score of the classes on the standardised features (-1 to 1).
        chance: balanced accuracy of a constant guess (1 / number of classes present).
        n: rows scored.
    """

    knn_balanced_accuracy: float
    silhouette: float
    chance: float
    n: int


@dataclass(frozen=True)
class FeatureMap:
    """One store's 2-D map: ``points[i]`` is row ``rows[i]`` of the store, coloured by ``groups[i]``."""

    label: str
    store: Path
    points: np.ndarray
    rows: np.ndarray
    groups: np.ndarray
    group_names: list[str]
    separation: Separation
    total: int  # rows in the store


def sklearn_module(name: str):
    """``sklearn.<name>``, or a one-line error saying how to install scikit-learn."""
    import importlib

    try:
        return importlib.import_module(f"sklearn.{name}")
    except ImportError:
        raise FeatureMapError(
            "feature maps need scikit-learn (t-SNE, kNN, silhouette): pip install scikit-learn"
        ) from None


def umap_available() -> bool:
    """Whether ``umap-learn`` is installed (UMAP maps are skipped, with a note, when it is not)."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def find_stores(root: str | Path) -> list[Path]:
    """Every complete store directory under ``root`` (a store itself, or a folder of them), sorted; hidden
    ``.tmp-*`` directories of interrupted extractions are skipped."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob(STORE_FILE)
                  if not any(part.startswith(TMP_PREFIX) for part in p.relative_to(root).parts))


def class_groups(labels: np.ndarray, class_names: Sequence[str] | None = None,
                 class_index: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The colour group of every row and the groups' names.

    Binary and multiclass labels are their own groups. Multilabel labels (``N x C``) are grouped by the number
    of findings (``no finding`` ... ``3+ findings``), or, with ``class_index``, by that one class against the
    rest.
    """
    labels = np.asarray(labels)
    if labels.ndim == 1:
        count = max(int(labels.max(initial=-1)) + 1, len(class_names or ()))
        names = list(class_names) if class_names and len(class_names) >= count else [
            f"class {i}" for i in range(count)]
        return labels.astype(np.int64), names
    present = labels > 0.5
    if class_index is not None:
        if not 0 <= class_index < labels.shape[1]:
            raise FeatureMapError(
                f"class index {class_index} is outside the store's {labels.shape[1]} classes")
        name = class_names[class_index] if class_names else f"class {class_index}"
        return present[:, class_index].astype(np.int64), [f"no {name}", name]
    findings = np.minimum(present.sum(axis=1), MAX_FINDINGS).astype(np.int64)
    return findings, ["no finding", "1 finding", "2 findings", f"{MAX_FINDINGS}+ findings"]


def stratified_rows(groups: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """At most ``max_points`` row indices, each group keeping its share (largest remainders), seeded; all
    rows when there are no more than ``max_points``."""
    n = len(groups)
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    values, counts = np.unique(groups, return_counts=True)
    shares = counts * max_points / n
    quotas = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - quotas), kind="stable")[: max_points - quotas.sum()]:
        quotas[i] += 1
    rows = [rng.permutation(np.flatnonzero(groups == v))[:q] for v, q in zip(values, quotas, strict=True)]
    return np.sort(np.concatenate(rows))


def standardized(features: np.ndarray) -> np.ndarray:
    """Every dimension to mean 0 and std 1 (float64), constant dimensions dropped: as the frozen heads see
    the features, so no dimension dominates by its scale alone."""
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    keep = std > 1e-12
    return (x[:, keep] - x[:, keep].mean(axis=0)) / std[keep]


def separation(features: np.ndarray, groups: np.ndarray, k: int = KNN_K) -> Separation:
    """Leave-one-out kNN balanced accuracy (cosine, majority vote, ties to the lower class) and the
    silhouette score, on the standardised full-dimensional ``features``. NaN where fewer than two classes
    (or too few rows) make either meaningless."""
    x, groups = standardized(features), np.asarray(groups)
    present = np.unique(groups)
    n = len(groups)
    if len(present) < 2 or n < 3 or x.shape[1] == 0:
        return Separation(math.nan, math.nan, 1 / max(len(present), 1), n)
    neighbors = sklearn_module("neighbors")
    metrics = sklearn_module("metrics")
    index = neighbors.NearestNeighbors(n_neighbors=min(k, n - 1), metric="cosine").fit(x)
    _, nearest = index.kneighbors()  # no query: each row's neighbours leave the row itself out
    votes = np.stack([(groups[nearest] == g).sum(axis=1) for g in present], axis=1)
    predicted = present[votes.argmax(axis=1)]
    accuracy = float(metrics.balanced_accuracy_score(groups, predicted))
    silhouette = float(metrics.silhouette_score(x, groups)) if len(present) < n else math.nan
    return Separation(accuracy, silhouette, 1 / len(present), n)


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """The ``N x 2`` embedding of the standardised ``features``: t-SNE (on the first 50 principal components,
    PCA initialisation) or UMAP (cosine), seeded."""
    x = standardized(features)
    n = len(x)
    if n < 3 or x.shape[1] == 0:
        raise FeatureMapError(
            f"a 2-D map needs at least 3 rows with varying features, got {n} x {x.shape[1]}")
    if method == "umap":
        if not umap_available():
            raise FeatureMapError("UMAP maps need umap-learn: pip install umap-learn")
        import umap

        return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(x)
    if method != "tsne":
        raise FeatureMapError(f"unknown map method {method!r}; use one of {', '.join(METHODS)}")
    dims = min(PCA_DIMS, *x.shape)
    if dims < x.shape[1]:
        x = sklearn_module("decomposition").PCA(n_components=dims, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = sklearn_module("manifold").TSNE(n_components=2, perplexity=perplexity, init="pca",
                                           learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x)


def feature_map(store: FeatureStore, label: str, method: str = "tsne", max_points: int = DEFAULT_MAX_POINTS,
                seed: int = 0, class_names: Sequence[str] | None = None,
                class_index: int | None = None) -> FeatureMap:
    """``store``'s map (at most ``max_points`` rows, stratified by class and seeded) and the separation of its
    classes on the same rows' full-dimensional features."""
    if len(store) == 0:
        raise FeatureMapError(f"feature store {store.path} is empty: nothing to draw")
    groups, names = class_groups(store.labels, class_names, class_index)
    rows = stratified_rows(groups, max_points, seed)
    features = np.asarray(store.features[rows], dtype=np.float32)
    return FeatureMap(label, store.path, embed_2d(features, method, seed), rows, groups[rows], names,
                      separation(features, groups[rows]), len(store))


def panel_title(fmap: FeatureMap) -> str:
    """A panel's title: the backbone, then its separation numbers."""
    s = fmap.separation
    return (f"{fmap.label}\nkNN bal. acc {s.knn_balanced_accuracy:.3f} (chance {s.chance:.2f}), "
            f"silhouette {s.silhouette:.3f}")


def maps_figure(maps: Sequence[FeatureMap], title: str, method: str = "tsne") -> Figure:
    """One panel per map (a backbone), points coloured by class, separation numbers in each panel's title."""
    columns = min(len(maps), 4)
    rows = math.ceil(len(maps) / columns)
    figure = Figure(figsize=(4.2 * columns, 4.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for ax, fmap in zip(axes.flat[:len(maps)], maps, strict=True):
        for g, name in enumerate(fmap.group_names):
            mask = fmap.groups == g
            if mask.any():
                ax.scatter(*fmap.points[mask].T, s=6, alpha=0.7, color=f"C{g % 10}", label=name,
                           linewidths=0)
        ax.set_title(panel_title(fmap), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=2, loc="best")
    figure.suptitle(f"{title}: {METHODS[method]} of the stored features")
    return figure


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (no timestamp in the file: the same maps give the same bytes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def caption(maps: Sequence[FeatureMap], method: str, max_points: int, seed: int) -> str:
    """What the figure shows and how its numbers were computed, including any subsampling."""
    sampled = [m for m in maps if len(m.rows) < m.total]
    sampling = (f" Stores larger than {max_points} rows are subsampled to {max_points}, stratified by class "
                f"(seed {seed}): {', '.join(f'{m.label} {len(m.rows)} of {m.total}' for m in sampled)}."
                if sampled else f" Every row of each store is drawn (at most {max_points} would be).")
    return (f"{METHODS[method]} (seed {seed}) of each backbone's stored features, "
            "coloured by class. The numbers are computed on the full-dimensional standardised features of "
            f"the drawn rows, not on the map: leave-one-out {KNN_K}-NN balanced accuracy (cosine) and the "
            f"silhouette score.{sampling}")


def log_to_tensorboard(log_dir: str | Path, tag: str, figure: Figure, maps: Sequence[FeatureMap] = (),
                       projector: bool = False) -> None:
    """Write ``figure`` under ``tag`` to the TensorBoard log dir; with ``projector``, also each map's rows
    (full-dimensional features, class names as metadata) for TensorBoard's embedding projector."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        writer.add_figure(tag, figure, close=False)
        if projector:
            import torch

            for fmap in maps:
                features = FeatureStore.open(fmap.store, verify=False).features[fmap.rows]
                writer.add_embedding(torch.from_numpy(np.asarray(features, dtype=np.float32)),
                                     metadata=[fmap.group_names[g] for g in fmap.groups],
                                     tag=f"{tag}/{fmap.label}".replace(" ", "_"))


def open_stores(paths: Sequence[str | Path], split: str | None = None,
                broken: list[str] | None = None) -> dict[tuple[str, str], list]:
    """The stores under ``paths`` (stores or folders of them), opened without re-hashing their files (sizes
    and shapes are still checked), grouped by (dataset, split) and kept only for ``split`` when given. An
    unreadable store raises its ``StoreError``, or, when a ``broken`` list is given, its message joins it."""
    grouped: dict[tuple[str, str], list[FeatureStore]] = {}
    for path in paths:
        for found in find_stores(path):
            try:
                store = FeatureStore.open(found, verify=False)
            except StoreError as error:
                if broken is None:
                    raise
                broken.append(str(error))
                continue
            data = store.fingerprint.get("data") or {}
            where = (str(data.get("dataset", "?")), str(store.fingerprint.get("split")))
            if split is None or where[1] == split:
                grouped.setdefault(where, []).append(store)
    return grouped


def folder_labels(stores: Sequence[FeatureStore]) -> list[str]:
    """Each store's panel label from its folders: the backbone folder, with the store's own folder added
    where several stores share a backbone folder (e.g. random weights of several seeds)."""
    names = [s.path.parent.name for s in stores]
    return [f"{name}/{s.path.name}" if names.count(name) > 1 else name
            for name, s in zip(names, stores, strict=True)]


def separation_rows(maps: Sequence[FeatureMap], dataset: str, split: str) -> list[dict]:
    """One table row per map: where it comes from and its numbers (the verb's CSV and the report's table)."""
    return [{"dataset": dataset, "split": split, "backbone": m.label, "points": len(m.rows),
             "store_rows": m.total, "knn_balanced_accuracy": m.separation.knn_balanced_accuracy,
             "silhouette": m.separation.silhouette, "chance": m.separation.chance, "store": str(m.store)}
            for m in maps]
