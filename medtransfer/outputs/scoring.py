"""What ``medtransfer predict`` decides from the probabilities: the predicted class (multiclass: the most
probable; binary and multilabel: each class whose probability reaches its threshold), with the thresholds
fixed or chosen on labelled validation data (``medtransfer.outputs.thresholds``), written as
``predictions.csv``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..task import Task
from ..utils.atomic import atomic_path
from .predictions import Predictions
from .thresholds import DEFAULT_THRESHOLD, choose_thresholds

LABEL_SEPARATOR = "|"  # between the predicted labels of a multilabel row


@dataclass
class Decision:
    """Per-class thresholds (binary: the positive class's) and how they were set."""

    thresholds: np.ndarray
    rule: str = "fixed"
    validation_samples: int = 0
    undefined: list[str] = field(default_factory=list)  # classes without both outcomes in validation

    def describe(self, task: Task) -> dict:
        names = task.class_names[1:] if task.kind == "binary" else task.class_names
        return {"rule": self.rule, "thresholds": dict(zip(names, map(float, self.thresholds), strict=True)),
                "validation_samples": self.validation_samples, "left_at_0.5": self.undefined}


def predicted_classes(task: Task, probs: np.ndarray, decision: Decision | None) -> list[str]:
    """The predicted class name of each row (multilabel: the names over threshold joined by ``|``, empty
    when none)."""
    if task.kind == "multiclass":
        return [task.class_names[i] for i in np.argmax(probs, axis=1)]
    thresholds = decision.thresholds if decision is not None else np.full(1, DEFAULT_THRESHOLD)
    if task.kind == "binary":
        return [task.class_names[int(p >= thresholds[0])] for p in probs]
    over = probs >= thresholds.reshape(1, -1)
    return [LABEL_SEPARATOR.join(name for name, on in zip(task.class_names, row, strict=True) if on)
            for row in over]


def decide(trainer, pl_module, setting: float | str, gather) -> Decision | None:
    """The decision of a predict run: None for multiclass, ``setting`` for every class when it is a number,
    else the rule's thresholds on the validation split the trainer's datamodule serves. Collective under DDP:
    each rank scores its shard of the validation split, and ``gather(trainer, parts)`` joins them."""
    task: Task = pl_module.task
    if task.kind == "multiclass":
        return None
    count = 1 if task.kind == "binary" else task.num_classes
    if not isinstance(setting, str):
        return Decision(np.full(count, float(setting)))
    probs, labels = joined_outputs(gather(trainer, validation_parts(trainer, pl_module)))
    return chosen_decision(task, probs, labels, setting)


def chosen_decision(task: Task, probs: np.ndarray, labels: np.ndarray, rule: str) -> Decision:
    """The ``rule``'s per-class thresholds on labelled validation ``probs``."""
    thresholds, undefined = choose_thresholds(task.kind, labels, probs, rule)
    names = task.class_names[1:] if task.kind == "binary" else task.class_names
    return Decision(thresholds, rule, len(labels), [names[i] for i in undefined])


def validation_parts(trainer, pl_module) -> list[tuple[np.ndarray, np.ndarray]]:
    """This rank's (probabilities, labels) per batch of the datamodule's validation split (its shard under
    DDP), from the model's ``predict_step`` as the trainer's precision runs it."""
    datamodule = trainer.datamodule
    parts = []
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        for index, batch in enumerate(datamodule.val_dataloader()):
            if "label" not in batch:
                raise ValueError("the validation split has no labels")
            batch = datamodule.transfer_batch_to_device(batch, pl_module.device, 0)
            probs = pl_module.predict_step(batch, index)["probabilities"]
            parts.append((probs.float().cpu().numpy(), batch["label"].cpu().numpy()))
    return parts


def joined_outputs(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities and labels of every rank's validation parts, joined."""
    if not parts:
        raise ValueError("the validation split that chooses the thresholds is empty")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def prediction_frame(rows: Predictions, decision: Decision | None, paths: dict[str, str] | None,
                     explanations: dict[str, str] | None = None) -> pd.DataFrame:
    """``id``, ``path`` (new images), the label where known, ``prob_<class>`` per class, ``predicted``, and
    ``explanation`` (each image's map, relative to the CSV) with ``predict --explain``."""
    frame = rows.frame()
    if paths:
        frame.insert(1, "path", [paths[i] for i in rows.ids])
    frame["predicted"] = predicted_classes(rows.task, rows.probs, decision)
    if explanations:
        frame["explanation"] = [explanations[i] for i in rows.ids]
    return frame


def write_predictions(rows: Predictions, path: Path, decision: Decision | None,
                      paths: dict[str, str] | None, explanations: dict[str, str] | None = None) -> Path:
    """predictions.csv, and beside it ``<name>_thresholds.json`` when thresholds were chosen on
    validation data."""
    with atomic_path(path) as tmp:
        prediction_frame(rows, decision, paths, explanations).to_csv(tmp, index=False, lineterminator="\n")
    if decision is not None and decision.rule != "fixed":
        with atomic_path(path.with_name(f"{path.stem}_thresholds.json")) as tmp:
            Path(tmp).write_text(json.dumps(decision.describe(rows.task), indent=2) + "\n")
    return path
