"""Per-sample prediction files: ``test_predictions.csv``, written by every test next to results.json (what
the test's confidence intervals and the benchmark's paired comparisons are computed from), and
``predictions.csv`` of ``medtransfer predict``.

One row per sample, in the split's order: ``id``; the label where the data has one (``label``, or
``label_<class>`` 0/1 columns for multilabel); ``prob_<class>`` for every class (binary: both classes); and
for tests ``loss`` (the sample's loss) and ``group`` (its patient, where the data knows patients).
Probabilities are written as float32 in their shortest exact form, so reading them back gives the very values
the metrics were computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MedTransferError
from ..stats.weighted import TestMetrics
from ..task import Task
from ..utils.atomic import atomic_path

TEST_PREDICTIONS = "test_predictions.csv"


class PredictionsFileError(MedTransferError, ValueError):
    """A predictions file that does not fit its task."""


@dataclass
class Predictions:
    """Predictions of one model on one split. ``probs``: ``N`` positive-class probabilities (binary) or
    ``N x C``; ``labels``: ``N`` class indices or ``N x C`` 0/1 (multilabel), or None."""

    task: Task
    ids: list[str]
    probs: np.ndarray
    labels: np.ndarray | None = None
    losses: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def reorder(self, order: np.ndarray) -> Predictions:
        """The same predictions with rows taken in ``order``."""
        def pick(array):
            return None if array is None else np.asarray(array)[order]

        return Predictions(self.task, [self.ids[i] for i in order], self.probs[order], pick(self.labels),
                           pick(self.losses), pick(self.groups))

    def frame(self) -> pd.DataFrame:
        names = list(self.task.class_names)
        columns: dict[str, object] = {"id": self.ids}
        if self.labels is not None:
            if self.task.kind == "multilabel":
                columns.update({f"label_{c}": self.labels[:, i].astype(np.int64)
                                for i, c in enumerate(names)})
            else:
                columns["label"] = self.labels.astype(np.int64)
        probs = self.probs.astype(np.float32)
        if self.task.kind == "binary":
            probs = np.stack([np.float32(1) - probs, probs], axis=1)
        columns.update({f"prob_{c}": probs[:, i] for i, c in enumerate(names)})
        if self.losses is not None:
            columns["loss"] = self.losses.astype(np.float32)
        if self.groups is not None:
            columns["group"] = [str(g) for g in self.groups]
        return pd.DataFrame(columns)

    def write_csv(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            self.frame().to_csv(tmp, index=False, lineterminator="\n")
        return Path(path)

    def metrics(self) -> TestMetrics:
        """The task's metrics of these predictions under any bootstrap weights."""
        if self.labels is None:
            raise PredictionsFileError("these predictions have no labels: no metric can be computed")
        return TestMetrics(self.task.kind, self.labels, self.probs, self.losses, list(self.task.class_names),
                           self.task.ordinal)


def read_predictions(path: str | Path, task: Task) -> Predictions:
    """Read a predictions file written for ``task`` (e.g. ``Task.from_dict(results["task"])``)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"id": str, "group": str}, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise PredictionsFileError(f"cannot read predictions file {path}: {err}") from None
    names = list(task.class_names)
    label_columns = [f"label_{c}" for c in names] if task.kind == "multilabel" else ["label"]
    prob_columns = [f"prob_{c}" for c in names]
    missing = [c for c in ["id", *prob_columns] if c not in frame.columns]
    if missing:
        raise PredictionsFileError(
            f"{path} has no column(s) {missing} (columns: {list(frame.columns)}); expected id, "
            f"prob_<class> for classes {names}: was it written for this task?"
        )
    try:
        probs = frame[prob_columns].to_numpy(dtype=np.float32)
        labels = None
        if all(c in frame.columns for c in label_columns):
            labels = frame[label_columns].to_numpy(dtype=np.int64)
            labels = labels if task.kind == "multilabel" else labels[:, 0]
        losses = frame["loss"].to_numpy(dtype=np.float32) if "loss" in frame.columns else None
    except ValueError as err:
        raise PredictionsFileError(f"{path}: a label, probability or loss is not a number ({err})") from None
    groups = frame["group"].to_numpy(dtype=object) if "group" in frame.columns else None
    if task.kind == "binary":
        probs = probs[:, 1]
    return Predictions(task, frame["id"].tolist(), probs, labels, losses, groups)
