"""The task-aware base: logged metric names per task kind, metrics over the whole split, task checks and the
learning-rate schedule."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from medtransfer.callbacks import TaskCheckpoint
from medtransfer.datamodules import SyntheticMedical
from medtransfer.errors import ConfigValueError
from medtransfer.lightning_modules import Finetune
from medtransfer.lightning_modules.base import BatchOfOneError, TaskModule, lr_factor
from medtransfer.lightning_modules.metrics import build_metrics, metric_targets, probabilities
from medtransfer.task import Task, TaskMismatchError


class MeanColour(TaskModule):
    """The smallest real model: a linear layer on each image's mean colour."""

    def __init__(self, task: Task | None = None, lr: float = 0.05) -> None:
        super().__init__(task, lr=lr, scheduler="constant")
        self.save_task_hyperparameters()
        self.head = nn.Linear(3, self.task.num_outputs)
        self.steps = 0

    def logits(self, batch: dict) -> torch.Tensor:
        return self.head(batch["image"].float().mean(dim=(2, 3)) / 255)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.steps += 1
        return super().training_step(batch, batch_idx)


def tiny_data(kind: str, **kwargs) -> SyntheticMedical:
    return SyntheticMedical(kind=kind, num_train=32, num_val=17, num_test=19, native_size=16, image_size=16,
                            batch_size=8, **kwargs)


def trainer(tmp_path, max_epochs: int = 1, **kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      **kwargs)


NAMES = ("loss", "auroc", "acc", "f1")


@pytest.mark.parametrize(("kind", "extra"), [
    ("binary", ()),
    ("multiclass", ("kappa",)),
    ("multilabel", ("auroc/spot", "auroc/ring", "auroc/stripe", "auroc/patch")),
])
def test_logged_names_follow_the_design(tmp_path, kind, extra):
    data = tiny_data(kind)
    model = MeanColour(task=data.task)
    run = trainer(tmp_path, enable_checkpointing=False)
    run.fit(model, datamodule=data)
    per_epoch = [n for n in (*NAMES, *extra) if "/" not in n]
    expected_fit = {f"{stage}/{n}" for stage in ("train", "val") for n in per_epoch} | {"train/loss_step"}
    assert set(run.logged_metrics) == expected_fit
    run.test(model, datamodule=data, verbose=False)
    calibration = ("ece", "brier", *(n.replace("auroc/", "ece/") for n in extra if n.startswith("auroc/")))
    assert set(run.logged_metrics) == {f"test/{n}" for n in (*NAMES, *extra, *calibration)}


def test_test_metrics_cover_the_whole_split_once(tmp_path):
    data = tiny_data("multiclass")
    model = MeanColour(task=data.task)
    run = trainer(tmp_path, enable_checkpointing=False)
    run.fit(model, datamodule=data)
    run.test(model, datamodule=data, verbose=False)
    data.setup("test")
    batches = list(data.test_dataloader())
    assert sum(len(b["label"]) for b in batches) == 19
    metrics = build_metrics(data.task)
    with torch.no_grad():
        for batch in batches:
            probs = probabilities(data.task, model.logits(batch))
            metrics.update(probs, metric_targets(data.task, batch["label"]))
    by_hand = {name: float(value) for name, value in metrics.compute().items()}
    scored = {k: v for k, v in model.epoch_metrics["test"].items() if k not in ("loss", "ece", "brier")}
    assert scored == pytest.approx(by_hand)


def test_checkpoints_monitor_the_task_primary_metric(tmp_path):
    data = tiny_data("multiclass")
    checkpoint = TaskCheckpoint(dirpath=tmp_path / "ckpt")
    run = trainer(tmp_path, callbacks=[checkpoint], max_epochs=2)
    run.fit(MeanColour(task=data.task), datamodule=data)
    assert checkpoint.monitor == "val/kappa"
    assert torch.load(checkpoint.last_model_path, weights_only=True)["epoch"] == 1  # refreshed every epoch


def test_data_of_another_task_is_refused_when_the_model_is_handed_it(tmp_path):
    """``attach_data`` (which every run calls before training) checks the data's task against the model's."""
    model = MeanColour(task=Task("binary", ("normal", "lesion")))
    with pytest.raises(TaskMismatchError, match=r"built for a binary task .* multilabel task with 4 classes"):
        trainer(tmp_path, enable_checkpointing=False).fit(model, datamodule=model.attach_data(
            tiny_data("multilabel")))
    assert model.steps == 0


def test_a_checkpoint_of_another_task_is_refused_before_loading_weights(tmp_path):
    binary = tiny_data("binary")
    run = trainer(tmp_path, enable_checkpointing=False, max_steps=1)
    run.fit(MeanColour(task=binary.task), datamodule=binary)
    run.save_checkpoint(tmp_path / "binary.ckpt")
    data = tiny_data("multilabel")
    with pytest.raises(TaskMismatchError, match="checkpoint does not fit"):
        trainer(tmp_path).test(MeanColour(task=data.task), datamodule=data,
                               ckpt_path=tmp_path / "binary.ckpt")


