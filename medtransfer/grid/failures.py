"""Runs that ended without a score to trust, so that no table scores, averages or ranks them.

A run the divergence guard stopped writes ``"status": "failed"`` and ``"failure": {"error", "kind", "epoch",
"step"}`` into its results.json (files without ``status`` are finished runs). Defensively, a run whose test
metrics or test predictions hold NaN or infinity is failed too, whatever its status says: trained to NaN, a
model can still get an AUROC of 0.46 from the probabilities it has left, which once stood in bold as the best.

The report lists failed runs apart; the launchers redo them, moving the failed attempt's folder aside first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

FAILED = "failed"
NONFINITE_METRICS = "non-finite metrics"
NONFINITE_PREDICTIONS = "non-finite predictions"
IMPOSSIBLE_METRICS = "impossible metrics"
# the values each metric can take (per-class ``auroc/<class>`` as ``auroc``); one outside them was not
# computed by medtransfer: results.json was edited by hand or damaged
METRIC_RANGES = {"auroc": (0.0, 1.0), "acc": (0.0, 1.0), "f1": (0.0, 1.0), "ece": (0.0, 1.0),
                 "kappa": (-1.0, 1.0), "loss": (0.0, math.inf)}
# a pretraining run's loss is its self-supervised objective, which need not be positive (BYOL's is a negative
# cosine similarity, -1 at best): it is checked for being finite only
PRETRAINING_RANGES = {name: bounds for name, bounds in METRIC_RANGES.items() if name != "loss"}


@dataclass(frozen=True)
class Failure:
    """Why a run has no score: ``kind`` (``diverged``, ``non-finite metrics``...), the error's first line and,
    where the run recorded them, the epoch and step it stopped at."""

    kind: str
    error: str
    epoch: int | None = None
    step: int | None = None

    def describe(self) -> str:
        """``diverged at epoch 3, step 120: loss is nan``."""
        at = ", ".join(f"{name} {value}" for name, value in (("epoch", self.epoch), ("step", self.step))
                       if value is not None)
        return f"{self.kind}{f' at {at}' if at else ''}: {self.error}"


def run_failure(results: dict, folder: Path, splits: tuple[str, ...] = ("test",),
                ranges: dict[str, tuple[float, float]] = METRIC_RANGES) -> Failure | None:
    """Why the run whose results.json (in ``folder``) is ``results`` failed, or None when it did not: its
    recorded failure, else a NaN or infinite metric of ``splits``, else one outside the values ``ranges``
    allows it, else a NaN or infinite test prediction."""
    return (recorded_failure(results) or nonfinite_metrics(results, splits)
            or impossible_metrics(results, splits, ranges) or nonfinite_predictions(results, folder))


def recorded_failure(results: dict) -> Failure | None:
    """The failure results.json records (``status: failed``), or None."""
    if results.get("status") != FAILED:
        return None
    failure = _mapping(results.get("failure"))
    error = str(failure.get("error") or "").strip()
    line = error.splitlines()[0] if error else "no error recorded"
    return Failure(str(failure.get("kind") or FAILED), line, _count(failure.get("epoch")),
                   _count(failure.get("step")))


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def nonfinite_metrics(results: dict, splits: tuple[str, ...]) -> Failure | None:
    """The first NaN or infinite metric of ``splits``, as a failure. A per-class AUROC may be NaN: that is how
    a class without positives or without negatives in the split is recorded (``auroc/<class>``)."""
    metrics = _mapping(results.get("metrics"))
    for split in splits:
        for name, value in _mapping(metrics.get(split)).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isfinite(value):
                continue
            if math.isnan(value) and name.startswith("auroc/"):
                continue
            return Failure(NONFINITE_METRICS, f"{split}/{name} is {value}")
    return None


def impossible_metrics(results: dict, splits: tuple[str, ...],
                       ranges: dict[str, tuple[float, float]] = METRIC_RANGES) -> Failure | None:
    """The first metric of ``splits`` outside the values it can take (an AUROC of 7.5; ``ranges``), as a
    failure: such a number was written by hand or damaged, and the mean it joined once stood in bold as the
    best."""
    metrics = _mapping(results.get("metrics"))
    for split in splits:
        for name, value in _mapping(metrics.get(split)).items():
            low, high = ranges.get(name.split("/")[0], (-math.inf, math.inf))
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
            if number and not low <= value <= high:  # NaN: a class without positives (nonfinite_metrics)
                return Failure(IMPOSSIBLE_METRICS, f"{split}/{name} is {value}, outside [{low}, {high}]: "
                                                   "results.json was edited or damaged")
    return None


def nonfinite_predictions(results: dict, folder: Path) -> Failure | None:
    """A failure when the run's test predictions file holds a NaN (written as an empty field) or infinite
    probability or loss; None also when there is no readable file (the report says so where it reads it)."""
    relative = _mapping(results.get("predictions")).get("test")
    if not isinstance(relative, str) or not relative:
        return None
    try:
        frame = pd.read_csv(folder / relative, usecols=lambda c: c.startswith("prob_") or c == "loss")
        values = frame.to_numpy(dtype=np.float64)
    except (OSError, ValueError):
        return None
    bad = ~np.isfinite(values).all(axis=1)
    if not bad.any():
        return None
    return Failure(NONFINITE_PREDICTIONS,
                   f"{relative}: {int(bad.sum())} of {len(frame)} test samples have a NaN or infinite "
                   "probability or loss")
