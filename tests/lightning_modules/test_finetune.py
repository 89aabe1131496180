"""Finetune: the whole network trains, the backbone optionally at a lower learning rate."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from medtransfer.datamodules import SyntheticMedical
from medtransfer.lightning_modules import Finetune
from medtransfer.lightning_modules.metrics import task_loss
from medtransfer.task import Task

TASKS = {
    "binary": Task("binary", ("normal", "lesion")),
    "multiclass": Task("multiclass", ("a", "b", "c")),
    "multilabel": Task("multilabel", ("x", "y", "z", "w")),
}


def batch(kind: str, size: int = 4) -> dict:
    labels = {"binary": torch.tensor([0, 1, 0, 1]), "multiclass": torch.tensor([0, 1, 2, 1]),
              "multilabel": torch.tensor([[1.0, 0, 0, 1]] * size)}[kind]
    return {"image": torch.randint(0, 256, (size, 3, 32, 32), dtype=torch.uint8), "label": labels,
            "id": [str(i) for i in range(size)]}


@pytest.mark.parametrize("kind", list(TASKS))
def test_logits_have_one_column_per_output(kind):
    model = Finetune(backbone="test_resnet", task=TASKS[kind])
    assert model.logits(batch(kind)).shape == (4, TASKS[kind].num_outputs)


def test_backbone_learning_rate_multiplier_and_everything_trainable():
    model = Finetune(backbone="test_resnet", task=TASKS["binary"], lr=1e-3, backbone_lr_multiplier=0.1)
    groups = model.parameter_groups()
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_one_step_moves_the_backbone_and_its_batchnorm_statistics():
    model = Finetune(backbone="test_resnet", task=TASKS["multiclass"], lr=1e-2).train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameter_groups())
    data = batch("multiclass")
    task_loss(model.task, model.logits(data), data["label"]).backward()
    optimizer.step()
    after = model.backbone.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("weight" in k for k in moved) and any("running_mean" in k for k in moved)


def test_describes_its_backbone_for_results():
    (description,) = Finetune(backbone="test_resnet", task=TASKS["binary"]).backbone_descriptions()
    assert description["name"] == "test_resnet" and len(description["fingerprint"]) == 16


def test_load_from_checkpoint_rebuilds_the_task_from_the_checkpoint_alone(tmp_path):
    """A checkpoint carries its task, so ``load_from_checkpoint(path)`` needs no arguments; passing the task
    again (as Lightning users do) works too."""
    data = SyntheticMedical(kind="multiclass", num_train=8, num_val=4, num_test=4, image_size=32)
    model = Finetune(backbone="test_resnet", task=data.task)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    for kwargs in ({}, {"task": data.task}):
        loaded = Finetune.load_from_checkpoint(path, **kwargs)
        assert loaded.task == data.task
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value)