def test_lr_factor_warms_up_then_decays_to_zero():
    assert [lr_factor(s, total=10, warmup=2, cosine=True) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, 10, 2, True) == pytest.approx(1.0)
    assert lr_factor(6, 10, 2, True) == pytest.approx(0.5)
    assert lr_factor(10, 10, 2, True) == pytest.approx(0.0)
    assert lr_factor(7, 10, 2, False) == 1.0


class SteppedMeanColour(MeanColour):
    """MeanColour on the MedMNIST v2 schedule, shrunk: x0.1 at the start of epochs 1 and 2."""

    def __init__(self, task: Task | None = None) -> None:
        TaskModule.__init__(self, task, lr=0.05, scheduler="multistep", milestones=[1, 2])
        self.head = nn.Linear(3, self.task.num_outputs)
        self.steps = 0
        self.rates: list[float] = []

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        self.rates.append(self.optimizers().param_groups[0]["lr"])


def test_the_multistep_schedule_drops_the_rate_tenfold_at_each_milestone(tmp_path):
    data = tiny_data("binary")  # 32 training images in batches of 8: 4 steps per epoch
    model = SteppedMeanColour(task=data.task)
    trainer(tmp_path, max_epochs=3, enable_checkpointing=False).fit(model, datamodule=data)
    assert model.rates == pytest.approx([0.05] * 4 + [0.005] * 4 + [0.0005] * 4)
    assert lr_factor(7, 10, 2, False, drops=[4, 8]) == pytest.approx(0.1)


@pytest.mark.parametrize(("scheduler", "milestones", "match"), [
    ("multistep", None, "needs increasing epochs"),
    ("multistep", [75, 50], "needs increasing epochs"),
    ("multistep", [0, 50], "needs increasing epochs"),
    ("cosine", [50], "needs scheduler: multistep"),
])
def test_milestones_belong_to_the_multistep_schedule(scheduler, milestones, match):
    with pytest.raises(ConfigValueError, match=match):
        TaskModule(Task("binary", ("a", "b")), scheduler=scheduler, milestones=milestones)


def test_the_task_is_required_and_options_are_checked():
    with pytest.raises(ValueError, match="data.task"):
        MeanColour(task=None)
    with pytest.raises(ValueError, match="optimizer"):
        TaskModule(task=Task("binary", ("a", "b")), optimizer="adam")


@pytest.mark.parametrize(("option", "value", "refusal"), [
    ("lr", 0.0, r"model.init_args.lr=0.0: expected a learning rate > 0 \(0 would train nothing"),
    ("lr", float("nan"), r"model.init_args.lr=nan: expected a learning rate > 0"),
    ("weight_decay", -1e-4, r"model.init_args.weight_decay=-0.0001: expected 0 \(none\) or more"),
    ("warmup_epochs", -1.0, r"model.init_args.warmup_epochs=-1.0: expected 0 \(no warm-up\) or more"),
])
def test_optimisation_settings_that_cannot_train_as_meant_are_refused(option, value, refusal):
    """lr 0 trained nothing and tested the initial weights; a negative warm-up shifted the schedule; both in
    silence. A negative lr or weight decay ended in the optimizer's traceback."""
    with pytest.raises(ConfigValueError, match=refusal):
        TaskModule(task=Task("binary", ("a", "b")), **{option: value})


def test_a_negative_backbone_lr_multiplier_is_refused():
    """The optimizer checks the base rate only: a negative multiplier made the backbone climb its loss."""
    task = Task("binary", ("a", "b"))
    with pytest.raises(ConfigValueError, match=r"backbone_lr_multiplier=-0.1: expected 0 \(the backbone"):
        Finetune(backbone="test_resnet", task=task, backbone_lr_multiplier=-0.1)
    assert Finetune(backbone="test_resnet", task=task, backbone_lr_multiplier=0.0).backbone_lr_multiplier == 0


def test_a_training_batch_of_one_image_too_small_for_batchnorm_is_a_named_error():
    """A ResNet at 32 px has 1 x 1 maps in its last stage: BatchNorm cannot train on a batch of one there."""
    model = Finetune(backbone="test_resnet", task=Task("binary", ("a", "b"))).train()
    batch = {"image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), "label": torch.tensor([0, 1])}
    assert torch.isfinite(model.training_step(batch, 0))
    one = {"image": batch["image"][:1], "label": batch["label"][:1]}
    with pytest.raises(BatchOfOneError, match=r"a training batch of 1 image\(s\) cannot pass the backbone's "
                                              r"BatchNorm layers: .* data.init_args.batch_size"):
        model.training_step(one, 1)
