"""The DVME LightningModule: trainable parts per mode, cached vs online logits, configs, and CLI runs that put
per-backbone importance into TensorBoard and results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medtransfer.cli import main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.errors import ConfigValueError
from medtransfer.grid.resolve import ConfigResolver
from medtransfer.lightning_modules import DVME
from medtransfer.lightning_modules.metrics import task_loss

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
# two small backbones of different kinds and embedding sizes (96 and 64), one resized on the device
TINY_BACKBONES = [{"name": "test_resnet", "resize_to": 40},
                  {"name": "test_vit", "backbone_kwargs": {"img_size": 32}}]
LABELS = ["test_resnet", "test_vit"]
DATASETS = ("pcam", "eyepacs", "aptos2019", "pneumonia", "chestxray14", "synthetic")


def tiny_data(**kwargs) -> SyntheticMedical:
    data = SyntheticMedical(num_train=32, num_val=24, num_test=16, native_size=32, image_size=32,
                            batch_size=16, augmentation="none", **kwargs)
    data.setup("fit")
    return data


def tiny_dvme(data: SyntheticMedical, **kwargs) -> DVME:
    torch.manual_seed(0)
    return DVME(backbones=TINY_BACKBONES, proj_dim=16, heads=4, task=data.task, **kwargs)


def first_batch(data: SyntheticMedical, split: str = "val") -> dict:
    return next(iter(data.eval_dataloader(split)))


# -- trainable parts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["frozen", "end_to_end"])
def test_gradients_reach_only_the_trainable_parts(mode: str) -> None:
    data = tiny_data()
    model = tiny_dvme(data, mode=mode, backbone_lr_multiplier=0.1, lr=0.01, standardize=False).train()
    batch = first_batch(data, "train")
    task_loss(model.task, model.logits(batch), batch["label"]).backward()

    for part in (model.fusion, model.head):
        assert all(p.grad is not None for p in part.parameters())
    backbone_params = [p for b in model.backbones for p in b.parameters()]
    groups = model.parameter_groups()
    grouped = {id(p) for g in groups for p in g["params"]}
    if mode == "frozen":
        assert all(p.grad is None and not p.requires_grad for p in backbone_params)
        assert not any(b.training for b in model.backbones)  # BatchNorm statistics never move
        assert not grouped & {id(p) for p in backbone_params}
    else:
        assert all(p.grad is not None for p in backbone_params)
        assert all(b.training for b in model.backbones)
        backbone_group = next(g for g in groups if any(p is backbone_params[0] for p in g["params"]))
        assert backbone_group["lr"] == pytest.approx(0.001)
    assert grouped >= {id(p) for p in [*model.fusion.parameters(), *model.head.parameters()]}


def test_cached_features_and_images_give_the_same_logits(tmp_path) -> None:
    data = tiny_data()
    model = tiny_dvme(data, features_dir=str(tmp_path)).eval()
    model.attach_data(data)
    model.fit_standardization()  # statistics of the training stores
    cached = next(iter(model.cached_split("val")))  # one store per backbone
    assert len(list(tmp_path.rglob("store.json"))) == 4
    online = first_batch(data, "val")
    rows = [cached["id"].index(i) for i in online["id"]]
    with torch.no_grad():
        from_features = model.logits(cached)[rows]
        from_images = model.logits(online)
    torch.testing.assert_close(from_features, from_images, atol=2e-3, rtol=2e-3)  # stores hold float16


def test_bad_options_are_clear_errors() -> None:
    data = tiny_data()
    with pytest.raises(ValueError, match="model.mode must be one of"):
        DVME(backbones=["test_resnet"], mode="finetune", task=data.task)
    with pytest.raises(ValueError, match="model.fusion must be one of"):
        DVME(backbones=["test_resnet"], fusion="sum", task=data.task)
    with pytest.raises(ValueError, match="model.backbones is empty"):
        DVME(backbones=[], task=data.task)
    with pytest.raises(ValueError, match=r"unknown: \['img_size'\]"):
        DVME(backbones=[{"name": "test_vit", "img_size": 32}], task=data.task)


def test_the_same_backbone_twice_gets_numbered_labels() -> None:
    """A random-init architecture twice: two different initialisations, numbered."""
    model = DVME(backbones=["test_resnet", "test_resnet"], fusion="mean", proj_dim=8, task=tiny_data().task)
    assert model.backbone_labels == ["test_resnet#1", "test_resnet#2"]


def test_the_same_weights_twice_are_refused_before_anything_is_loaded() -> None:
    said = (r"entries 1 and 3 are the same backbone \('resnet50.swav_in1k', checkpoint None\): DVME would "
            "fuse its embedding with a copy of itself")
    with pytest.raises(ConfigValueError, match=said):
        DVME(backbones=["resnet50.swav_in1k", "test_vit", "resnet50.swav_in1k"], task=tiny_data().task)


def test_one_backbone_end_to_end_in_mixed_precision_holds_all_the_importance() -> None:
    data = tiny_data()
    model = DVME(backbones=["test_resnet"], fusion="dme", mode="end_to_end", proj_dim=8, task=data.task)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", precision="bf16-mixed", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=model.attach_data(data))
    trainer.test(model, datamodule=data, verbose=False)
    summary = model.extra_results()["dvme"]
    assert summary["split"] == "test" and math.isfinite(model.epoch_metrics["test"]["loss"])
    assert summary["importance"]["overall"] == {"test_resnet": 1.0}
    assert summary["dme_weights"]["per_class"]["lesion"] == {"test_resnet": pytest.approx(1.0)}


# -- configs -------------------------------------------------------------------------------------------------
def test_every_dvme_config_parses_with_the_real_cli_parser() -> None:
    resolver = ConfigResolver()
    for dataset in DATASETS:
        experiment = REPO / f"configs/experiments/{dataset}_dvme.yaml"
        args = ["fit", "--config", str(experiment)]
        if dataset != "synthetic":  # the paper's trio: data and model pieces, then the experiment's own
            own = yaml.safe_load(experiment.read_text())
            assert "data" not in own and "class_path" not in own.get("model", {}), "restates a piece"
            args[1:1] = ["--config", str(REPO / f"configs/data/{dataset}.yaml"),
                         "--config", str(REPO / "configs/model/dvme.yaml")]
        config = resolver.parse(args)
        init = config["model"]["init_args"]
        assert config["model"]["class_path"] == "medtransfer.lightning_modules.DVME"
        assert (init["fusion"], init["mode"]) == ("dvme", "frozen")
        assert config["trainer"]["logger"]["init_args"]["name"] == f"{dataset}_dvme"
        names = [b["name"] if isinstance(b, dict) else b for b in init["backbones"]]
        if dataset != "synthetic":
            assert names == ["resnet50.simclr_in1k", "resnet50.swav_in1k", "vit_small_patch16_224.dino"]
    pieces = ["fit", "--config", str(REPO / "configs/data/synthetic.yaml"), "--config",
              str(REPO / "configs/model/dvme.yaml"), "--model.init_args.mode", "end_to_end"]
    assert resolver.parse(pieces)["model"]["init_args"]["mode"] == "end_to_end"
    assert "e2e" in (resolver.check([*pieces, "--model.init_args.mode", "e2e"]) or "")  # rejected early


# -- the CLI, both modes -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "end_to_end"])
def test_fit_from_yaml_reports_importance_in_tensorboard_and_results(tmp_path, monkeypatch, mode) -> None:
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(REPO / "configs/experiments/synthetic_dvme.yaml"),
          "--model.init_args.mode", mode,
          "--model.init_args.backbones", json.dumps(TINY_BACKBONES),
          "--model.init_args.proj_dim", "16",
          "--data.init_args.num_train", "48", "--data.init_args.num_val", "24",
          "--data.init_args.num_test", "24", "--data.init_args.native_size", "32",
          "--data.init_args.batch_size", "16", "--trainer.max_epochs", "2",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])

    run = next((tmp_path / "runs" / "synthetic_dvme").iterdir())
    results = json.loads((run / "results.json").read_text())
    summary = results["extra"]["dvme"]
    assert (summary["fusion"], summary["mode"], summary["split"]) == ("dvme", mode, "test")
    assert summary["backbones"] == LABELS == [b["name"] for b in results["model"]["backbones"]]
    for measure in ("importance", "attention"):
        assert sum(summary[measure]["overall"].values()) == pytest.approx(1.0, abs=1e-5)
        assert set(summary[measure]["per_class"]) == {"normal", "lesion"}
        assert sum(summary[measure]["per_class"]["lesion"].values()) == pytest.approx(1.0, abs=1e-5)

    tags = set()
    for events in run.glob("events.out.tfevents.*"):
        tags |= set(EventAccumulator(str(events)).Reload().Tags()["scalars"])
    for backbone in LABELS:
        assert {f"train/attention/{backbone}", f"val/importance/{backbone}", f"test/importance/{backbone}",
                f"test/importance/lesion/{backbone}"} <= tags

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    holds_backbones = any(k.startswith("backbones.") for k in checkpoint["state_dict"])
    assert holds_backbones == (mode == "end_to_end")  # frozen weights are rebuilt from the config, not saved
    assert checkpoint["hyper_parameters"]["backbones"][0] == {**TINY_BACKBONES[0], "checkpoint": None,
                                                              "backbone_kwargs": None, "embedding": None}
    stores = list((tmp_path / "features").rglob("store.json"))
    assert len(stores) == (6 if mode == "frozen" else 0)  # 2 backbones x 3 splits, only when frozen
