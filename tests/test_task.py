"""The task contract: validation, serialisation, and the mismatch sentence."""

from __future__ import annotations

import pytest

from medtransfer.task import Task, TaskMismatchError

BINARY = Task("binary", ("normal", "lesion"))
GRADES = Task("multiclass", ("g0", "g1", "g2"), ordinal=True, primary_metric="kappa")
FINDINGS = Task("multilabel", ("spot", "ring", "stripe", "patch"))


def test_outputs_and_round_trip():
    assert (BINARY.num_classes, BINARY.num_outputs) == (2, 1)
    assert (GRADES.num_classes, GRADES.num_outputs) == (3, 3)
    for task in (BINARY, GRADES, FINDINGS):
        assert Task.from_dict(task.to_dict()) == task
    assert FINDINGS.to_dict()["num_classes"] == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "regression", "class_names": ("a", "b")}, "task kind"),
    ({"kind": "binary", "class_names": ("a", "b", "c")}, "2 class names"),
    ({"kind": "multilabel", "class_names": ("a",)}, "at least 2"),
    ({"kind": "binary", "class_names": ("a", "b"), "primary_metric": "kappa"}, "ordinal multiclass"),
    ({"kind": "multilabel", "class_names": ("a", "b"), "ordinal": True}, "only multiclass"),
    ({"kind": "binary", "class_names": ("a", "b"), "primary_metric": "f1"}, "primary_metric"),
])
def test_invalid_tasks_are_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


def test_check_matches_names_both_tasks():
    BINARY.check_matches(Task("binary", ("normal", "lesion")))
    with pytest.raises(TaskMismatchError, match=r"binary task with 2 classes .* multilabel task with 4"):
        BINARY.check_matches(FINDINGS, what="the data")
    with pytest.raises(TaskMismatchError, match="pneumonia"):  # same kind and count, other classes
        BINARY.check_matches(Task("binary", ("normal", "pneumonia")))
