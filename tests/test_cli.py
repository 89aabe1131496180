"""The ``medtransfer`` CLI end to end on tiny synthetic runs: fit+test, results.json, TensorBoard pictures,
test and predict from a checkpoint, bad input failing before training, bf16-mixed."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medtransfer.callbacks import LearningRates, TaskCheckpoint, TestPredictionWriter, TrainingImageGrid
from medtransfer.cli import main
from medtransfer.run import config as run_config
from medtransfer.run.config import default_callbacks, instantiate, parse_run

REPO = Path(__file__).resolve().parents[1]
METRICS = {"loss", "auroc", "acc", "f1"}
CALIBRATION = {"ece", "brier"}  # test split only


def run_dirs(runs: Path, name: str = "tiny") -> list[Path]:
    return sorted((runs / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_cli) -> tuple[Path, list[str]]:
    """One tiny ``medtransfer fit`` (2 epochs, then a test of the best checkpoint): run dir and arguments."""
    runs = tmp_path_factory.mktemp("cli") / "runs"
    args = tiny_cli(runs, max_epochs=2)
    main(["fit", *args])
    return run_dirs(runs)[0], args


def test_fit_help_lists_data_model_and_trainer_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data ", "--model ", "--trainer.max_epochs", "--trainer.precision", "--trainer.strategy",
                   "--seed_everything", "--ckpt_path", "--test_after_fit"):
        assert option in out
    # LightningCLI's own optimizer and scheduler would silently replace each model's parameter groups
    assert "--optimizer" not in out and "--lr_scheduler" not in out


def test_fit_writes_results_json_with_the_test_metrics_of_the_best_checkpoint(fitted, capsys):
    run_dir, _ = fitted
    results = results_of(run_dir)
    assert results["schema"] == "medtransfer.results/1" and results["verb"] == "fit"
    assert set(results["metrics"]) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        assert set(results["metrics"][split]) == METRICS | (CALIBRATION if split == "test" else set())
        assert all(math.isfinite(v) for v in results["metrics"][split].values())
    assert Path(results["checkpoint"]).name.startswith("best-epoch=")
    assert Path(results["checkpoint"]).parent == run_dir / "checkpoints"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert results["task"]["kind"] == "binary" and results["task"]["class_names"] == ["normal", "lesion"]
    assert results["data"]["name"] == "SyntheticMedical"
    assert results["data"]["num_samples"] == {"train": 48, "val": 24, "test": 25}
    assert results["data"]["train_fraction"] == 1.0
    backbone = results["model"]["backbones"][0]
    assert results["model"]["name"] == "Finetune" and backbone["name"] == "test_resnet"
    assert len(backbone["fingerprint"]) == 16
    assert results["seed"] == 0
    assert results["config"]["trainer"]["max_epochs"] == 2
    assert results["wall_time_s"] > 0


def test_tensorboard_gets_training_images_roc_and_confusion_matrix(fitted):
    run_dir, _ = fitted
    images = set()
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        images |= set(accumulator.Tags()["images"])
    assert {"train/augmented_images", "test/roc", "test/confusion_matrix", "test/reliability"} <= images
    assert (run_dir / "test_roc.png").stat().st_size > 0
    assert (run_dir / "test_confusion_matrix.png").stat().st_size > 0


def test_the_test_after_fit_keeps_its_predictions_intervals_and_reliability_diagram(fitted):
    run_dir, _ = fitted
    results = results_of(run_dir)
    assert results["predictions"] == {"test": "test_predictions.csv"}
    with open(run_dir / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "label", "prob_normal", "prob_lesion", "loss", "group"]
    assert [row["id"] for row in rows] == [f"test-{i:06d}" for i in range(25)]
    assert [row["group"] for row in rows] == [f"test-patient{i // 2:05d}" for i in range(25)]  # 2 per patient
    labels = np.array([int(row["label"]) for row in rows])
    probs = np.array([float(row["prob_lesion"]) for row in rows])
    test = results["metrics"]["test"]
    assert pairwise_auroc(probs, labels) == pytest.approx(test["auroc"], abs=1e-6)
    assert np.mean([float(row["loss"]) for row in rows]) == pytest.approx(test["loss"], abs=1e-5)
    intervals = results["intervals"]["test"]
    assert (intervals["resamples"], intervals["unit"], intervals["units"], intervals["samples"]) == (
        1000, "patient", 13, 25)
    assert set(intervals["metrics"]) == set(test)
    for name, value in test.items():
        assert intervals["metrics"][name]["low"] <= value <= intervals["metrics"][name]["high"], name
    delong = intervals["delong"]["auroc"]
    assert delong["low"] <= test["auroc"] <= delong["high"] and delong["clustered"] is True
    assert (run_dir / "test_reliability.png").stat().st_size > 0


def test_test_verb_on_the_checkpoint_reproduces_the_fit_test_metrics(fitted):
    run_dir, args = fitted
    fit_results = results_of(run_dir)
    main(["test", *args, "--ckpt_path", fit_results["checkpoint"]])
    test_run = run_dirs(run_dir.parent.parent)[-1]
    assert test_run != run_dir
    results = results_of(test_run)
    assert results["verb"] == "test" and set(results["metrics"]) == {"test"}
    assert results["checkpoint"] == fit_results["checkpoint"]
    assert results["metrics"]["test"] == pytest.approx(fit_results["metrics"]["test"], abs=1e-6)


def pairwise_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC as the fraction of (positive, negative) pairs ranked correctly, ties counting one half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_predict_writes_one_csv_row_per_test_sample(fitted, capsys):
    run_dir, args = fitted
    fit_results = results_of(run_dir)
    main(["predict", *args, "--ckpt_path", fit_results["checkpoint"]])
    path = run_dirs(run_dir.parent.parent)[-1] / "predictions.csv"
    assert f"predictions: {path}" in capsys.readouterr().out
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "label", "prob_normal", "prob_lesion", "predicted"]
    assert [row["id"] for row in rows] == [f"test-{i:06d}" for i in range(25)]
    assert all(row["predicted"] == ("lesion" if float(row["prob_lesion"]) >= 0.5 else "normal")
               for row in rows)
    probs = np.array([[float(row["prob_normal"]), float(row["prob_lesion"])] for row in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    labels = np.array([int(row["label"]) for row in rows])
    expected = fit_results["metrics"]["test"]["auroc"]
    assert pairwise_auroc(probs[:, 1], labels) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("verb", ["test", "fit"])
def test_a_checkpoint_of_another_task_fails_before_running(fitted, tiny_cli, tmp_path, verb, capsys):
    run_dir, _ = fitted
    checkpoint = results_of(run_dir)["checkpoint"]
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main([verb, *tiny_cli(runs, kind="multilabel"), "--ckpt_path", checkpoint])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("medtransfer: error:") and "Traceback" not in message
    assert checkpoint in message
    assert "binary task with 2 classes" in message and "multilabel task with 4 classes" in message
    assert not list(runs.rglob("results.json")) and not list(runs.rglob("*.ckpt"))


def test_a_missing_checkpoint_file_is_named(tiny_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *tiny_cli(tmp_path / "runs"), "--ckpt_path", str(tmp_path / "nope.ckpt")])
    assert exit_info.value.code == 2
    assert "nope.ckpt" in capsys.readouterr().err


def write_yaml(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (["--model.init_args.lrr", "0.1"], "lrr"),
        (["--trainer.max_epochs", "three"], "trainer.max_epochs"),
        (["--data.init_args.num_train", "many"], "num_train"),
    ],
    ids=["unknown key", "wrong type", "wrong type in data"],
)
def test_bad_overrides_fail_before_training_naming_the_key(tiny_cli, tmp_path, capsys, extra, key):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_cli(runs), *extra])
    assert exit_info.value.code == 2
    assert key in capsys.readouterr().err
    assert not runs.exists()


def test_a_config_file_with_an_unknown_key_or_without_data_fails_naming_it(tmp_path, capsys):
    unknown = write_yaml(tmp_path / "unknown.yaml", "trainer:\n  max_epoch: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", unknown])
    assert exit_info.value.code == 2 and "max_epoch" in capsys.readouterr().err

    no_data = write_yaml(tmp_path / "no_data.yaml",
                         "model:\n  class_path: medtransfer.lightning_modules.Finetune\n"
                         "  init_args:\n    backbone: test_resnet\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", no_data])
    assert exit_info.value.code == 2 and "data" in capsys.readouterr().err.split("error:")[-1]


def test_test_after_fit_can_be_switched_off(tiny_cli, tmp_path):
    runs = tmp_path / "runs"
    main(["fit", *tiny_cli(runs), "--test_after_fit", "false"])
    results = results_of(run_dirs(runs)[0])
    assert set(results["metrics"]) == {"train", "val"}


def test_bf16_mixed_precision_trains_and_tests(tiny_cli, tmp_path):
    runs = tmp_path / "runs"
    main(["fit", *tiny_cli(runs, kind="multilabel"), "--trainer.precision", "bf16-mixed"])
    results = results_of(run_dirs(runs)[0])
    assert results["config"]["trainer"]["precision"] == "bf16-mixed"
    test = results["metrics"]["test"]
    classes = ("spot", "ring", "stripe", "patch")
    assert set(test) == METRICS | CALIBRATION | {f"{m}/{c}" for c in classes for m in ("auroc", "ece")}
    assert set(results["intervals"]["test"]["metrics"]) == set(test)  # every test metric has an interval
    assert math.isfinite(test["loss"]) and 0.0 <= test["auroc"] <= 1.0
    assert set(results["extra"]["decision"]["thresholds"]) == set(classes)  # chosen under bf16 autocast too


def test_print_config_shows_the_default_callbacks(tiny_cli, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_cli(tmp_path / "runs"), "--print_config"])
    assert exit_info.value.code == 0
    callbacks = yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]
    assert [c["class_path"] for c in callbacks] == [c["class_path"] for c in default_callbacks()]
    assert callbacks[0]["init_args"] == {"dirpath": None, "save_top_k": 1, "save_last": True, "monitor": None}


def test_a_config_replaces_the_default_callbacks_and_a_flag_adds_one(tiny_cli, tmp_path):
    config = write_yaml(tmp_path / "callbacks.yaml", """
