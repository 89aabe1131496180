"""Per-sample prediction files: written and read back exactly, refused when they do not fit the task, and
put in the test split's order with patients by the test callback."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.callbacks import in_split_order
from medtransfer.datamodules.sources import ArraySource
from medtransfer.outputs.predictions import Predictions, PredictionsFileError, read_predictions
from medtransfer.task import Task

BINARY = Task("binary", ("normal", "lesion"))
GRADES = Task("multiclass", ("g0", "g1", "g2"), ordinal=True, primary_metric="kappa")
FINDINGS = Task("multilabel", ("spot", "ring"))


@pytest.mark.parametrize("task", [BINARY, GRADES, FINDINGS], ids=lambda t: t.kind)
def test_written_predictions_read_back_exactly(tmp_path, task):
    rng = np.random.default_rng(0)
    n = 50
    if task.kind == "binary":
        probs, labels = rng.random(n).astype(np.float32), rng.integers(0, 2, n)
    elif task.kind == "multiclass":
        probs, labels = rng.dirichlet(np.ones(3), n).astype(np.float32), rng.integers(0, 3, n)
    else:
        probs, labels = rng.random((n, 2)).astype(np.float32), rng.integers(0, 2, (n, 2))
    ids = ["NA", "001", *[f"img{i}" for i in range(n - 2)]]  # ids that pandas would otherwise mangle
    losses, groups = rng.random(n).astype(np.float32), np.repeat(["p1", "p2"], 25)
    written = Predictions(task, ids, probs, labels, losses, groups)
    path = written.write_csv(tmp_path / "test_predictions.csv")
    back = read_predictions(path, task)
    assert back.ids == ids
    assert back.probs.dtype == np.float32 and (back.probs == probs).all()  # bit for bit
    assert (back.labels == labels).all() and (back.losses == written.losses).all()
    assert back.groups.tolist() == written.groups.tolist()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_a_file_for_another_task_is_refused_naming_the_columns(tmp_path):
    path = Predictions(BINARY, ["a", "b"], np.array([0.2, 0.9], np.float32), np.array([0, 1])).write_csv(
        tmp_path / "p.csv")
    with pytest.raises(PredictionsFileError, match=r"p\.csv has no column\(s\) \['prob_g0'"):
        read_predictions(path, GRADES)
    (tmp_path / "bad.csv").write_text("id,label,prob_normal,prob_lesion\na,1,0.2,oops\n")
    with pytest.raises(PredictionsFileError, match="not a number"):
        read_predictions(tmp_path / "bad.csv", BINARY)


class FakeDataModule:
    def __init__(self, groups):
        ids = [f"s{i}" for i in range(5)]
        self.source = ArraySource(np.zeros((5, 2, 2), np.uint8), np.zeros(5, np.int64), ids, groups)

    def split_source(self, split):
        return self.source


def test_test_predictions_follow_the_split_order_with_patients_each_sample_once():
    # as gathered from two ranks (interleaved), with one padded duplicate
    ids = ["s0", "s2", "s4", "s1", "s3", "s0"]
    probs = np.array([0, 2, 4, 1, 3, 0], np.float32) / 10
    gathered = Predictions(BINARY, ids, probs, np.array([0, 0, 0, 1, 1, 0]))
    with pytest.warns(UserWarning, match="1 test samples came twice"):
        ordered = in_split_order(gathered, FakeDataModule(np.array(["a", "a", "b", "b", "c"])))
    assert ordered.ids == ["s0", "s1", "s2", "s3", "s4"]
    assert ordered.probs.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert ordered.labels.tolist() == [0, 1, 0, 1, 0]
    assert ordered.groups.tolist() == ["a", "a", "b", "b", "c"]
    # without a split to follow: sorted by id, no patients
    alone = in_split_order(gathered.reorder(np.arange(5)), None)
    assert alone.ids == ["s0", "s1", "s2", "s3", "s4"] and alone.groups is None
