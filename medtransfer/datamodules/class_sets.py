"""Class sets that silently change the task (docs/datasets.md, "Classes").

A class set read off the labels found (a CSV's label column, an ImageFolder's class folders) makes the task:
one class spelled two ways becomes two classes, a class without training images becomes a class no model can
learn that still counts in the metrics, and ordinal grades sorted as text are ranked in the wrong order. Each
gives plausible numbers for another task than the one meant, so such class sets are refused. A class set that
is declared (a published dataset's classes, or the user's ``class_names``) is kept as declared, with a
warning for a class without training images.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

import numpy as np

from ..task import SPLITS, Task
from .config_values import config_key
from .errors import ClassSetError
from .sources import Source

log = logging.getLogger(__name__)

# a number as spreadsheets and pandas write one: 1, -1, 01, 1.0, .5, 1e3 (never "inf", "nan" or "True")
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def is_number_text(text: str) -> bool:
    return NUMBER.fullmatch(text.strip()) is not None


def label_key(text: str) -> str:
    """What a label says once case, surrounding spaces and number format are set aside: two spellings with
    one key name one class."""
    stripped = text.strip()
    return repr(float(stripped)) if is_number_text(stripped) else stripped.casefold()


def respelled(spellings: Iterable[str]) -> list[str]:
    """The first group of two or more distinct spellings (in order of appearance) that name one class by
    ``label_key``; [] when every class is written one way."""
    groups: dict[str, list[str]] = {}
    for spelling in dict.fromkeys(spellings):
        groups.setdefault(label_key(spelling), []).append(spelling)
    return next((group for group in groups.values() if len(group) > 1), [])


def how_spellings_differ(group: list[str]) -> str:
    """What sets the spellings of one class apart, as the end of a sentence naming them."""
    if len({spelling.strip() for spelling in group}) == 1:
        return "differ only in surrounding spaces"
    if is_number_text(group[0]):
        return "are one number written differently"
    if len({spelling.casefold() for spelling in group}) == 1:
        return "differ only in case"
    return "differ only in case and surrounding spaces"


def check_grade_order(dataset: str, classes: list[str], source: str) -> None:
    """Ordinal grades read off the files are in grade order only when they are numbers in numeric order:
    names sort alphabetically (``mild, moderate, none, severe``) and ``10`` sorts before ``2``, so kappa would
    rank models on shuffled grades."""
    if all(is_number_text(name) for name in classes) and classes == sorted(classes, key=float):
        return
    raise ClassSetError(
        f"{dataset}: {config_key('ordinal')} is true, but the grades read off {source} come in text order "
        f"{classes}, which need not be their grade order: list them in grade order in "
        f"{config_key('class_names')}"
    )


def class_counts(task: Task, labels: np.ndarray) -> dict[str, int]:
    """Samples per class name (positives per finding for multilabel) among ``labels``."""
    labels = np.asarray(labels)
    if task.kind == "multilabel":
        counts = labels.reshape(-1, task.num_classes).sum(axis=0)
    else:
        counts = np.bincount(labels.astype(np.int64), minlength=task.num_classes)
    return {name: int(count) for name, count in zip(task.class_names, counts, strict=True)}


def check_training_classes(
    dataset: str, task: Task, sources: Mapping[str, Source], declared_by: str | None, fix: str
) -> None:
    """Every class has a training image (every finding a positive training image), once the splits are built
    (official and carved): otherwise a ClassSetError when the class set was read off the labels
    (``declared_by`` None), saying how to ``fix`` it, or a warning naming who declared the classes."""
    counts = {split: class_counts(task, sources[split].labels) for split in SPLITS}
    absent = [name for name in task.class_names if counts["train"][name] == 0]
    if not absent:
        return
    problem = describe_untrained(task.kind == "multilabel", absent, counts)
    if declared_by is None:
        raise ClassSetError(f"{dataset}: {problem}; {fix}")
    log.warning("%s: %s (kept: %s declares the classes)", dataset, problem, declared_by)


def describe_untrained(multilabel: bool, absent: list[str], counts: Mapping[str, Mapping[str, int]]) -> str:
    """``class 'cyst' (train 0, val 0, test 3) has no training images: ...`` for the ``absent`` classes."""
    unit = "training positive images" if multilabel else "training images"
    listed = ", ".join(f"{name!r} ({', '.join(f'{s} {counts[s][name]}' for s in SPLITS)})" for name in absent)
    if len(absent) == 1:
        what = "finding" if multilabel else "class"
        return f"{what} {listed} has no {unit}: a model cannot learn it, yet it counts in the metrics"
    what = "findings" if multilabel else "classes"
    return f"{what} {listed} have no {unit}: a model cannot learn them, yet they count in the metrics"


def warn_findings_left_out(
    dataset: str, task: Task | None, labels: np.ndarray, kept: np.ndarray, subset: str
) -> None:
    """Warn when the label fraction (rows ``kept`` of the training ``labels``) holds no positive of a finding
    that the training split has. Only multilabel fractions can: single-label fractions keep every class. A
    warning, not a refusal: at small fractions rare findings have few positives in all, and leaving them out
    is what such a fraction measures; ``MedicalDataModule.class_counts`` gives the numbers to a pre-flight
    check."""
    if task is None or task.kind != "multilabel":
        return
    in_full, in_used = class_counts(task, labels), class_counts(task, labels[kept])
    lost = [f"{name!r} ({in_full[name]} in the whole split)" for name in task.class_names
            if in_full[name] and not in_used[name]]
    if lost:
        log.warning("%s: %s holds no positive image of finding(s) %s: a model trained on it cannot learn "
                    "them, yet they count in the mean AUROC", dataset, subset, ", ".join(lost))
