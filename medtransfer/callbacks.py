"""Callbacks every run gets by default: checkpointing on the task's metric, pictures for every logger that
takes images (and as PNGs in the run's folder, ``medtransfer.runtime.folder``), the per-sample predictions of
every test (``test_predictions.csv``, with its reliability diagram) and the predictions file of
``medtransfer predict``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch.distributed as dist
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import BasePredictionWriter, Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_warn

from .datamodules.unlabelled_predict import data_preparation
from .errors import ConfigValueError
from .lightning_modules.metrics import build_curve_metrics, build_metrics
from .outputs.plots import confusion_figure, image_grid_figure, label_text, reliability_figure, roc_figure
from .outputs.predictions import TEST_PREDICTIONS, Predictions
from .outputs.scoring import decide, write_predictions
from .outputs.thresholds import DEFAULT_THRESHOLD
from .runtime.checkpoints import (
    CHECKPOINT_DATA_KEY,
    CHECKPOINT_MODEL_KEY,
    CHECKPOINT_TRAINING_KEY,
    install_atomic_io,
)
from .runtime.figures import send_figure, takes_images
from .runtime.folder import run_directory
from .stats.calibration import confidence_and_correct, reliability
from .task import Task


def check_monitor(monitor: str, task: Task) -> None:
    """A checkpoint monitor must be one of the task's validation metrics, all higher-is-better.

    Lightning would stop at the end of the first epoch on a name never logged.
    """
    names = [f"val/{name}" for name in build_metrics(task)]
    if monitor not in names:
        raise ConfigValueError(f"TaskCheckpoint monitor={monitor!r}: choose one of {', '.join(names)} "
                               f"(the validation metrics of this {task.kind} task)")


class TaskCheckpoint(ModelCheckpoint):
    """ModelCheckpoint on the task's primary validation metric (``val/auroc`` or ``val/kappa``, higher is
    better) plus ``last.ckpt``; the metric is read from the datamodule's task, so configs never repeat it.

    ``last.ckpt`` is rewritten at the end of EVERY training epoch (and after each validation inside an epoch),
    so ``--ckpt_path last`` resumes from the latest epoch. Lightning's own ``save_last`` refreshes it only
    when a top-k checkpoint is saved: an epoch that does not improve the metric would leave ``last.ckpt``
    behind, and a resumed run would silently repeat epochs. So Lightning's ``save_last`` stays off and this
    callback writes ``last.ckpt`` itself, from its public hooks, after Lightning's top-k saving in the same
    hook (the file then holds this epoch's best-model state too). Checkpoints are written beside their
    place and renamed (``checkpoint_io.AtomicCheckpointIO``), so a killed run never leaves half a file.

    ``monitor`` names another validation metric to choose the best checkpoint by (higher is better), e.g.
    ``val/auroc`` for an ordinal task whose primary metric is kappa (the MedMNIST v2 recipe).
    """

    TASK_METRIC = "val/<the task's primary metric>"  # the monitor until ``setup`` knows the task

    def __init__(self, dirpath: str | None = None, save_top_k: int = 1, save_last: bool = True,
                 monitor: str | None = None) -> None:
        super().__init__(dirpath=dirpath, filename="best-epoch={epoch:03d}",
                         monitor=monitor or self.TASK_METRIC, mode="max", save_top_k=save_top_k,
                         save_last=False, auto_insert_metric_name=False)
        self.refresh_last = save_last
        self._stage: str | None = None
        self._last_written_step = -1
        self._epoch_batches_done = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._stage = stage
        task = getattr(pl_module, "task", None)
        if self.monitor == self.TASK_METRIC:
            self.monitor = None if task is None else f"val/{task.primary_metric}"  # None: the latest epoch
        elif task is not None:
            check_monitor(self.monitor, task)
        install_atomic_io(trainer.strategy)  # whole checkpoints or none, also when /tmp is another disk
        super().setup(trainer, pl_module, stage)

    def load_state_dict(self, state_dict: dict) -> None:
        """The checkpointing state of the run that wrote the checkpoint matters to a fit continuing it; test,
        validate and predict from a checkpoint keep their own (Lightning's would warn that the folder
        changed, on every such run)."""
        if self._stage == "fit":
            super().load_state_dict(state_dict)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._epoch_batches_done = False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict) -> None:
        """Every checkpoint of the run records how its images were prepared (``data_preparation``) and the
        model's class, which ``predict`` on new images and ``export`` read, and the data the fit trained and
        chose on, which a fit continuing it must use too."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        checkpoint[CHECKPOINT_DATA_KEY] = data_preparation(trainer.datamodule)
        training_data = getattr(trainer.datamodule, "training_data", None)
        checkpoint[CHECKPOINT_TRAINING_KEY] = training_data() if callable(training_data) else {}
        checkpoint[CHECKPOINT_MODEL_KEY] = f"{type(pl_module).__module__}.{type(pl_module).__qualname__}"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._epoch_batches_done = batch_idx + 1 >= trainer.num_training_batches

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._epoch_batches_done:  # inside the epoch; at its end, on_train_epoch_end follows
            self._write_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._write_last(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._write_last(trainer)

    def _write_last(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` (``last-v<n>.ckpt`` when an earlier run left one in a fresh run's folder), at most
        once per training step. Every DDP rank calls it: ``file_exists`` and ``save_checkpoint`` are
        collective."""
        fitting = trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run
        if not self.refresh_last or not fitting or self._last_written_step == trainer.global_step:
            return
        path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        version = self.STARTING_VERSION
        while path != self.last_model_path and self.file_exists(path, trainer):
            path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST, ver=version)
            version += 1
        self.last_model_path = path  # before saving: it is part of this callback's state in the file
        trainer.save_checkpoint(path, self.save_weights_only)
        self._last_written_step = trainer.global_step


class LearningRates(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` for runs with a logger; without one (``--trainer.logger false``)
    it does nothing, where Lightning's raises."""

    def on_train_start(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


def log_figure(trainer: pl.Trainer, tag: str, figure: Figure, path: str | None = None) -> None:
    """Send a figure to every logger that takes images (``medtransfer.runtime.figures``), and save it to
    ``path`` if given. Called on rank zero only, so it must not ask for the run's folder (a collective under
    DDP)."""
    for logger in trainer.loggers:
        send_figure(logger, tag, figure, trainer.global_step)
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        figure.savefig(path, dpi=100)


class TrainingImageGrid(Callback):
    """Logs the first training batch of each ``fit`` as a titled image grid (``train/augmented_images``) to
    the loggers that take images: the images exactly as the model receives them after augmentation, before
    the backbone's normalisation."""

    def __init__(self, max_images: int = 16) -> None:
        self.max_images = max_images
        self._logged = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logged = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int):
        if self._logged or not trainer.is_global_zero or "image" not in batch:  # no images: cached features
            return
        if not any(takes_images(logger) for logger in trainer.loggers):
            return
        self._logged = True
        images = batch["image"][: self.max_images]
        titles = [label_text(pl_module.task, label) for label in batch["label"][: self.max_images]]
        log_figure(trainer, "train/augmented_images", image_grid_figure(images, titles, self.max_images))


class TestPlots(Callback):
    """At the end of each test: ROC curves and the confusion matrix (per class for multilabel), computed from
    torchmetrics objects synchronised across DDP ranks, sent to the loggers that take images (``test/roc``,
    ``test/confusion_matrix``) and saved as ``test_roc.png`` / ``test_confusion_matrix.png`` in the run's
    folder.

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
        # collectives under DDP, so every rank takes part: the metrics' sync and the run folder's broadcast
        fpr, tpr, _ = self._roc.compute()
        matrix = self._confusion.compute()
        log_dir = run_directory(trainer)
        self._roc, self._confusion = None, None
        if trainer.is_global_zero:
            task: Task = pl_module.task
            log_figure(trainer, "test/roc", roc_figure(task, fpr, tpr), os.path.join(log_dir, "test_roc.png"))
            log_figure(trainer, "test/confusion_matrix", confusion_figure(task, matrix),
                       os.path.join(log_dir, "test_confusion_matrix.png"))


class TestPredictionWriter(Callback):
    """At the end of each test (also the test after ``fit``): the per-sample predictions of every DDP rank,
    gathered (evaluation loaders split a split across ranks without padding, so each sample comes once), put
    in the test split's order with each sample's patient where the datamodule knows patients, written to
    ``test_predictions.csv`` in the run's folder (see ``medtransfer.outputs.predictions``), and drawn as a
    reliability diagram (``test_reliability.png``, logger image ``test/reliability``). ``predictions`` keeps
    them for the confidence intervals in results.json.

    Reads the ``ids``, ``probabilities``, ``targets`` and ``losses`` that ``TaskModule.test_step`` returns."""

    def __init__(self, filename: str = TEST_PREDICTIONS) -> None:
        self.filename = filename
        self.predictions: Predictions | None = None
        self.path: Path | None = None
        self._parts: list[tuple] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._parts, self.predictions, self.path = [], None, None

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0):
        if isinstance(outputs, dict) and "probabilities" in outputs:
            ids = outputs.get("ids")
            self._parts.append((
                None if ids is None else [str(i) for i in ids],
                outputs["probabilities"].float().cpu().numpy(),
                outputs["targets"].cpu().numpy(),
                None if outputs.get("losses") is None else outputs["losses"].float().cpu().numpy(),
            ))

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        parts = gather_from_ranks(trainer, self._parts)  # collectives: every rank takes part
        log_dir = run_directory(trainer)
        self._parts = []
        if not trainer.is_global_zero or not parts:
            return
        if any(ids is None for ids, *_ in parts):
            rank_zero_warn("test batches carry no 'id' (docs/architecture.md: a batch has image, label, id): "
                           f"{self.filename} and the test's confidence intervals are not written")
            return
        task: Task = pl_module.task
        predictions = Predictions(
            task,
            [i for ids, *_ in parts for i in ids],
            np.concatenate([probs for _, probs, _, _ in parts]),
            np.concatenate([targets for _, _, targets, _ in parts]),
            None if any(losses is None for *_, losses in parts) else np.concatenate([p[3] for p in parts]),
        )
        self.predictions = in_split_order(predictions, getattr(trainer, "datamodule", None))
        self.path = self.predictions.write_csv(Path(log_dir) / self.filename)
        labels, probs = self.predictions.labels, self.predictions.probs
        bins = confidence_and_correct(task.kind, labels, probs)
        if task.kind == "multilabel":
            panels = [(name, reliability(bins[0][:, c], bins[1][:, c]))
                      for c, name in enumerate(task.class_names)]
        else:
            panels = [("top class" if task.kind == "multiclass" else task.class_names[1], reliability(*bins))]
        log_figure(trainer, "test/reliability", reliability_figure(task, panels),
                   os.path.join(log_dir, "test_reliability.png"))


def gather_from_ranks(trainer: pl.Trainer, parts: list) -> list:
    """Every rank's list, concatenated in rank order (the list itself with one process)."""
    if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
        gathered: list = [None] * trainer.world_size
        dist.all_gather_object(gathered, parts)
        return [item for rank_parts in gathered for item in rank_parts]
    return parts


def split_positions(source) -> dict[str, int]:
    """Each sample id's place in the split ``source`` (empty without one)."""
    return {sample_id: n for n, sample_id in enumerate(source.ids)} if source is not None else {}


def in_split_order(predictions: Predictions, datamodule) -> Predictions:
    """Rows in the order of the datamodule's test split, with each sample's patient (``group``) where the
    split knows patients; a sample met twice (a sampler that pads) kept once. Without a
    ``split_source``, rows are sorted by id."""
    first = {sample_id: row for row, sample_id in reversed(list(enumerate(predictions.ids)))}
    if len(first) < len(predictions):
        rank_zero_warn(f"{len(predictions) - len(first)} test samples came twice (a padding sampler?); "
                       "each is kept once")
    rows = np.array(sorted(first.values()))
    source = datamodule.split_source("test") if hasattr(datamodule, "split_source") else None
    position = split_positions(source)
    if source is not None and all(predictions.ids[row] in position for row in rows):
        places = np.array([position[predictions.ids[row]] for row in rows])
        ordered = predictions.reorder(rows[np.argsort(places, kind="stable")])
        if source.groups is not None:
            ordered.groups = np.asarray(source.groups)[np.sort(places)]
        return ordered
    return predictions.reorder(rows[np.argsort([predictions.ids[row] for row in rows], kind="stable")])


class PredictionWriter(BasePredictionWriter):
    """Writes ``medtransfer predict`` output to ``predictions.csv`` in the run's folder (columns as in
    ``medtransfer.outputs.predictions``, plus ``path`` for new images and the ``predicted`` class: see
    ``medtransfer.outputs.scoring``): one row per sample in dataset order. Under DDP the ranks' rows are
    gathered and written once. The datamodule's ``threshold`` (``NewImages``; 0.5 otherwise) sets binary and
    multilabel decisions."""

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.path: Path | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        parts = [
            ([int(i) for i in indices], [str(i) for i in output["id"]],
             output["probabilities"].float().cpu().numpy(),
             None if output.get("label") is None else output["label"].cpu().numpy(),
             output.get("explanation"))  # a map's path per sample (medtransfer.explain, predict --explain)
            for output, indices in zip(_flatten(predictions), _flatten(batch_indices), strict=True)
        ]
        parts = gather_from_ranks(trainer, parts)
        datamodule = trainer.datamodule
        decision = decide(trainer, pl_module, getattr(datamodule, "threshold", DEFAULT_THRESHOLD),
                          gather_from_ranks)  # collective when chosen on validation data
        log_dir = run_directory(trainer)  # a broadcast under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        indices = np.array([i for p in parts for i in p[0]], dtype=np.int64)
        labelled = bool(parts) and all(p[3] is not None for p in parts)
        task: Task = pl_module.task
        rows = Predictions(
            task,
            [i for p in parts for i in p[1]],
            np.concatenate([p[2] for p in parts]) if parts else np.zeros((0,) if task.kind == "binary" else
                                                                          (0, task.num_classes)),
            np.concatenate([p[3] for p in parts]) if labelled else None,
        )
        paths = datamodule.image_paths() if hasattr(datamodule, "image_paths") else None
        explained = {i: path for p in parts if p[4] is not None for i, path in zip(p[1], p[4], strict=True)}
        self.path = write_predictions(rows.reorder(predict_order(rows.ids, datamodule, indices)),
                                      Path(log_dir) / self.filename, decision, paths, explained or None)


def predict_order(ids: list[str], datamodule, indices: np.ndarray) -> np.ndarray:
    """The rows in the order of the predicted split (``test``), by sample id where the datamodule knows the
    split, which stays right when unreadable images were skipped (``skip_corrupt``: said here, with their
    number); in the sampler's order otherwise."""
    source = datamodule.split_source("test") if hasattr(datamodule, "split_source") else None
    position = split_positions(source)
    if not position or not all(i in position for i in ids):
        return np.argsort(indices, kind="stable")
    if len(ids) < len(position):
        rank_zero_warn(f"{len(position) - len(ids)} of {len(position)} images were unreadable and skipped "
                       "(skip_corrupt): they have no row in the predictions; the log names each")
    return np.argsort([position[i] for i in ids], kind="stable")


def _flatten(nested: list) -> list:
    """Lightning nests predictions and indices per dataloader when there are several; flatten them."""
    if nested and isinstance(nested[0], list) and nested[0] and isinstance(nested[0][0], (list, dict)):
        return [item for part in nested for item in part]
    return nested
