"""The default callbacks on Lightning's public hooks: ``TaskCheckpoint`` keeps ``last.ckpt`` current under
every validation schedule, and ``LearningRates`` copes with a trainer without a logger."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from medtransfer.callbacks import LearningRates, TaskCheckpoint, check_monitor
from medtransfer.errors import ConfigValueError
from medtransfer.task import Task

BATCHES_PER_EPOCH = 4


class WorseningModel(pl.LightningModule):
    """Trains a linear layer; its validation ``val/score`` gets worse every validation, so only the first
    checkpoint is ever the best and Lightning's ``save_last`` alone would never refresh ``last.ckpt``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.task = SimpleNamespace(primary_metric="score")
        self.validations = 0

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/score", 1.0 / (1 + self.validations))

    def on_validation_epoch_end(self) -> None:
        self.validations += 0 if self.trainer.sanity_checking else 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(4 * BATCHES_PER_EPOCH, 4)), batch_size=4)


class LastCheckpointSpy(Callback):
    """The global step stored in ``last.ckpt`` when each training batch starts."""

    def __init__(self, path) -> None:
        self.path = path
        self.steps: list[tuple[int, int | None]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        step = torch.load(self.path, weights_only=True)["global_step"] if self.path.exists() else None
        self.steps.append((trainer.global_step, step))


SCHEDULES = {
    # name: (trainer arguments, steps after which last.ckpt must have been written, epoch of the best)
    "validation every epoch": ({}, {4, 8, 12}, 0),
    "validation every 2nd epoch": ({"check_val_every_n_epoch": 2}, {4, 8, 12}, 1),
    "validation twice an epoch": ({"val_check_interval": 0.5}, {2, 4, 6, 8, 10, 12}, 0),
    "no validation": ({"limit_val_batches": 0}, {4, 8, 12}, None),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_last_checkpoint_follows_every_epoch_although_the_metric_never_improves(schedule, tmp_path):
    trainer_args, written_at, best_epoch = SCHEDULES[schedule]
    checkpoint = TaskCheckpoint(dirpath=tmp_path)
    spy = LastCheckpointSpy(tmp_path / "last.ckpt")
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoint, spy], num_sanity_val_steps=0,
                         **trainer_args)
    trainer.fit(WorseningModel(), train_dataloaders=loader(),
                val_dataloaders=None if schedule == "no validation" else loader())

    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 12)
    assert checkpoint.last_model_path == str(tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.glob("last*.ckpt")) == ["last.ckpt"]
    # when each batch starts, last.ckpt holds the latest step of written_at (the file is rewritten in place)
    for step, stored in spy.steps:
        expected = max((s for s in written_at if s <= step), default=None)
        assert stored == expected, (step, stored)
    if best_epoch is not None:
        assert checkpoint.monitor == "val/score"
        assert checkpoint.best_model_path.endswith(f"best-epoch={best_epoch:03d}.ckpt")
        state = next(v for k, v in last["callbacks"].items() if k.startswith("TaskCheckpoint"))
        assert state["best_model_path"] == checkpoint.best_model_path  # the best as of that epoch


def test_last_checkpoint_can_be_switched_off(tmp_path):
    checkpoint = TaskCheckpoint(dirpath=tmp_path, save_last=False)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoint], num_sanity_val_steps=0)
    trainer.fit(WorseningModel(), train_dataloaders=loader(), val_dataloaders=loader())
    assert [p.name for p in tmp_path.iterdir()] == ["best-epoch=000.ckpt"]
    assert checkpoint.last_model_path == ""


def test_a_fresh_run_never_overwrites_the_last_checkpoint_another_run_left(tmp_path):
    (tmp_path / "last.ckpt").write_bytes(b"an earlier run's")
    checkpoint = TaskCheckpoint(dirpath=tmp_path)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoint], num_sanity_val_steps=0)
    trainer.fit(WorseningModel(), train_dataloaders=loader(), val_dataloaders=loader())
    assert (tmp_path / "last.ckpt").read_bytes() == b"an earlier run's"
    assert checkpoint.last_model_path == str(tmp_path / "last-v1.ckpt")
    assert torch.load(tmp_path / "last-v1.ckpt", weights_only=True)["epoch"] == 1


def test_learning_rates_guard_every_hook_of_lightnings_monitor():
    """``LearningRates`` must cover each Callback hook that Lightning's ``LearningRateMonitor`` implements;
    an upgrade that adds one fails here, not in a run without a logger."""
    hooks = {name for name, _ in inspect.getmembers(Callback, inspect.isfunction) if name.startswith("on_")}
    implemented = {name for name in hooks if name in vars(LearningRateMonitor)}
    assert implemented, "LearningRateMonitor implements no Callback hook any more"
    assert implemented <= set(vars(LearningRates)), implemented - set(vars(LearningRates))


@pytest.mark.parametrize("with_logger", [False, True], ids=["no logger", "CSV logger"])
def test_learning_rates_log_with_a_logger_and_do_nothing_without(with_logger, tmp_path):
    logger = CSVLogger(tmp_path, name="lr") if with_logger else False
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=logger, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                         callbacks=[LearningRates(logging_interval="epoch")], num_sanity_val_steps=0)
    trainer.fit(WorseningModel(), train_dataloaders=loader(), val_dataloaders=loader())
    if with_logger:
        header = (tmp_path / "lr" / "version_0" / "metrics.csv").read_text().splitlines()[0]
        assert "lr-SGD" in header.split(",")


def test_a_checkpoint_monitor_is_one_of_the_task_validation_metrics():
    check_monitor("val/auroc", Task("multiclass", ("0", "1", "2"), ordinal=True, primary_metric="kappa"))
    with pytest.raises(ConfigValueError, match="choose one of val/acc, val/auroc, val/f1 "):
        check_monitor("val/kappa", Task("binary", ("a", "b")))
