"""Training-speed options (docs/running-fast.md): channels-last layout, mixed and half precision,
torch.compile opt-in, gradient accumulation, and DDP without the unused-parameter search."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader

from medtransfer.lightning_modules import DVME, Finetune, LinearProbe
from medtransfer.lightning_modules.base import lr_factor
from medtransfer.task import Task

REPO = Path(__file__).resolve().parents[2]
TASK = Task("multiclass", ("a", "b", "c"))


def make_batches(count: int, size: int = 4, side: int = 16) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (size, 3, side, side), dtype=torch.uint8, generator=generator),
             "label": torch.randint(0, 3, (size,), generator=generator), "id": [str(i) for i in range(size)]}
            for _ in range(count)]


def loader(batches: list[dict]) -> DataLoader:
    return DataLoader(batches, batch_size=None)  # each item is already a batch


def fit(model: pl.LightningModule, batches: list[dict], **trainer_args) -> pl.Trainer:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         **({"max_epochs": 1} | trainer_args))
    trainer.fit(model, train_dataloaders=loader(batches))
    return trainer


def finetune(**kwargs) -> Finetune:
    torch.manual_seed(0)
    return Finetune(backbone="test_resnet", task=TASK, **kwargs)


def test_channels_last_keeps_weights_and_batches_nhwc_and_gives_the_default_outputs(one_thread):
    default, fast = finetune(), finetune(memory_format="channels_last")
    convs = [m.weight for m in fast.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(w.is_contiguous() for w in convs)  # (1x1 kernels are both)
    normalised = fast.backbone.normalise(make_batches(1)[0]["image"])
    assert normalised.is_contiguous(memory_format=torch.channels_last)
    # a default-layout state dict (a checkpoint) loads into the channels-last model, which keeps its layout
    fast.load_state_dict(default.state_dict())
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    images = make_batches(1)[0]["image"]
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(images), default.eval()(images), rtol=1e-4, atol=1e-5)
    # and it trains: one step of each moves the weights the same way
    for model in (default, fast):
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model.training_step(make_batches(1)[0], 0).backward()
        optimizer.step()
    for (name, a), b in zip(default.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_unknown_memory_format_is_refused():
    with pytest.raises(ValueError, match="memory_format"):
        finetune(memory_format="nhwc")
    with pytest.raises(ValueError, match="memory_format"):
        finetune(memory_format=None)  # Finetune's default has always been "contiguous"
    with pytest.raises(ValueError, match="memory_format"):
        LinearProbe(backbone="test_resnet", task=TASK, memory_format="nhwc")


def dvme_end_to_end(**kwargs) -> DVME:
    torch.manual_seed(0)
    vit = {"name": "test_vit", "backbone_kwargs": {"img_size": 16}}
    return DVME(backbones=["test_resnet", vit], task=TASK, proj_dim=16, heads=2, mode="end_to_end",
                dropout=0.0, **kwargs)


def test_dvme_end_to_end_in_channels_last_gives_the_default_outputs_and_steps(one_thread):
    default, fast = dvme_end_to_end(), dvme_end_to_end(memory_format="channels_last")
    resnet, vit = fast.backbones
    assert resnet.channels_last and not vit.channels_last  # a ViT (one patch-embedding convolution) keeps its
    convs = [m.weight for m in resnet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    fast.load_state_dict(default.state_dict())  # a default-layout checkpoint loads and keeps the layout
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    batch = make_batches(1)[0]
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(batch["image"]), default.eval()(batch["image"]), rtol=1e-4,
                                   atol=1e-5)
    for model in (default, fast):  # one training step of each moves every weight the same way
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model.training_step(batch, 0).backward()
        optimizer.step()
    for (name, a), b in zip(default.state_dict().items(), fast.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_dvme_end_to_end_takes_a_bfloat16_step_on_cpu(one_thread):
    # under bf16-mixed the trainer runs each step in this autocast (the step itself is DVME's own)
    model = dvme_end_to_end(memory_format="channels_last").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.training_step(make_batches(1)[0], 0)
    loss.backward()
    assert math.isfinite(float(loss))
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    # float32 gradients for every trained parameter; not their finiteness: on this CPU, torch 2.14.1's bf16
    # convolution backward gives the tiny test ResNet's last-stage conv1 (a 1x1 map) a non-finite gradient in
    # some runs, contiguous or channels-last alike (docs/running-fast.md, "bf16 on the CPU")
    assert all(g is not None and g.dtype == torch.float32 for g in gradients)
    images = make_batches(1)[0]["image"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        half = model.eval()(images).float()
    with torch.no_grad():
        full = model(images)
    assert (half - full).norm() / full.norm() < 0.05  # bfloat16's rounding, not another network


def test_compiled_backbone_keeps_the_checkpoint_keys(one_thread, tmp_path, monkeypatch):
    # torch.compile itself is replaced by a recorder: its first call imports the compiler (about 10 s on a
    # test machine's CPU) and tracing takes as long again; the compiled forward is exercised by
    # benchmarks/train_throughput.py --compile. What matters here is that the module compiles in place.
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: calls.append(kwargs) or fn)
    default, compiled = finetune(), finetune(compile={"mode": "max-autotune"})
    assert calls == [{"mode": "max-autotune"}]
    assert compiled.backbone._compiled_call_impl is not None  # nn.Module.compile: the backbone, in place
    assert list(compiled.state_dict()) == list(default.state_dict())
    trainer = fit(compiled, make_batches(1), limit_train_batches=0)  # attaches the model; no step
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    saved = torch.load(tmp_path / "compiled.ckpt", weights_only=True)
    assert list(saved["state_dict"]) == list(default.state_dict())
    assert saved["hyper_parameters"]["compile"] == {"mode": "max-autotune"}
    # a compiled model's checkpoint loads strictly into a plain one, and a plain one's into a compiled one
    plain = Finetune.load_from_checkpoint(tmp_path / "compiled.ckpt", compile=False)
    finetune(compile=True).load_state_dict(plain.state_dict())
    torch.testing.assert_close(plain.state_dict(), compiled.state_dict())


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_a_bfloat16_step_on_cpu_trains_on_uint8_batches(precision, one_thread):
    model = finetune()
    before = model.head[1].weight.detach().clone()
    fit(model, make_batches(2), precision=precision)
    train = model.epoch_metrics["train"]
    assert math.isfinite(train["loss"]) and 0.0 <= train["acc"] <= 1.0
    assert not torch.equal(model.head[1].weight.detach().float(), before)
    expected = torch.bfloat16 if precision == "bf16-true" else torch.float32
    assert model.head[1].weight.dtype == expected
    # the backbone's input has the weights' dtype: normalisation in float32, then cast
    assert model.backbone.normalise(make_batches(1)[0]["image"]).dtype == expected


class LearningRateLog(pl.Callback):
    """The backbone's learning rate before every optimizer step."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize(("accumulate", "max_steps", "total", "warmup"),
                         [(1, -1, 10, 5), (2, -1, 6, 3), (2, 4, 4, 3)])
