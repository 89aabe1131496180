"""Callbacks every run gets by default: checkpointing on the task's metric, pictures for TensorBoard, and the
predictions file of ``medtransfer predict``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from .lightning_modules.metrics import build_curve_metrics
from .plots import confusion_figure, image_grid_figure, label_text, roc_figure
from .task import Task


class TaskCheckpoint(ModelCheckpoint):
    """ModelCheckpoint on the task's primary validation metric (``val/auroc`` or ``val/kappa``, higher is
    better) plus ``last.ckpt``; the metric is read from the datamodule's task, so configs never repeat it.

    ``last.ckpt`` is rewritten at the end of EVERY epoch, so ``--ckpt_path last`` resumes from the latest
    epoch. (Lightning 2.6 refreshes it only when a top-k checkpoint is saved: an epoch that does not improve
    the metric would leave ``last.ckpt`` behind, and a resumed run would silently repeat epochs.)"""

    def __init__(self, dirpath: str | None = None, save_top_k: int = 1, save_last: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename="best-epoch={epoch:03d}", monitor=None, mode="max",
                         save_top_k=save_top_k, save_last=save_last, auto_insert_metric_name=False)
        self._last_written_step = -1

    def setup(self, trainer, pl_module, stage: str) -> None:
        task = getattr(pl_module, "task", None)
        if task is not None and self.monitor is None:
            self.monitor = f"val/{task.primary_metric}"
        super().setup(trainer, pl_module, stage)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run
        if self.save_last and fitting and self._last_written_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def log_figure(trainer: pl.Trainer, tag: str, figure: Figure, path: str | None = None) -> None:
    """Send a figure to every TensorBoard logger, and save it to ``path`` if given. Called on rank zero only,
    so it must not touch ``trainer.log_dir`` (a collective broadcast under DDP)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        figure.savefig(path, dpi=100)


class TrainingImageGrid(Callback):
    """Logs the first training batch of each ``fit`` as a titled image grid (``train/augmented_images``): the
    images exactly as the model receives them after augmentation, before the backbone's normalisation."""

    def __init__(self, max_images: int = 16) -> None:
        self.max_images = max_images
        self._logged = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logged = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int):
        if self._logged or not trainer.is_global_zero or "image" not in batch:  # no images: cached features
            return
        self._logged = True
        images = batch["image"][: self.max_images]
        titles = [label_text(pl_module.task, label) for label in batch["label"][: self.max_images]]
        log_figure(trainer, "train/augmented_images", image_grid_figure(images, titles, self.max_images))


class TestPlots(Callback):
    """At the end of each test: ROC curves and the confusion matrix (per class for multilabel), computed from
    torchmetrics objects synchronised across DDP ranks, logged to TensorBoard (``test/roc``,
    ``test/confusion_matrix``) and saved as ``test_roc.png`` / ``test_confusion_matrix.png`` in the log dir.

    Reads the ``probabilities`` and ``targets`` that ``TaskModule.test_step`` returns."""

    def __init__(self) -> None:
        self._roc = None
        self._confusion = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        roc, confusion = build_curve_metrics(pl_module.task)
        self._roc, self._confusion = roc.to(pl_module.device), confusion.to(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0):
        if isinstance(outputs, dict) and "probabilities" in outputs:
            self._roc.update(outputs["probabilities"], outputs["targets"])
            self._confusion.update(outputs["probabilities"], outputs["targets"])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._roc is None or not self._roc.update_called:
            return
        # collectives under DDP, so every rank takes part: the metrics' sync and log_dir's broadcast
        fpr, tpr, _ = self._roc.compute()
        matrix = self._confusion.compute()
        log_dir = trainer.log_dir or "."
        self._roc, self._confusion = None, None
        if trainer.is_global_zero:
            task: Task = pl_module.task
            log_figure(trainer, "test/roc", roc_figure(task, fpr, tpr), os.path.join(log_dir, "test_roc.png"))
            log_figure(trainer, "test/confusion_matrix", confusion_figure(task, matrix),
                       os.path.join(log_dir, "test_confusion_matrix.png"))


class PredictionWriter(BasePredictionWriter):
    """Writes ``medtransfer predict`` output to ``predictions.csv`` in the log directory: one row per sample
    in dataset order, with ``id``, the label where the data has one (``label``, or ``label_<class>`` for
    multilabel) and ``prob_<class>`` for every class. Under DDP the ranks' rows are gathered and written
    once."""

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = prediction_rows(pl_module.task, _flatten(predictions), _flatten(batch_indices))
        log_dir = trainer.log_dir or "."  # a broadcast under DDP: every rank asks
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list = [None] * trainer.world_size
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero:
            return
        rows.sort(key=lambda row: row[0])
        self.path = Path(log_dir) / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0][1]) if rows else ["id"])
            writer.writeheader()
            writer.writerows(row for _, row in rows)


def _flatten(nested: list) -> list:
    """Lightning nests predictions and indices per dataloader when there are several; flatten them."""
    if nested and isinstance(nested[0], list) and nested[0] and isinstance(nested[0][0], (list, dict)):
        return [item for part in nested for item in part]
    return nested


def prediction_rows(task: Task, predictions: list[dict],
                    batch_indices: list[list[int]]) -> list[tuple[int, dict]]:
    """(dataset index, CSV row) for every sample of ``predict_step`` outputs."""
    rows = []
    for output, indices in zip(predictions, batch_indices, strict=True):
        probs = output["probabilities"].float().cpu()
        if task.kind == "binary":
            probs = torch.stack([1 - probs, probs], dim=1)
        labels = output.get("label")
        for i, (index, sample_id) in enumerate(zip(indices, output["id"], strict=True)):
            row: dict = {"id": sample_id}
            if labels is not None:
                if task.kind == "multilabel":
                    row.update({f"label_{c}": int(v) for c, v in zip(task.class_names, labels[i].tolist(),
                                                                       strict=True)})
                else:
                    row["label"] = int(labels[i])
            row.update({f"prob_{c}": float(p)
                        for c, p in zip(task.class_names, probs[i].tolist(), strict=True)})
            rows.append((int(index), row))
    return rows
