"""The task-aware LightningModule base: loss, metrics, logging and optimisation shared by every head."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from ..errors import ConfigValueError, MedTransferError
from ..runtime.checkpoints import CheckpointMismatchError, stamp_version, weights_mismatch
from ..task import SPLITS, Task, TaskMismatchError
from .metrics import (
    build_calibration_metrics,
    build_metrics,
    build_per_class_auroc,
    calibration_values,
    metric_targets,
    probabilities,
    sample_losses,
    task_loss,
)
from .step_seeding import GeneratorStates, enter_step, leave_step


class StepOutput(NamedTuple):
    """What a step computed from a batch, for the loss and the callbacks (``TaskModule._step``)."""

    loss: torch.Tensor  # the batch's mean loss
    probabilities: torch.Tensor  # see ``metrics.probabilities``
    targets: torch.Tensor  # integer targets for torchmetrics
    sample_losses: torch.Tensor | None  # ``B``: each sample's loss (test only)


class MedTransferModule(pl.LightningModule):
    """The base of every medtransfer model: what the ``medtransfer`` command needs from each.

    ``task`` (the data's; None for images without labels), ``epoch_metrics`` (the last epoch's values per
    split, for results.json), ``describe()`` and ``extra_results()``. ``evaluate_after_fit`` says whether
    ``fit`` ends by validating and testing the best checkpoint (classifiers) or not (self-supervised
    pretraining, which has no test step).
    """

    evaluate_after_fit = True
    task: Task | None
    epoch_metrics: dict[str, dict[str, float]]
    _states_outside_step: GeneratorStates | None = None

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        """Seed the step's randomness from (run seed, epoch, batch, rank): see ``step_seeding``."""
        self._states_outside_step = enter_step(self.current_epoch, batch_idx, self.global_rank)

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        """Give the generators back the states they had before the step."""
        if self._states_outside_step is not None:
            leave_step(self._states_outside_step)
            self._states_outside_step = None

    def attach_data(self, datamodule):
        """What this model trains and evaluates on, made from the user's datamodule.

        ``medtransfer.run`` passes the result to the Trainer. It is the datamodule itself here; frozen heads
        make feature stores of it, self-supervised pretraining asks it for multi-view batches.
        """
        return datamodule

    @property
    def attached_trainer(self) -> pl.Trainer | None:
        """The trainer running this module, or ``None`` outside one (``self.trainer`` raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the medtransfer version that wrote the checkpoint.

        Every checkpoint records it; the errors of a version that cannot use the checkpoint name it.
        """
        stamp_version(checkpoint)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` (strict by default), with a clear error for weights that do not fit.

        Its refusal of weights that do not fit (another backbone, another version's layout) is a
        ``CheckpointMismatchError`` naming the keys.
        """
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as error:
            raise CheckpointMismatchError(
                f"the checkpoint's weights do not fit this {type(self).__name__}: "
                f"{weights_mismatch(self.state_dict(), state_dict)}. It was written for another backbone or "
                "model, or by a medtransfer version with another layout; use a checkpoint of this model"
            ) from error

    def backbone_descriptions(self) -> list[dict]:
        """Names and fingerprints of the weights this model holds, for results.json."""
        return []

    def guarded_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters that must stay finite while training: every trainable one.

        ``run.guards.DivergenceGuard`` stops the run when one does not stay finite.
        """
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]

    def produced_weights(self) -> dict | None:
        """The weights this run produced beyond a head, for results.json.

        A dict with ``fingerprint``, ``what``, and a ``path`` when written to a file; None when it only trains
        a head on fixed backbones.
        """
        return None

    def describe(self) -> dict:
        """The model part of results.json."""
        return {"name": type(self).__name__, "backbones": self.backbone_descriptions()}

    def extra_results(self) -> dict:
        """Model-specific findings for results.json (e.g. DVME importance); none by default."""
        return {}


OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "constant", "multistep")
# as types: the config parser (and a benchmark's --dry_run) refuses a misspelt optimizer or schedule at once
Optimizer = Literal[OPTIMIZERS]
Schedule = Literal[SCHEDULERS]

# torch's refusal to normalise a batch with one value per channel in training mode
BATCHNORM_ONE_VALUE = "Expected more than 1 value per channel when training"


class BatchOfOneError(MedTransferError, ValueError):
    """A training batch too small for the backbone's BatchNorm layers at this image size.

    A batch of one image whose feature maps are 1 x 1 (a ResNet at 32 px) gives BatchNorm one value per
    channel, which it cannot normalise; torch's error ended the run with a traceback, from the last batch of
    an epoch whenever the training split left one image over.
    """

    def __init__(self, images: int) -> None:
        super().__init__(
            f"a training batch of {images} image(s) cannot pass the backbone's BatchNorm layers: at this "
            "image size their feature maps are 1 x 1, one value per channel, which BatchNorm cannot "
            "normalise. Choose data.init_args.batch_size so that no batch holds a single image (the training "
            "images, after train_fraction, modulo the batch size must not be 1), or a larger "
            "data.init_args.image_size"
        )


class TaskModule(MedTransferModule):
    """Base for LinearProbe, Finetune and DVME.

    Subclasses build their networks from ``self.task`` and implement ``logits(batch)``; this base turns logits
    into the task's loss and into metrics logged as ``{stage}/{metric}`` once per epoch over the whole split
    (synchronised across DDP ranks), keeps the last values in ``epoch_metrics`` for results.json, and sets up
    AdamW or SGD with an optional linear warm-up and cosine decay.

    Schedules count optimizer steps, so gradient accumulation (``trainer.accumulate_grad_batches``) shortens
    them accordingly, and ``trainer.max_steps`` ends the cosine where training ends.

    Args:
        task: filled in by LightningCLI from the datamodule (``data.task``); in Python pass
            ``datamodule.task``.
        lr: base learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9).
        scheduler: ``cosine`` (per optimizer step, to zero at the end of training), ``constant``, or
            ``multistep`` (x0.1 at each of ``milestones``).
        warmup_epochs: linear warm-up length, in epochs (may be fractional).
        milestones: the epochs at whose start ``multistep`` multiplies the learning rate by 0.1 (MedMNIST v2:
            ``[50, 75]`` of 100); only with ``multistep``.
    """

    def __init__(
        self,
        task: Task | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adamw",
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        milestones: list[int] | None = None,
    ) -> None:
        super().__init__()
        if task is None:
            raise ValueError(
                f"{type(self).__name__} needs the task: the CLI links it from the datamodule (data.task); "
                "in Python pass task=datamodule.task"
            )
        if isinstance(task, dict):  # as saved in a checkpoint's hyper-parameters (load_from_checkpoint)
            task = Task.from_dict(task)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"model.optimizer must be 'adamw' or 'sgd', got {optimizer!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"model.scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
        check_optimisation(lr, weight_decay, warmup_epochs)
        check_milestones(scheduler, milestones)
        self.task = task
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.scheduler_name = scheduler
        self.warmup_epochs = warmup_epochs
        self.milestones = list(milestones or ())
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the "_split" suffix
        self.split_metrics = nn.ModuleDict({f"{stage}_split": build_metrics(task) for stage in SPLITS})
        self.split_losses = nn.ModuleDict({f"{stage}_split": MeanMetric() for stage in SPLITS})
        self.per_class_auroc = build_per_class_auroc(task)
        self.calibration = build_calibration_metrics(task)  # test only
        # per stage: (probabilities, targets, loss, batch size) of each step since the epoch began
        self._step_outputs: dict[str, list[tuple]] = {stage: [] for stage in SPLITS}
        self.epoch_metrics: dict[str, dict[str, float]] = {}

    def save_task_hyperparameters(self, ignore: tuple[str, ...] = ()) -> None:
        """Save init arguments to checkpoints as plain data, loadable with ``weights_only``.

        The task is saved as a dict.
        """
        self.save_hyperparameters(ignore=["task", *ignore])
        self.hparams["task"] = self.task.to_dict()

    # -- network ---------------------------------------------------------------------------------------------
    def logits(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    # -- steps -----------------------------------------------------------------------------------------------
    def _step(self, batch: dict, stage: str) -> StepOutput:
        """Loss of a batch; keeps its outputs for the stage's metrics.

        Each sample's loss is computed for the test only (for its predictions file).
        """
        logits = self.logits(batch)
        labels = batch["label"]
        loss = task_loss(self.task, logits, labels)
        probs = probabilities(self.task, logits.detach())
        targets = metric_targets(self.task, labels)
        self.record_step(stage, probs, targets, loss)
        losses = sample_losses(self.task, logits.detach(), labels) if stage == "test" else None
        return StepOutput(loss, probs, targets, losses)

    def record_step(self, stage: str, probs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Keep a batch's outputs for the stage's metrics, which are updated once per epoch with all of them.

        A torchmetrics update per step costs more than a linear head's whole step on cached features.
        """
        self._step_outputs[stage].append((probs, targets, loss.detach(), len(targets)))

    def _update_metrics(self, stage: str) -> None:
        outputs = self._step_outputs[stage]
        if not outputs:
            return
        probs, targets, losses, sizes = zip(*outputs, strict=True)
        probs, targets, losses = torch.cat(probs), torch.cat(targets), torch.stack(losses)
        self.split_metrics[f"{stage}_split"].update(probs, targets)
        sizes = torch.tensor(sizes, dtype=losses.dtype, device=losses.device)
        self.split_losses[f"{stage}_split"].update(losses, weight=sizes)
        if stage == "test":
            self.calibration.update(probs, targets)
            if self.per_class_auroc is not None:
                self.per_class_auroc.update(probs, targets)
        outputs.clear()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        try:
            loss = self._step(batch, "train").loss
        except ValueError as error:
            if not str(error).startswith(BATCHNORM_ONE_VALUE):
                raise
            raise BatchOfOneError(len(batch["label"])) from error
        if "image" in batch:  # a step on cached features takes about a millisecond: per-epoch loss only
            # Lightning turns progress-bar values into numbers after every batch: on a GPU that waits for the
            # step to finish before the next one is queued, so there the loss goes to the loggers only (which
            # read it every log_every_n_steps)
            on_cpu = loss.device.type == "cpu"
            self.log("train/loss_step", loss, prog_bar=on_cpu, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        """The batch's probabilities, targets, per-sample losses and sample ids, for callbacks.

        The callbacks draw the ROC, the confusion matrix, the test predictions file and its reliability
        diagram.
        """
        step = self._step(batch, "test")
        return {"probabilities": step.probabilities, "targets": step.targets, "losses": step.sample_losses,
                "ids": batch.get("id")}

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Sample ids, probabilities (see ``metrics.probabilities``) and labels where the batch has them."""
        outputs = {"id": batch["id"], "probabilities": probabilities(self.task, self.logits(batch))}
        if "label" in batch:
            outputs["label"] = batch["label"]
        return outputs

    # -- epoch ends: compute once over the whole split, log, remember ----------------------------------------
    def _finish_epoch(self, stage: str) -> None:
        self._update_metrics(stage)
        values = {name: float(v) for name, v in self.split_metrics[f"{stage}_split"].compute().items()}
        values["loss"] = float(self.split_losses[f"{stage}_split"].compute())
        if stage == "test" and self.per_class_auroc is not None:
            per_class = self.per_class_auroc.compute()
            names = self.task.class_names
            values.update({f"auroc/{c}": float(v) for c, v in zip(names, per_class, strict=True)})
            self.per_class_auroc.reset()
        if stage == "test":
            values.update(calibration_values(self.task, self.calibration.compute()))
            self.calibration.reset()
        self.split_metrics[f"{stage}_split"].reset()
        self.split_losses[f"{stage}_split"].reset()
        self.epoch_metrics[stage] = values
        # values are already synchronised across ranks by torchmetrics: no further reduction
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val",
                      sync_dist=False, rank_zero_only=False)

    def on_train_epoch_end(self) -> None:
        self._finish_epoch("train")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._finish_epoch("val")
        else:
            self._step_outputs["val"].clear()

    def on_test_epoch_end(self) -> None:
        self._finish_epoch("test")

    # -- task checks -----------------------------------------------------------------------------------------
    def attach_data(self, datamodule):
        """The datamodule, once its task is checked to be this model's.

        A head built for other classes would produce numbers that look fine and mean nothing.
        """
        data_task = getattr(datamodule, "task", None)
        if data_task is not None:
            self.task.check_matches(data_task, what=f"the data ({type(datamodule).__name__})")
        return super().attach_data(datamodule)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("hyper_parameters", {}).get("task")
        if saved is not None:
            saved = Task.from_dict(saved) if isinstance(saved, dict) else saved
            try:
                saved.check_matches(self.task, what="this run's data")
            except TaskMismatchError as err:
                raise TaskMismatchError(f"the checkpoint does not fit: {err}") from None

    # -- optimisation ----------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """Trainable parameters with their learning rates; subclasses split backbone and head."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": self.lr}]

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW, or SGD with momentum 0.9, over ``parameter_groups``."""
        groups = [g for g in self.parameter_groups() if g["params"]]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)

    def configure_optimizers(self):
        optimizer = self.make_optimizer()
        if self.scheduler_name == "constant" and self.warmup_epochs == 0:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = self.optimizer_steps_per_epoch(total)
        warmup = min(total, int(round(self.warmup_epochs * per_epoch)))
        cosine = self.scheduler_name == "cosine"
        drops = [int(round(epoch * per_epoch)) for epoch in self.milestones]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, total, warmup, cosine, drops))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_steps_per_epoch(self, total: int) -> float:
        """Optimizer steps in one training epoch.

        A step per ``trainer.accumulate_grad_batches`` batches, one more for an epoch's incomplete remainder
        (as Lightning steps). ``total`` (all steps of the run) over the epochs when the loader has no length.
        """
        trainer = self.trainer
        batches = trainer.num_training_batches
        if math.isfinite(batches):
            return math.ceil(batches / trainer.accumulate_grad_batches)
        return total / max(1, trainer.max_epochs or 1)


def check_optimisation(lr: float, weight_decay: float, warmup_epochs: float) -> None:
    """Raise ``ConfigValueError`` for a learning rate, weight decay or warm-up that cannot train as meant.

    A learning rate of 0 (or a negative warm-up) trained nothing, or trained on a shifted schedule, without a
    word, and the initial weights were tested as if trained; a negative one (or weight decay) stopped the run
    with the optimizer's traceback.
    """
    if not (_number(lr) and lr > 0):  # NaN compares False: refused too
        raise ConfigValueError(f"model.init_args.lr={lr}: expected a learning rate > 0 (0 would train "
                               "nothing and test the initial weights as if trained)")
    if not (_number(weight_decay) and weight_decay >= 0):
        raise ConfigValueError(f"model.init_args.weight_decay={weight_decay}: expected 0 (none) or more")
    if not (_number(warmup_epochs) and warmup_epochs >= 0):
        raise ConfigValueError(f"model.init_args.warmup_epochs={warmup_epochs}: expected 0 (no warm-up) or "
                               "more epochs")


def check_milestones(scheduler: str, milestones: list[int] | None) -> None:
    """Raise ``ConfigValueError`` unless only ``multistep`` has milestones: increasing epochs above 0.

    Milestones under another schedule would be ignored without a word.
    """
    if scheduler != "multistep":
        if milestones:
            raise ConfigValueError(f"model.init_args.milestones={milestones} needs scheduler: multistep "
                                   f"(scheduler is {scheduler})")
        return
    epochs = list(milestones or ())
    whole = all(_number(m) and m == int(m) and m > 0 for m in epochs)
    if not (epochs and whole and epochs == sorted(set(epochs))):
        raise ConfigValueError(f"model.init_args.milestones={milestones}: scheduler multistep needs "
                               "increasing epochs above 0 where the learning rate drops x0.1, e.g. [50, 75]")


MEMORY_FORMATS = ("contiguous", "channels_last")


def check_memory_format(memory_format: str | None, nullable: bool = True) -> None:
    """Raise ``ValueError`` for a ``model.memory_format`` other than ``contiguous`` or ``channels_last``.

    Null is accepted where ``nullable`` (contiguous, for the models that took the option later).
    """
    if not (memory_format in MEMORY_FORMATS or (nullable and memory_format is None)):
        raise ValueError("model.memory_format must be 'contiguous' or 'channels_last', "
                         f"got {memory_format!r}")


def check_lr_multiplier(multiplier: float) -> None:
    """Raise ``ConfigValueError`` for a backbone learning-rate multiplier below 0.

    0 freezes the backbone; a negative multiplier made the backbone climb its loss (the optimizer checks only
    the base rate).
    """
    if not (_number(multiplier) and multiplier >= 0):
        raise ConfigValueError(f"model.init_args.backbone_lr_multiplier={multiplier}: expected 0 (the "
                               "backbone does not learn) or more, e.g. 0.1")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lr_factor(step: int, total: int, warmup: int, cosine: bool, drops: Sequence[int] = ()) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``, or constant.

    A constant schedule drops x0.1 from each step in ``drops`` (``multistep``).
    """
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 0.1 ** sum(step >= drop for drop in drops)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))

