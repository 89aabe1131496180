"""On a GPU the per-step loss of Finetune, the LR sweep and SSL pretraining stays off the progress bar (which
Lightning reads back after every batch, making the host wait for the step); on a CPU it shows. No GPU here: a
loss that says it lives on one stands in."""

from __future__ import annotations

import pytest
import torch

from medtransfer.lightning_modules import Finetune, LinearSweep, SSLPretrain
from medtransfer.lightning_modules.ssl.base import Progress
from medtransfer.runtime.training_bar import step_value_on_bar
from medtransfer.task import Task
from medtransfer.views import VIEWS_KEY

TASK = Task("binary", ("normal", "lesion"))


class OnGPU(torch.Tensor):
    """A CPU tensor that reports a CUDA device, as a loss computed on a GPU does."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", 0)


def on_gpu(function):
    def wrapped(*args, **kwargs):
        return function(*args, **kwargs).as_subclass(OnGPU)

    return wrapped


def logged_to_bar(model, batch: dict, monkeypatch) -> dict[str, bool]:
    """What ``training_step`` asks to put on the progress bar, by metric name."""
    bar: dict[str, bool] = {}
    monkeypatch.setattr(model, "log", lambda name, value, prog_bar=False, **_: bar.update({name: prog_bar}))
    model.training_step(batch, 0)
    return bar


def images(size: int = 4) -> dict:
    return {"image": torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8),
            "label": torch.tensor([0, 1] * (size // 2)), "id": [str(i) for i in range(size)]}


def finetune(monkeypatch, gpu: bool):
    model = Finetune(backbone="test_resnet", task=TASK)
    if gpu:  # its step's outputs, with the loss on the GPU
        step = model._step
        monkeypatch.setattr(model, "_step",
                            lambda *a: (out := step(*a))._replace(loss=out.loss.as_subclass(OnGPU)))
    return model, images()


def sweep(monkeypatch, gpu: bool):
    model = LinearSweep(backbone="test_resnet", task=TASK, lrs=[0.01, 0.1], weight_decays=[0.0],
                        feature_cache=False, standardize=False)
    if gpu:
        monkeypatch.setattr(model, "head_losses_of", on_gpu(model.head_losses_of))
    return model, images()


def pretraining(monkeypatch, gpu: bool):
    model = SSLPretrain(method="simclr", backbone="test_resnet",
                        method_args={"hidden_dim": 32, "output_dim": 16})
    monkeypatch.setattr(model, "progress", lambda: Progress(0, 10, 0, 1))
    if gpu:
        monkeypatch.setattr(model.method, "loss", on_gpu(model.method.loss))
    views = [torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    return model, {VIEWS_KEY: views, "label": torch.zeros(4, dtype=torch.long), "id": list("abcd")}


@pytest.mark.parametrize("build", [finetune, sweep, pretraining], ids=["finetune", "sweep", "pretraining"])
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_the_step_loss_is_on_the_bar_on_a_cpu_only(build, gpu, monkeypatch):
    model, batch = build(monkeypatch, gpu)
    assert logged_to_bar(model, batch, monkeypatch)["train/loss_step"] is (not gpu)


def test_only_cpu_values_go_on_the_bar():
    assert step_value_on_bar(torch.tensor(1.0))
    assert not step_value_on_bar(torch.tensor(1.0, device="meta"))
