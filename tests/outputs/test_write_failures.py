"""Outputs that cannot be written end in one named error (``OutputWriteError``: the file, the reason, what to
do), never a traceback: predictions.csv, test_predictions.csv, the thresholds file and explanation PNGs,
under a file where a folder should be, with a name too long, in a read-only folder and on a full disk."""

from __future__ import annotations

import errno
from contextlib import nullcontext

import numpy as np
import pytest

from medtransfer.errors import MedTransferError
from medtransfer.explain.figures import save_png
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.scoring import Decision, write_predictions
from medtransfer.task import Task
from medtransfer.utils.atomic import OutputWriteError, atomic_path, check_writable
from tests.faults.harness import failing_writes, read_only

TASK = Task("binary", ("normal", "lesion"))
ROWS = Predictions(TASK, ["a.png", "b.png"], np.array([0.2, 0.9], dtype=np.float32))


def write_predictions_csv(path):
    write_predictions(ROWS, path, Decision(np.array([0.5])), {"a.png": "new/a.png", "b.png": "new/b.png"})


def write_test_predictions(path):
    ROWS.write_csv(path)


def write_explanation(path):
    save_png(np.zeros((4, 4, 3), dtype=np.uint8), path)


WRITERS = {"predictions.csv": write_predictions_csv, "test_predictions.csv": write_test_predictions,
           "explanation.png": write_explanation}


def blocked(tmp_path, name):
    """Each refusal: the path to write, the context that refuses it, and what the message must say."""
    (tmp_path / "file.txt").write_text("a file, not a folder")
    (tmp_path / "out").mkdir()
    return {
        "file as parent": (tmp_path / "file.txt" / name, nullcontext(),
                           f"{tmp_path / 'file.txt'} is a file, not a folder"),
        "file as grandparent": (tmp_path / "file.txt" / "run" / name, nullcontext(),
                                f"{tmp_path / 'file.txt'} is a file, not a folder"),
        "name too long": (tmp_path / f"{'p' * 300}{name}", nullcontext(), "File name too long.*shorter"),
        "read-only": (tmp_path / "out" / name, read_only(tmp_path / "out"),
                      "read-only|no permission"),
        "disk full": (tmp_path / "out" / name, failing_writes(errno.ENOSPC, tmp_path / "out"),
                      "the disk is full"),
    }


@pytest.mark.parametrize("refusal", ["file as parent", "file as grandparent", "name too long", "read-only",
                                     "disk full"])
@pytest.mark.parametrize("output", sorted(WRITERS))
def test_an_output_that_cannot_be_written_is_a_named_error(tmp_path, output, refusal):
    path, refused, says = blocked(tmp_path, output)[refusal]
    with refused, pytest.raises(OutputWriteError, match=says) as failure:
        WRITERS[output](path)
    assert isinstance(failure.value, MedTransferError)  # printed as one line, exit status 2
    assert str(failure.value).startswith(f"cannot write {path}: ")
    assert not [p for p in (tmp_path / "out").iterdir()]  # no temporary file left behind


def test_the_thresholds_file_beside_the_predictions_is_named_when_refused(tmp_path):
    path = tmp_path / f"{'p' * 240}.csv"  # fits; "<stem>_thresholds.json" does not
    decision = Decision(np.array([0.4]), rule="f1", validation_samples=8)
    with pytest.raises(OutputWriteError, match=r"_thresholds\.json: File name too long"):
        write_predictions(ROWS, path, decision, None)


def test_a_name_near_the_limit_is_written_through_its_temporary_file(tmp_path):
    """The temporary file's name is the target's plus 38 characters: cut short, so that a 250-character name,
    which the file system takes, is written."""
    path = tmp_path / f"{'p' * 246}.csv"
    write_test_predictions(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_check_writable_refuses_a_folder_in_the_way_and_leaves_nothing(tmp_path):
    (tmp_path / "model.onnx").mkdir()
    with pytest.raises(OutputWriteError, match="Is a directory; a folder of that name is in the way"):
        check_writable(tmp_path / "model.onnx")
    check_writable(tmp_path / "new" / "model.onnx")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.onnx", "new"]


def test_an_error_inside_the_block_keeps_its_type_and_the_old_file(tmp_path):
    target = tmp_path / "predictions.csv"
    target.write_text("old")
    with pytest.raises(ValueError, match="not a write"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("not a write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
