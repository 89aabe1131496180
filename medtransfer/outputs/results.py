"""results.json (docs/architecture.md, "A run's results"): what a run measured and everything needed to place
it in a table.

Besides ``metrics``, a run that tests records ``predictions.test`` (its per-sample predictions file,
relative to results.json) and ``intervals.test`` (95% bootstrap intervals of every test metric over the test
images, or patients; DeLong's for binary AUROC; see ``medtransfer.stats.intervals``). Files written before
these keys existed lack them and are still read."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..utils.atomic import atomic_path

SCHEMA = "medtransfer.results/1"


def build_results(
    verb: str,
    metrics: dict[str, dict[str, float]],
    task: dict,
    data: dict,
    model: dict,
    seed: int | None,
    config: dict,
    wall_time_s: float,
    extra: dict | None = None,
    checkpoint: str | None = None,
    predictions: dict[str, str] | None = None,
    intervals: dict[str, dict] | None = None,
) -> dict:
    """The results document. ``metrics`` maps a split (``train``/``val``/``test``) to its metric values;
    ``checkpoint`` is the file the last evaluation loaded (the best checkpoint after ``fit``);
    ``predictions`` and ``intervals`` map a split to its predictions file and its confidence intervals."""
    return {
        "schema": SCHEMA,
        "medtransfer_version": __version__,
        "verb": verb,
        "metrics": metrics,
        "intervals": intervals or {},
        "predictions": predictions or {},
        "task": task,
        "data": data,
        "model": model,
        "seed": seed,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "wall_time_s": round(wall_time_s, 3),
        "extra": extra or {},
        "config": config,
    }


def write_json_atomic(path: str | Path, document: dict) -> Path:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    with atomic_path(path) as tmp, tmp.open("w") as handle:
        json.dump(document, handle, indent=2, default=str, allow_nan=True)
        handle.write("\n")
    return Path(path)
