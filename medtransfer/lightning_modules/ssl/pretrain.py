"""Self-supervised pretraining of a backbone on the training images of any datamodule, labels unused."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import torch
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from lightly.utils.scheduler import CosineWarmupScheduler
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MeanMetric

from ... import __version__
from ...backbones import create_backbone
from ...backbones.export import save_backbone
from ...runtime.figures import send_figure
from ...runtime.folder import run_directory
from ...runtime.seeding import run_seed
from ...runtime.training_bar import step_value_on_bar
from ...task import Task
from ...views import VIEWS_KEY, ViewSpec
from ..base import MedTransferModule
from .base import Progress, SSLConfigError
from .knn_monitor import KNNMonitor
from .registry import build_method
from .view_grid import views_figure

OPTIMIZERS = ("sgd", "adamw", "lars")
PretrainOptimizer = Literal[OPTIMIZERS]  # a misspelt one stops the config check (and --dry_run)


class SSLPretrain(MedTransferModule):
    """Self-supervised pretraining of a backbone, which it writes to a file for the other protocols.

    Pretrains ``backbone`` with a self-supervised ``method`` (lightly's heads, losses, momentum updates and
    schedules) on multi-view batches of the data's TRAINING split, and writes a backbone-only checkpoint
    (``export``, in the run's log directory) when training ends: pass that file as
    ``model.init_args.checkpoint`` of a linear probe, finetune, kNN or DVME with the same backbone name.

    The model says which views it needs (``view_spec``) and every datamodule serves them once told
    (``model.attach_data(datamodule)`` tells it; every run calls it), augmented for its modality; images
    without labels are fine (``UnlabelledImages``). With a labelled datamodule the validation split feeds a
    kNN monitor (``val/auroc``, ``val/acc``, ...; see ``KNNMonitor``); the weights never depend on validation
    or test images. Under DDP, negatives and Sinkhorn batches are gathered from every process;
    ``trainer.sync_batchnorm: true`` syncs BatchNorm; ``trainer.precision: bf16-mixed`` works (losses are
    computed in float32).

    Args:
        method: ``simclr``, ``moco``, ``byol``, ``dino`` or ``swav``.
        backbone: any name ``create_backbone`` accepts: a timm architecture (random initialisation) or
            registry weights to continue from (e.g. ``resnet50.tv_in1k``).
        checkpoint, backbone_kwargs, embedding: as for ``LinearProbe`` (weights to continue from).
        method_args: the method's own settings (temperature, head sizes, momentum [start, end], ...; see
            the method classes in ``lightning_modules/ssl``).
        views: the views per image (``medtransfer.views.ViewSpec``: ``global_views``, ``local_views``, sizes,
            crop scales, ``modality``, ``jitter``, ``blur``, ``solarize``).
        lr: peak learning rate for 256 images per optimiser step (all processes together), scaled linearly
            with the actual global batch (the method papers' rule), reached after ``warmup_epochs`` and
            decayed on a cosine.
        weight_decay: applied to weights, not to biases and normalisation parameters.
        optimizer: ``sgd`` (momentum 0.9), ``adamw`` or ``lars`` (momentum 0.9; biases and norms excluded).
        warmup_epochs: linear learning-rate warm-up, in epochs (may be fractional).
        knn_k, knn_temperature: the kNN monitor's neighbours and temperature.
        export: file name of the backbone checkpoint in the log directory (or an absolute path).
        task: linked from the datamodule (None for images without labels: no kNN monitor).
    """

    evaluate_after_fit = False

    def __init__(
        self,
        method: str = "simclr",
        backbone: str = "resnet18",
        checkpoint: str | None = None,
        backbone_kwargs: dict | None = None,
        embedding: str | None = None,
        method_args: dict | None = None,
        views: dict | None = None,
        lr: float = 0.06,
        weight_decay: float = 5e-4,
        optimizer: PretrainOptimizer = "sgd",
        warmup_epochs: float = 0.0,
        knn_k: int = 20,
        knn_temperature: float = 0.07,
        export: str = "backbone.pt",
        task: Task | None = None,
    ) -> None:
        super().__init__()
        if isinstance(task, dict):  # as saved in a checkpoint's hyper-parameters
            task = Task.from_dict(task)
        if optimizer not in OPTIMIZERS:
            raise SSLConfigError(f"model.init_args.optimizer must be one of {list(OPTIMIZERS)}, got "
                                 f"{optimizer!r}")
        if knn_k < 1 or knn_temperature <= 0:
            raise SSLConfigError(f"model.init_args.knn_k must be >= 1 and knn_temperature > 0, got {knn_k} "
                                 f"and {knn_temperature}")
        self.save_hyperparameters(ignore=["task"])
        self.hparams["task"] = None if task is None else task.to_dict()
        self.task = task
        self.view_spec = ViewSpec.from_dict(views)
        network = create_backbone(backbone, checkpoint=checkpoint, embedding=embedding,
                                  **(backbone_kwargs or {}))
        self.method = build_method(method, network, method_args)
        self.method.check_views(self.view_spec.global_views, self.view_spec.local_views)
        self.initial_backbone = self.backbone.describe()  # the weights pretraining started from
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.warmup_epochs = warmup_epochs
        self.export = export
        self.monitor = None if task is None else KNNMonitor(task, knn_k, knn_temperature)
        self.train_loss = MeanMetric()
        self.epoch_metrics: dict[str, dict[str, float]] = {}
        self.exported: dict | None = None
        self.data = None  # the datamodule ``attach_data`` was given
        self._views_logged = False

    @property
    def backbone(self):
        """The backbone being trained (the method's student)."""
        return self.method.backbone

    def attach_data(self, datamodule):
        """The datamodule, told to serve this method's views of each training image.

        It is told so by ``datamodule.serve_views``, and kept for the kNN monitor and the provenance of the
        export.
        """
        datamodule.serve_views(self.view_spec)
        self.data = datamodule
        return datamodule

    # -- stages ----------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage in ("test", "predict"):
            raise nothing_to_evaluate()
        data_task = getattr(self.data, "task", None)
        if self.task is not None and data_task is not None:
            self.task.check_matches(data_task, what="the data")

    def progress(self) -> Progress:
        trainer = self.trainer
        return Progress(self.global_step, max(1, int(trainer.estimated_stepping_batches)), self.current_epoch,
                        max(1, trainer.max_epochs or 1))

    # -- training --------------------------------------------------------------------------------------------
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)  # seeds the step's randomness
        if VIEWS_KEY not in batch:
            raise SSLConfigError("SSLPretrain got batches without views: hand it its data with "
                                 "medtransfer.run.fit(model=..., data=...), or pass "
                                 "datamodule=model.attach_data(datamodule) to the Trainer")
        if not self._views_logged and self.global_step == 0 and self.trainer.is_global_zero:
            self._log_views(batch[VIEWS_KEY])
        self._views_logged = True

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        views = batch[VIEWS_KEY]
        progress = self.progress()
        momentum = self.method.momentum_at(progress)
        if momentum is not None:
            self.method.update_teacher(momentum)
        loss = self.method.loss(views, self.view_spec.global_views, progress)
        size = len(views[0])
        self.log("train/loss_step", loss, prog_bar=step_value_on_bar(loss), batch_size=size)
        for name, value in self.method.logged_values(progress).items():
            self.log(f"train/{name}", value, batch_size=size)
        self.train_loss.update(loss.detach(), weight=size)
        return loss

    def on_after_backward(self) -> None:
        self.method.after_backward(self.progress())

    def on_train_epoch_end(self) -> None:
        loss = float(self.train_loss.compute())  # synchronised over processes
        self.train_loss.reset()
        self.epoch_metrics["train"] = {"loss": loss}
        self.log("train/loss", loss, sync_dist=False, rank_zero_only=False)

    def _log_views(self, views: list[torch.Tensor]) -> None:
        """The first batch's views, once per run, as ``train/views`` of every logger that takes images."""
        figure = views_figure(views, self.view_spec.global_views)
        for logger in self.loggers:
            send_figure(logger, "train/views", figure, step=0)

    # -- kNN monitor -----------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if self.monitor is None or self.trainer.sanity_checking:
            return
        datamodule = self.data
        if not callable(getattr(datamodule, "eval_dataloader", None)):
            rank_zero_warn("SSLPretrain: the kNN monitor needs a MedicalDataModule (its eval_dataloader); "
                           "it stays off")
            return
        self.monitor.build_bank(self.method.exported_backbone(), datamodule, self.device)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if self.monitor is not None and self.monitor.ready:
            self.monitor.update(self.method.exported_backbone()(batch["image"]).float(), batch["label"])

    def on_validation_epoch_end(self) -> None:
        if self.monitor is None or not self.monitor.ready:
            return
        values = self.monitor.compute()  # synchronised over processes by torchmetrics
        self.epoch_metrics["val"] = values
        self.log_dict({f"val/{name}": value for name, value in values.items()}, prog_bar=True,
                      sync_dist=False, rank_zero_only=False)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        raise nothing_to_evaluate()

    def predict_step(self, batch: dict, batch_idx: int) -> None:
        raise nothing_to_evaluate()

    # -- optimisation ----------------------------------------------------------------------------------------
    def global_batch(self) -> int:
        """Images per optimiser step over all processes (the base of the learning-rate scaling)."""
        per_process = int(getattr(self.data, "batch_size", 0) or 256)
        return per_process * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def steps_per_epoch(self) -> float:
        batches = self.trainer.num_training_batches  # loaded by estimated_stepping_batches, unless
        if not math.isfinite(batches):  # max_epochs: -1 (training by max_steps) left it unloaded
            batches = len(self.data.train_dataloader())
        return batches / self.trainer.accumulate_grad_batches

    def configure_optimizers(self):
        decay, no_decay = get_weight_decay_parameters(self.method.trainable_modules())
        groups = [{"params": decay, "weight_decay": self.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        lr = self.lr * self.global_batch() / 256
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9)
        elif self.optimizer_name == "lars":
            optimizer = LARS(groups, lr=lr, momentum=0.9)  # weight-decay-free groups skip LARS scaling
        else:
            optimizer = torch.optim.AdamW(groups, lr=lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))  # max_epochs or max_steps
        warmup = min(total, int(round(self.warmup_epochs * self.steps_per_epoch())))
        scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=warmup, max_epochs=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- the result: a backbone checkpoint -------------------------------------------------------------------
    def on_fit_end(self) -> None:
        log_dir = run_directory(self.trainer)  # a broadcast under DDP: every process asks
        if self.trainer.interrupted or not self.trainer.is_global_zero:
            return
        path = Path(self.export) if os.path.isabs(self.export) else Path(log_dir) / self.export
        self.exported = save_backbone(self.method.exported_backbone(), path, self.provenance(),
                                      input_size=self.view_spec.sizes(self._image_size())[0])
        rank_zero_info(f"SSLPretrain: backbone written to {self.exported['path']} (fingerprint "
                       f"{self.exported['fingerprint']}); use it as model.init_args.checkpoint with "
                       f"model.init_args.backbone: {self.backbone.arch}")

    def _image_size(self) -> int:
        return int(getattr(self.data, "image_size", None) or self.backbone.preprocessing.input_size)

    def provenance(self) -> dict:
        """How the exported weights were made, stored in the file (plain data only)."""
        describe = getattr(self.data, "data_fingerprint", None)
        return {
            "method": self.hparams["method"],
            "method_args": dict(self.hparams["method_args"] or {}),
            "views": self.view_spec.to_dict(),
            "started_from": self.initial_backbone,
            "epochs": self.current_epoch,
            "steps": self.global_step,
            "data": describe() if callable(describe) else {},
            "seed": run_seed(),
            "medtransfer_version": __version__,
        }

    def backbone_descriptions(self) -> list[dict]:
        """The weights pretraining started from."""
        return [self.initial_backbone]

    def produced_weights(self) -> dict | None:
        """The backbone export this run wrote (None before it ends, or when it was stopped)."""
        if self.exported is None:
            return None
        return {"what": "backbone export", "fingerprint": self.exported["fingerprint"],
                "path": self.exported["path"]}

    def describe(self) -> dict:
        return super().describe() | {"method": self.hparams["method"]}

    def extra_results(self) -> dict:
        return {"pretraining": {
            "method": self.hparams["method"],
            "lr": {"per_256_images": self.lr,
                   "global_batch": self.global_batch() if self.attached_trainer else None},
            "method_args": dict(self.hparams["method_args"] or {}),
            "views": self.view_spec.to_dict(),
            "export": self.exported,
            "knn_monitor": None if self.monitor is None else self.monitor.describe(),
        }}


def nothing_to_evaluate() -> SSLConfigError:
    """Why ``SSLPretrain`` cannot test or predict: its result is the backbone file, not scores."""
    return SSLConfigError(
        "SSLPretrain has nothing to test or predict: it writes a backbone checkpoint when `medtransfer fit` "
        "ends. Evaluate that file with a linear probe (model.init_args.checkpoint)"
    )