trainer:
  callbacks:
  - class_path: medtransfer.callbacks.TaskCheckpoint
    init_args:
      save_top_k: 3
  - class_path: medtransfer.callbacks.LearningRates
  - class_path: medtransfer.callbacks.TestPredictionWriter
""")
    trainer = instantiate(parse_run("fit", [*tiny_cli(tmp_path / "runs"), "--config", config])).trainer
    ours = [c for c in trainer.callbacks if c.__module__ == "medtransfer.callbacks"]
    assert [type(c) for c in ours] == [LearningRates, TestPredictionWriter, TaskCheckpoint]  # checkpoint last
    assert trainer.checkpoint_callback.save_top_k == 3

    trainer = instantiate(parse_run("fit", [*tiny_cli(tmp_path / "runs"),
                                            "--trainer.callbacks+=EarlyStopping",
                                            "--trainer.callbacks.monitor", "val/auroc"])).trainer
    names = [type(c).__name__ for c in trainer.callbacks]
    assert TrainingImageGrid.__name__ in names and "EarlyStopping" in names


def test_fit_and_test_without_a_logger(tiny_cli, tmp_path):
    root = tmp_path / "root"
    args = [*tiny_cli(tmp_path / "runs", max_epochs=2), "--trainer.logger", "false",
            "--trainer.default_root_dir", str(root)]
    main(["fit", *args])
    fit_results = results_of(root)
    assert set(fit_results["metrics"]) == {"train", "val", "test"}
    assert Path(fit_results["checkpoint"]).parent == root / "checkpoints"
    assert (root / "checkpoints" / "last.ckpt").is_file() and (root / "test_roc.png").is_file()
    assert fit_results["predictions"] == {"test": "test_predictions.csv"}

    with pytest.raises(SystemExit) as refused:  # without a logger every run writes to default_root_dir
        main(["test", *args, "--ckpt_path", "last"])
    assert refused.value.code == 2 and results_of(root) == fit_results
    tested = tmp_path / "tested"
    main(["test", *args, "--trainer.default_root_dir", str(tested), "--ckpt_path",
          str(root / "checkpoints" / "last.ckpt")])
    test_results = results_of(tested)
    assert test_results["verb"] == "test"
    assert test_results["checkpoint"] == str(root / "checkpoints" / "last.ckpt")
    assert set(test_results["metrics"]["test"]) == set(fit_results["metrics"]["test"])


class RecordThreads(pl.Callback):
    """The intra-op CPU threads each training and test step started on."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.append(torch.get_num_threads())

    def on_test_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        self.seen.append(torch.get_num_threads())


@pytest.mark.parametrize(("cached", "threads_in_steps"), [(True, 1), (False, 2)])
def test_the_command_sets_the_steps_threads_and_gives_them_back(tiny_cli, tmp_path, monkeypatch, cached,
                                                                threads_in_steps):
    """A head on cached features steps on one CPU thread, the quickstart's finetune on every thread; the
    command puts the count back when it ends."""
    sweep = ["--config", str(REPO / "configs" / "model" / "linear_sweep.yaml"),
             "--model.init_args.features_dir", str(tmp_path / "features")]
    record = RecordThreads()
    fixed = run_config.fixed_callbacks
    monkeypatch.setattr(run_config, "fixed_callbacks", lambda: [*fixed(), record])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        main(["fit", *tiny_cli(tmp_path / "runs"), *(sweep if cached else []),
              "--model.init_args.backbone", "test_resnet", "--trainer.max_epochs", "1"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert record.seen and set(record.seen) == {threads_in_steps}
