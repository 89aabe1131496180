"""A run's scores are of the whole run its config describes (``run.whole_run``): Lightning's debugging
settings and validation that never runs are refused when the config is read; a fit records what ended its
training and which checkpoint it tested, and says so when that is not what the config asked."""

from __future__ import annotations

import json
import logging

import pytest

from medtransfer import run
from medtransfer.cli import main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.datamodules.errors import ClassSetError
from medtransfer.errors import ConfigValueError
from medtransfer.lightning_modules import Finetune
from medtransfer.run.whole_run import check_both_classes_scored, check_whole_splits, cut_short_warnings
from medtransfer.task import Task

REFUSED = {
    "fast_dev_run": ("fit", {"fast_dev_run": True}, "trainer.fast_dev_run=True: Lightning's debugging run"),
    "fast_dev_run of 3 batches": ("test", {"fast_dev_run": 3}, "trainer.fast_dev_run=3"),
    "overfit_batches": ("fit", {"overfit_batches": 0.1}, "trainer.overfit_batches=0.1"),
    "half the test split": ("fit", {"limit_test_batches": 0.5}, "fit would score part of the test split"),
    "two test batches": ("test", {"limit_test_batches": 2.0}, "test would score part of the test split"),
    "part of the validation split": ("validate", {"limit_val_batches": 0.3},
                                     "validate would score part of the val split"),
    "part of the new images": ("predict", {"limit_predict_batches": 0.5},
                               "predict would score part of the predict split"),
    "no validation batch": ("fit", {"limit_val_batches": 0}, "trainer.limit_val_batches=0: fit would never"),
    "validation after the last epoch": ("fit", {"check_val_every_n_epoch": 5, "max_epochs": 4},
                                        "check_val_every_n_epoch=5 with trainer.max_epochs=4"),
}
ACCEPTED = {
    "the defaults": ("fit", {"limit_test_batches": 1.0, "limit_val_batches": 1.0, "fast_dev_run": False,
                             "overfit_batches": 0.0, "check_val_every_n_epoch": 1, "max_epochs": 1}),
    "part of validation while fitting (choosing on it)": ("fit", {"limit_val_batches": 0.25}),
    "validation in the last epoch": ("fit", {"check_val_every_n_epoch": 4, "max_epochs": 4}),
    "no epoch limit": ("fit", {"check_val_every_n_epoch": 5, "max_epochs": -1}),
    "validation by steps": ("fit", {"check_val_every_n_epoch": None, "val_check_interval": 25,
                                    "max_epochs": 1}),
    "a test that trains nothing": ("test", {"overfit_batches": 1.0, "limit_train_batches": 0.1}),
}


@pytest.mark.parametrize("verb, trainer, says", REFUSED.values(), ids=REFUSED.keys())
def test_settings_that_score_part_of_a_split_or_validate_nothing_are_refused(verb, trainer, says):
    with pytest.raises(ConfigValueError, match=says):
        check_whole_splits(trainer, verb)


