"""The self-supervised methods on lightly's building blocks: each one's loss falls over a few steps on
synthetic views, teachers follow by EMA on the configured schedule, and bad settings fail with the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medtransfer.datamodules import SyntheticMedical
from medtransfer.lightning_modules import SSLPretrain
from medtransfer.lightning_modules.ssl import METHODS
from medtransfer.lightning_modules.ssl.base import Progress, SSLConfigError
from medtransfer.views import VIEWS_KEY, ViewSpec, ViewSpecError

REPO = Path(__file__).resolve().parents[2]
MULTI_CROP = {"global_views": 2, "local_views": 2, "global_size": 32, "local_size": 16}
TINY = {  # (method_args, views, lr): heads small enough for a CPU test, settings that learn in a few steps
    "simclr": ({"hidden_dim": 64, "output_dim": 32}, None, 0.05),
    "moco": ({"hidden_dim": 64, "output_dim": 32, "queue_size": 32}, None, 0.05),  # full after 2 steps
    "mocov3": ({"version": 3, "hidden_dim": 64, "output_dim": 32}, None, 0.05),
    "byol": ({"hidden_dim": 64, "output_dim": 32}, None, 0.05),
    "dino": ({"hidden_dim": 64, "bottleneck_dim": 32, "output_dim": 128, "freeze_last_layer": 0,
              "batch_norm": True}, MULTI_CROP, 0.001),
    "swav": ({"hidden_dim": 64, "output_dim": 32, "prototypes": 16}, MULTI_CROP, 0.01),
}


def fixed_views(spec: ViewSpec, count: int = 16) -> list[torch.Tensor]:
    """One batch of views of synthetic images, as the datamodule serves them."""
    data = SyntheticMedical(num_train=count, num_val=4, num_test=4, image_size=32, native_size=32)
    data.setup("fit")
    items = [data.view_dataset(spec)[(i, 0)] for i in range(count)]
    return [torch.stack([item[VIEWS_KEY][v] for item in items]) for v in range(spec.num_views)]


@pytest.mark.parametrize("name", sorted(TINY))
def test_each_methods_loss_falls_over_a_few_steps(name, one_thread):
    method_args, views, lr = TINY[name]
    torch.manual_seed(0)
    model = SSLPretrain(method=name.replace("v3", ""), backbone="test_resnet", method_args=method_args,
                        views=views)
    batch = fixed_views(model.view_spec)
    parameters = [p for m in model.method.trainable_modules() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9)
    losses = []
    steps = 12
    for step in range(steps):
        progress = Progress(step, steps, epoch=step // 4, max_epochs=3)
        momentum = model.method.momentum_at(progress)
        if momentum is not None:
            model.method.update_teacher(momentum)
        loss = model.method.loss(batch, model.view_spec.global_views, progress)
        optimizer.zero_grad()
        loss.backward()
        model.method.after_backward(progress)
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    # from the third step on: MoCo's queue starts with random negatives, easier than real ones
    assert sum(losses[-3:]) / 3 < sum(losses[2:5]) / 3 - 0.01, losses


def test_the_registry_holds_the_five_methods():
    assert sorted(METHODS) == ["byol", "dino", "moco", "simclr", "swav"]


def test_teachers_start_as_copies_and_follow_by_ema_on_the_cosine_schedule():
    model = SSLPretrain(method="byol", backbone="test_resnet", method_args={"momentum": [0.9, 1.0]})
    method = model.method
    for student, teacher in method.student_teacher_pairs():
        assert all(torch.equal(a, b) for a, b in zip(student.parameters(), teacher.parameters(), strict=True))
        assert not any(p.requires_grad for p in teacher.parameters())
    assert method.momentum_at(Progress(0, 11, 0, 1)) == pytest.approx(0.9)
    assert method.momentum_at(Progress(5, 11, 0, 1)) == pytest.approx(0.95)
    assert method.momentum_at(Progress(10, 11, 0, 1)) == pytest.approx(1.0)
    weight = next(method.backbone.parameters())
    target = next(method.teacher_backbone.parameters())
    before = target.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    method.update_teacher(0.9)
    torch.testing.assert_close(target, before + 0.1)


def test_dino_keeps_its_teacher_and_warms_its_temperature():
    model = SSLPretrain(method="dino", backbone="test_resnet", views={"global_views": 2, "local_views": 2},
                        method_args={"output_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16,
                                     "warmup_teacher_temp": 0.02, "teacher_temp": 0.06,
                                     "warmup_teacher_temp_epochs": 3})
    assert model.method.exported_backbone() is model.method.teacher_backbone
    values = [model.method.logged_values(Progress(0, 10, epoch, 5))["teacher_temp"] for epoch in range(5)]
    assert values == pytest.approx([0.02, 0.04, 0.06, 0.06, 0.06])


def test_bad_settings_name_the_key():
    with pytest.raises(SSLConfigError, match="unknown method 'simsiam'"):
        SSLPretrain(method="simsiam", backbone="test_resnet")
    with pytest.raises(SSLConfigError, match=r"simclr does not take \['queue_size'\]; it takes"):
        SSLPretrain(method="simclr", backbone="test_resnet", method_args={"queue_size": 4})
    with pytest.raises(SSLConfigError, match="exactly 2 global views and no local views"):
        SSLPretrain(method="byol", backbone="test_resnet", views={"local_views": 4})
    with pytest.raises(SSLConfigError, match="at least 2 global views"):
        SSLPretrain(method="dino", backbone="test_resnet", views={"global_views": 1, "local_views": 4})
    with pytest.raises(SSLConfigError, match="version of moco: 2 or 3"):
        SSLPretrain(method="moco", backbone="test_resnet", method_args={"version": 1})
    with pytest.raises(SSLConfigError, match="momentum of byol"):
        SSLPretrain(method="byol", backbone="test_resnet", method_args={"momentum": [0.99]})
    with pytest.raises(SSLConfigError, match="optimizer must be one of"):
        SSLPretrain(backbone="test_resnet", optimizer="adam")
    with pytest.raises(ViewSpecError, match="views: global_views must be >= 1"):
        SSLPretrain(backbone="test_resnet", views={"global_views": 0})


PRETRAIN_CONFIGS = sorted((REPO / "configs" / "pretrain").glob("*.yaml"))


@pytest.mark.parametrize("config", PRETRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_pretraining_config_builds_its_method_and_views(config, one_thread):
    init_args = yaml.safe_load(config.read_text())["model"]["init_args"]
    assert init_args["method"] == config.stem and init_args["backbone"] == "resnet18"
    model = SSLPretrain(**{**init_args, "backbone": "test_resnet"})
    views = fixed_views(model.view_spec, count=4)
    assert len(views) == model.view_spec.num_views == (8 if model.method.multi_crop else 2)
    loss = model.method.loss(views, model.view_spec.global_views, Progress(0, 10, 0, 1))
    assert torch.isfinite(loss)