def test_schedules_count_optimizer_steps_under_gradient_accumulation(accumulate, max_steps, total, warmup,
                                                                     one_thread):
    # 5 batches per epoch, 2 epochs, 1 warm-up epoch: with accumulation over 2 batches an epoch is 3 optimizer
    # steps (the fifth batch steps alone), so the cosine spans 6 steps after a 3-step warm-up; max_steps cuts
    # the cosine short but not the warm-up, which is still one epoch of steps
    log = LearningRateLog()
    model = finetune(lr=0.01, warmup_epochs=1, backbone_lr_multiplier=1.0)
    trainer = fit(model, make_batches(5), max_epochs=2, accumulate_grad_batches=accumulate,
                  max_steps=max_steps, callbacks=[log])
    assert trainer.global_step == total
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == total
    expected = [0.01 * lr_factor(step, total, warmup, cosine=True) for step in range(total)]
    assert log.rates == pytest.approx(expected)


def trainable_parameters_without_gradient(model: pl.LightningModule, batch: dict) -> list[str]:
    model.train()
    model.zero_grad(set_to_none=True)
    model.training_step(batch, 0).backward()
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("build", [
    lambda: finetune(),
    lambda: LinearProbe(backbone="test_resnet", task=TASK, feature_cache=False, standardize=False),
    lambda: DVME(backbones=["test_resnet", "test_resnet"], task=TASK, proj_dim=16, heads=2,
                 feature_cache=False, standardize=False),
    lambda: DVME(backbones=["test_resnet"], task=TASK, proj_dim=16, heads=2, mode="end_to_end"),
], ids=["finetune", "linear_probe_frozen", "dvme_frozen", "dvme_end_to_end"])
def test_every_trainable_parameter_gets_a_gradient_each_step_so_ddp_needs_no_unused_search(build, one_thread):
    model = build()
    assert trainable_parameters_without_gradient(model, make_batches(1)[0]) == []
    frozen = getattr(model, "feature_backbones", list)()
    assert all(not p.requires_grad for backbone in frozen for p in backbone.parameters())


def test_ddp_config_skips_the_unused_parameter_search():
    config = yaml.safe_load((REPO / "configs" / "trainer" / "ddp.yaml").read_text())["trainer"]
    strategy = config["strategy"]
    assert strategy["class_path"] == "pytorch_lightning.strategies.DDPStrategy"
    assert strategy["init_args"]["find_unused_parameters"] is False
    assert config["sync_batchnorm"] is True
    DDPStrategy(**strategy["init_args"])  # arguments Lightning accepts
    fast = yaml.safe_load((REPO / "configs" / "trainer" / "fast_gpu.yaml").read_text())["trainer"]
    assert fast["precision"] == "bf16-mixed" and fast["benchmark"] is True
    piece = yaml.safe_load((REPO / "configs" / "model" / "channels_last.yaml").read_text())
    assert piece["model"]["init_args"] == {"memory_format": "channels_last"}