@pytest.mark.parametrize("verb, trainer", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_settings_that_keep_the_scored_split_whole_are_accepted(verb, trainer):
    check_whole_splits(trainer, verb)


def test_a_fit_records_its_epochs_what_ended_it_and_the_checkpoint_it_tested(tiny_cli, tmp_path, caplog):
    runs = tmp_path / "runs"
    with caplog.at_level(logging.WARNING):
        main(["fit", *tiny_cli(runs, max_epochs=2)])
    (results,) = (runs / "tiny").glob("version_*/results.json")
    assert json.loads(results.read_text())["training"] == {
        "epochs": 2, "max_epochs": 2, "steps": 6, "ended_by": "max_epochs",
        "tested_checkpoint": "best val/auroc"}
    assert not [r for r in caplog.records if r.name == "medtransfer.run.session"]


def test_a_fit_that_tests_its_last_weights_says_why(tiny_cli, tmp_path, caplog):
    """``max_steps`` reached before the first validation: nothing chose a best checkpoint."""
    runs = tmp_path / "runs"
    with caplog.at_level(logging.WARNING):
        main(["fit", *tiny_cli(runs, max_epochs=2), "--trainer.max_steps", "1"])
    (results,) = (runs / "tiny").glob("version_*/results.json")
    training = json.loads(results.read_text())["training"]
    assert training["ended_by"] == "max_steps" and training["steps"] == 1
    assert training["tested_checkpoint"] == "last: no validation produced val/auroc"
    said = [r.getMessage() for r in caplog.records if r.name == "medtransfer.run.session"]
    assert said == ["tested the last checkpoint, not the best: no validation produced val/auroc (validation "
                    "ran too late or never; results.json's training.tested_checkpoint)"]


def test_a_time_limit_before_the_last_epoch_is_said_and_a_finished_run_is_not():
    cut = {"epochs": 3, "max_epochs": 100, "steps": 90, "ended_by": "max_time", "tested_checkpoint": "best x"}
    assert cut_short_warnings(cut) == [
        "trainer.max_time ended training after 3 of 100 epochs: the scores are of a model trained for less "
        "than the config asks (results.json's training.ended_by)"]
    assert cut_short_warnings(cut | {"ended_by": "early_stopping"}) == []
    assert cut_short_warnings(cut | {"ended_by": "max_time", "max_epochs": -1}) == []


@pytest.mark.parametrize("setting, says", [
    ({"limit_test_batches": 1}, "trainer.limit_test_batches=1: fit would score part of the test split"),
    ({"fast_dev_run": True}, "trainer.fast_dev_run=True"),
    ({"limit_val_batches": 0}, "trainer.limit_val_batches=0: fit would never validate"),
], ids=["one test batch (an int counts batches)", "fast_dev_run", "no validation"])
def test_a_trainer_built_in_python_is_checked_before_its_run_starts(tmp_path, setting, says):
    data = SyntheticMedical(num_train=16, num_val=8, num_test=8, native_size=32, image_size=32, batch_size=8)
    model = Finetune(backbone="test_resnet", task=data.task)
    trainer = run.default_trainer("python", save_dir=tmp_path / "runs", max_epochs=1, accelerator="cpu",
                                  devices=1, enable_progress_bar=False, **setting)
    with pytest.raises(ConfigValueError, match=says):
        run.fit(model=model, data=data, trainer=trainer)
    assert not (tmp_path / "runs").exists()


class Counted:
    """A datamodule as ``check_both_classes_scored`` reads it: its task and its images per class and split."""

    def __init__(self, kind: str, val: dict, test: dict) -> None:
        names = tuple(val)
        self.task, self.name = Task(kind, names), "Counted"
        self.counts = {"train": dict.fromkeys(names, 5), "val": val, "test": test}

    def class_counts(self) -> dict:
        return self.counts


BOTH = {"normal": 3, "lesion": 2}


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_binary_fit_needs_both_classes_in_validation_and_test(split):
    splits = {"val": BOTH, "test": BOTH} | {split: {"normal": 4, "lesion": 0}}
    with pytest.raises(ClassSetError, match=f"Counted: the {split} split has no 'lesion' image \\(normal 4, "
                                            "lesion 0\\): AUROC"):
        check_both_classes_scored(Counted("binary", **splits), "fit")


def test_scoring_one_class_on_purpose_and_other_tasks_are_left_to_their_metrics():
    one_class = {"normal": 4, "lesion": 0}
    for verb in ("test", "validate", "predict"):
        check_both_classes_scored(Counted("binary", val=one_class, test=one_class), verb)
    three = Counted("multiclass", val={"a": 2, "b": 0, "c": 1}, test={"a": 1, "b": 1, "c": 1})
    check_both_classes_scored(three, "fit")
    check_both_classes_scored(Counted("binary", val={"normal": 0, "lesion": 0}, test=BOTH), "fit")  # no val
