"""Every test metric as a function of per-sample count weights, vectorised over bootstrap resamples.

A resample is a column of :class:`~medtransfer.stats.resampling.Resamples`; with all weights 1 these are the
metrics a run reports (torchmetrics' definitions: thresholds, macro averages, undefined AUROC classes left
out). AUROC needs one sort of the scores per class: the weight of negatives below each positive score is a
cumulative sum over the sorted scores, obtained for all resamples at once from one sparse product.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .calibration import N_BINS, bin_index, brier_per_sample, confidence_and_correct
from .resampling import Resamples


def weighted_sums(values: np.ndarray, resamples: Resamples) -> np.ndarray:
    """``k x B``: for each column of ``values`` (``N x k``), its weighted sum in every resample."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    return np.concatenate([values.T @ block for block in resamples.blocks], axis=1)


def auroc(scores: np.ndarray, positive: np.ndarray, resamples: Resamples) -> np.ndarray:
    """AUROC in every resample (``B``).

    The weighted share of (positive, negative) pairs in which the positive scores higher, ties counting one
    half; NaN where a resample has no positive or no negative.
    """
    return aurocs(np.asarray(scores)[:, None], np.asarray(positive)[:, None], resamples)[0]


def aurocs(scores: np.ndarray, positive: np.ndarray, resamples: Resamples) -> np.ndarray:
    """``C x B`` AUROCs of ``C`` score columns (``N x C``, each with its own positives).

    They are computed block by block of resamples so that each block of weights is read from the cache by
    every column.
    """
    columns = [_LevelSums(scores[:, c], positive[:, c], resamples.max_total) for c in range(scores.shape[1])]
    values = [[] for _ in columns]
    for block in resamples.blocks:
        for column, out in zip(columns, values, strict=True):
            out.append(column.auroc(block))
    return np.array([np.concatenate(out) for out in values])


class _LevelSums:
    """AUROC of one score column under blocks of weights.

    With the ``q`` distinct positive scores as levels, one sparse product with the weights sums, per
    resample, the positives at each level and the negatives between consecutive levels (and, where scores
    tie, the negatives at each level); a cumulative sum over the levels then gives the weight of the
    negatives below each positive score.
    """

    def __init__(self, scores: np.ndarray, positive: np.ndarray, max_total: int) -> None:
        positive = np.asarray(positive, dtype=bool)
        levels = np.unique(scores[positive])
        self.q = q = len(levels)
        self.defined = q > 0 and not positive.all()
        if not self.defined:
            return
        n = len(scores)
        where = np.searchsorted(levels, scores, side="left")  # levels strictly below each score
        tied = ~positive & (where < q) & (levels[np.minimum(where, q - 1)] == scores)
        # rows 0 .. q: negatives below level k and not below level k - 1 (a tie at level k - 1 counts
        # here, at k, since it is below level k); rows q+1 ..: positives at level k; then negatives tied
        # with level k
        rows = np.where(positive, q + 1 + where, where + tied)
        self.with_ties = bool(tied.any())
        columns = np.arange(n)
        if self.with_ties:
            rows = np.concatenate([rows, 2 * q + 1 + where[tied]])
            columns = np.concatenate([columns, np.flatnonzero(tied)])
        # a type that holds every sum: the weights' own (see bootstrap_resamples), so products copy nothing
        dtype = np.uint16 if max_total < 1 << 16 else np.uint32
        self.total = np.int32 if max_total < 1 << 30 else np.int64
        self.buckets = sparse.csr_matrix((np.ones(len(rows), dtype=dtype), (rows, columns)),
                                         shape=(2 * q + 1 + q * self.with_ties, n))

    def auroc(self, block: np.ndarray) -> np.ndarray:
        if not self.defined:
            return np.full(block.shape[1], np.nan)
        q = self.q
        summed = transposed(self.buckets @ block)  # resamples x rows: the cumulative sum runs along memory
        below = np.cumsum(summed[:, : q + 1], axis=1, dtype=self.total)  # negatives below each level
        twice_wins = 2 * below[:, :q]
        if self.with_ties:
            twice_wins += summed[:, 2 * q + 1 :]
        positives = summed[:, q + 1 : 2 * q + 1]
        numerator = np.einsum("bk,bk->b", positives, twice_wins, dtype=np.float64)
        pairs = 2.0 * positives.sum(axis=1, dtype=np.float64) * below[:, q]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, numerator / pairs, np.nan)


