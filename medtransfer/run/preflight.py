"""The pre-flight summary: what a run is about to do, printed and written to ``preflight.json`` in its folder
before any training, so a task that is not the one the user meant (a class too many, a class without
training images, other weights than intended) shows before hours are spent, and results.json records it."""

from __future__ import annotations

import logging
from pathlib import Path

from ..outputs.results import write_json_atomic

log = logging.getLogger(__name__)
PREFLIGHT_FILE = "preflight.json"


def preflight_summary(verb: str, model, data) -> dict:
    """Task kind, classes with their counts per split (the label fraction's too), image size, model and its
    backbones' weights fingerprints. Reading the counts builds the data's splits: a class set that is
    almost certainly a mistake stops the run here (the datamodules' checks)."""
    task = getattr(data, "task", None)
    counts = data.class_counts() if task is not None and hasattr(data, "class_counts") else None
    return {
        "verb": verb,
        "data": getattr(data, "name", type(data).__name__),
        "task": None if task is None else task.to_dict(),
        "class_counts": counts,
        "train_fraction": getattr(data, "train_fraction", None),
        "image_size": getattr(data, "image_size", None),
        "model": type(model).__name__,
        "backbones": [{key: b.get(key) for key in ("name", "fingerprint", "embed_dim")}
                      for b in model.describe().get("backbones", [])],
    }


def summary_lines(summary: dict) -> list[str]:
    """The summary as the few lines the command prints."""
    lines = []
    task = summary["task"]
    if task is not None:
        lines.append(f"{summary['data']}: {task['kind']} task, {task['num_classes']} classes "
                     f"{task['class_names']}, ranked by {task['primary_metric']}")
    multilabel = task is not None and task["kind"] == "multilabel"
    for split, per_class in (summary["class_counts"] or {}).items():
        counts = ", ".join(f"{name} {count}" for name, count in per_class.items())
        total = "positives per finding" if multilabel else f"{sum(per_class.values())} samples"
        lines.append(f"  {split}: {total} ({counts})")
    size = summary["image_size"]
    backbones = ", ".join(f"{b['name']} (weights {str(b['fingerprint'])[:12]})" for b in summary["backbones"])
    lines.append(f"{summary['model']}" + (f" on {backbones}" if backbones else "")
                 + (f", images at {size} px" if size else ""))
    return lines


def report_preflight(summary: dict, folder: str | Path) -> Path:
    """Log the summary and write it to ``<folder>/preflight.json`` (rank zero only)."""
    for line in summary_lines(summary):
        log.info("pre-flight: %s", line)
    return write_json_atomic(Path(folder) / PREFLIGHT_FILE, summary)