def transposed(matrix: np.ndarray, rows: int = 256) -> np.ndarray:
    """A C-contiguous transpose, copied a band of rows at a time.

    A plain transposed copy of a tall matrix misses the cache on every element: three times slower.
    """
    out = np.empty(matrix.shape[::-1], dtype=matrix.dtype)
    for start in range(0, matrix.shape[0], rows):
        out[:, start : start + rows] = matrix[start : start + rows].T
    return out


def nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN (an undefined class), NaN where nothing is defined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (torchmetrics' zero division)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


@dataclass
class _Linear:
    """A metric computed from weighted sums of per-sample columns."""

    columns: np.ndarray  # N x k
    finish: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (k x B sums, B total weight) -> B values


class TestMetrics:
    """The metrics of one run's test predictions, under any weights.

    They are ``metrics.build_metrics``'s, plus calibration.

    Args:
        kind: ``binary``, ``multiclass`` or ``multilabel``.
        labels: ``N`` class indices, or ``N x C`` 0/1 for multilabel.
        probs: ``N`` positive-class probabilities (binary) or ``N x C``.
        losses: each sample's loss (``loss`` is their mean), if known.
        class_names: names for the per-class metrics (``auroc/<class>`` and ``ece/<class>``, multilabel).
        ordinal: multiclass grades, which adds quadratic weighted ``kappa``.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        kind: str,
        labels: np.ndarray,
        probs: np.ndarray,
        losses: np.ndarray | None = None,
        class_names: list[str] | None = None,
        ordinal: bool = False,
        n_bins: int = N_BINS,
    ) -> None:
        self.kind = kind
        self.labels = np.asarray(labels).astype(np.int64)
        self.probs = np.asarray(probs, dtype=np.float32)
        self.losses = None if losses is None else np.asarray(losses, dtype=np.float64)
        self.n = len(self.labels)
        width = 1 if kind == "binary" else self.probs.shape[1]
        self.class_names = list(class_names or [str(c) for c in range(max(2, width))])
        self.ordinal = ordinal
        self.n_bins = n_bins

    # -- what can be computed --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        names = ["auroc", "acc", "f1"]
        if self.kind == "multiclass" and self.ordinal:
            names.append("kappa")
        names += ["ece", "brier"]
        if self.losses is not None:
            names.append("loss")
        if self.kind == "multilabel":
            names += [f"auroc/{c}" for c in self.class_names] + [f"ece/{c}" for c in self.class_names]
        return names

    def evaluate(self, resamples: Resamples, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """``{metric: B values}`` for ``names`` (default: all of :meth:`names`)."""
        names = list(names or self.names())
        unknown = [name for name in names if name not in self.names()]
        if unknown:
            raise KeyError(f"cannot compute {unknown} from these predictions (available: {self.names()})")
        out: dict[str, np.ndarray] = {}
        wanted_auroc = [name for name in names if name == "auroc" or name.startswith("auroc/")]
        if wanted_auroc:
            out.update(self._auroc(resamples, wanted_auroc))
        linear = {name: self._linear(name) for name in names if name not in out}
        if linear:
            columns = [np.ones((self.n, 1))] + [part.columns for part in linear.values()]
            sums = weighted_sums(np.concatenate(columns, axis=1), resamples)
            total, start = sums[0], 1
            for name, part in linear.items():
                width = part.columns.shape[1]
                out[name] = part.finish(sums[start : start + width], total)
                start += width
        return {name: out[name] for name in names}

    # -- AUROC: one sort per class ---------------------------------------------------------------------------
    def _auroc(self, resamples: Resamples, names: list[str]) -> dict[str, np.ndarray]:
        if self.kind == "binary":
            return {"auroc": auroc(self.probs, self.labels == 1, resamples)}
        if self.kind == "multiclass":
            positives = self.labels[:, None] == np.arange(self.probs.shape[1])[None, :]
        else:
            positives = self.labels == 1
        per_class = aurocs(self.probs, positives, resamples)  # NaN for a class with one kind of label only
        out = {"auroc": nanmean_rows(per_class)}
        out.update({f"auroc/{name}": per_class[c] for c, name in enumerate(self.class_names)})
        return {name: out[name] for name in names}

    # -- everything else: weighted sums of per-sample columns ------------------------------------------------
    def _linear(self, name: str) -> _Linear:
        if name == "loss":
            return _Linear(self.losses[:, None], lambda sums, total: sums[0] / total)
        if name == "brier":
            brier = brier_per_sample(self.kind, self.labels, self.probs)
            return _Linear(brier[:, None], lambda sums, total: sums[0] / total)
        if name == "acc":
            correct = self._predicted() == self.labels
            if self.kind == "multilabel":
                correct = correct.mean(axis=1)
            return _Linear(correct.astype(np.float64)[:, None], lambda sums, total: sums[0] / total)
        if name == "f1":
            return self._f1()
        if name == "kappa":
            return self._kappa()
        if name == "ece":
            return self._ece(None)
        if name.startswith("ece/"):
            return self._ece(self.class_names.index(name.split("/", 1)[1]))
        raise KeyError(name)

    def _predicted(self) -> np.ndarray:
        if self.kind == "multiclass":
            return self.probs.argmax(axis=1)
        return (self.probs > 0.5).astype(np.int64)

    def _f1(self) -> _Linear:
        predicted = self._predicted()
        if self.kind == "multiclass":
            classes = np.arange(self.probs.shape[1])
            predicted = predicted[:, None] == classes[None, :]
            actual = self.labels[:, None] == classes[None, :]
        else:
            predicted, actual = predicted.reshape(self.n, -1) == 1, self.labels.reshape(self.n, -1) == 1
        width = predicted.shape[1]
        columns = np.concatenate([predicted & actual, predicted & ~actual, ~predicted & actual], axis=1)

        def finish(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
            tp, fp, fn = sums[:width], sums[width : 2 * width], sums[2 * width :]
            f1 = safe_ratio(2 * tp, 2 * tp + fp + fn)
            if self.kind != "multiclass":
                return f1.mean(axis=0)
            present = (tp + fp + fn) > 0  # torchmetrics' macro F1 leaves out classes never seen or predicted
            return safe_ratio((f1 * present).sum(axis=0), present.sum(axis=0).astype(np.float64))

        return _Linear(columns.astype(np.float64), finish)

    def _kappa(self) -> _Linear:
        classes = self.probs.shape[1]
        cell = self.labels * classes + self._predicted()
        columns = np.eye(classes * classes)[cell]
        grades = np.arange(classes)
        penalty = ((grades[:, None] - grades[None, :]) ** 2).astype(np.float64).ravel()

        def finish(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
            confusion = sums.reshape(classes, classes, -1)
            expected = np.einsum("ib,jb->ijb", confusion.sum(axis=1), confusion.sum(axis=0)) / total
            observed = np.einsum("k,kb->b", penalty, sums)
            chance = np.einsum("k,kb->b", penalty, expected.reshape(classes * classes, -1))
            return 1 - safe_ratio(observed, chance)

        return _Linear(columns, finish)

    def _ece(self, label: int | None) -> _Linear:
        """ECE; for multilabel ``label`` picks one label, and None averages the labels' ECEs."""
        confidence, correct = confidence_and_correct(self.kind, self.labels, self.probs)
        if self.kind != "multilabel":
            confidence, correct = confidence[:, None], correct[:, None]
        elif label is not None:
            confidence, correct = confidence[:, [label]], correct[:, [label]]
        slots = self.n_bins + 1
        columns = []
        for c in range(confidence.shape[1]):
            gap = confidence[:, c].astype(np.float64) - correct[:, c]
            columns.append(np.eye(slots)[bin_index(confidence[:, c], self.n_bins)] * gap[:, None])
        width = confidence.shape[1]

        def finish(sums: np.ndarray, total: np.ndarray) -> np.ndarray:
            per_label = np.abs(sums.reshape(width, slots, -1)).sum(axis=1) / total
            return per_label.mean(axis=0)

        return _Linear(np.concatenate(columns, axis=1), finish)
