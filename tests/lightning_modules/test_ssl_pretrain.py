"""``medtransfer fit`` with SSLPretrain: pretrains on training images only, logs what is worth watching,
writes a backbone checkpoint that a linear probe loads by path; works on a folder of unlabelled images too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medtransfer.backbones import create_backbone
from medtransfer.cli import main
from medtransfer.datamodules import MedMNIST, SyntheticMedical
from medtransfer.lightning_modules import SSLPretrain
from medtransfer.run import config as run_config
from medtransfer.verbs.weights import main as weights_main

from ..conftest import quiet_trainer_args

REPO = Path(__file__).resolve().parents[2]
SIMCLR = str(REPO / "configs" / "pretrain" / "simclr.yaml")
SYNTHETIC = str(REPO / "configs" / "data" / "synthetic.yaml")
LINEAR = str(REPO / "configs" / "model" / "linear_probe.yaml")
UNLABELLED = str(REPO / "configs" / "data" / "unlabelled.yaml")


def quiet(runs: Path, name: str, epochs: int = 2) -> list[str]:
    return ["--trainer.accelerator", "cpu", *quiet_trainer_args(runs, name, epochs)]


def tiny_pretraining(runs: Path) -> list[str]:
    return [
        "fit", "--config", SIMCLR, "--config", SYNTHETIC,
        "--data.init_args.num_train", "32", "--data.init_args.num_val", "16",
        "--data.init_args.num_test", "16", "--data.init_args.batch_size", "8",
        "--model.init_args.backbone", "test_resnet",
        "--model.init_args.method_args", "{hidden_dim: 32, output_dim: 16}",
        "--model.init_args.lr", "0.05",
        *quiet(runs, "pretrain"),
    ]


def test_pretraining_writes_a_backbone_that_a_linear_probe_loads_by_path(tmp_path, capsys):
    main(tiny_pretraining(tmp_path / "runs"))
    run = tmp_path / "runs" / "pretrain" / "version_0"
    results = json.loads((run / "results.json").read_text())
    assert results["verb"] == "fit" and results["model"]["name"] == "SSLPretrain"
    assert set(results["metrics"]) == {"train", "val"}  # nothing to test: the kNN monitor is the validation
    assert np.isfinite(results["metrics"]["train"]["loss"])
    assert {"auroc", "acc", "f1"} <= set(results["metrics"]["val"])
    export = results["extra"]["pretraining"]["export"]
    assert Path(export["path"]) == (run / "backbone.pt").resolve()
    assert results["task"]["kind"] == "binary" and results["extra"]["pretraining"]["method"] == "simclr"
    # the learning rate is given for 256 images per step and scaled linearly to the 8 of this run
    assert results["extra"]["pretraining"]["lr"] == {"per_256_images": 0.05, "global_batch": 8}

    events = EventAccumulator(str(run))
    events.Reload()
    assert {"train/loss", "train/loss_step", "val/acc", "val/auroc"} <= set(events.Tags()["scalars"])
    learning_rates = [e.value for tag in events.Tags()["scalars"] if tag.startswith("lr-SGD")
                      for e in events.Scalars(tag)]
    assert learning_rates and max(learning_rates) <= 0.05 * 8 / 256 + 1e-9
    assert "train/views" in events.Tags()["images"]  # the augmented views, once

    capsys.readouterr()
    assert weights_main(["check", "test_resnet", "--checkpoint", export["path"]]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == export["fingerprint"]

    main(["fit", "--config", SYNTHETIC, "--config", LINEAR, "--data.init_args.num_train", "32",
          "--data.init_args.num_val", "16", "--data.init_args.num_test", "16",
          "--model.init_args.backbone", "test_resnet", "--model.init_args.checkpoint", export["path"],
          "--model.init_args.features_dir", str(tmp_path / "features"), *quiet(tmp_path / "runs", "probe")])
    probe = json.loads((tmp_path / "runs" / "probe" / "version_0" / "results.json").read_text())
    assert probe["model"]["backbones"][0]["fingerprint"] == export["fingerprint"]
    assert "test" in probe["metrics"]


def test_pretraining_has_nothing_to_test(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *tiny_pretraining(tmp_path / "runs")[1:]])
    assert exit_info.value.code == 2
    assert "SSLPretrain has nothing to test" in capsys.readouterr().err


class RecordIds(pl.Callback):
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.ids.update(batch["id"])


def medmnist_with(root: Path, val_test_seed: int) -> None:
    """The same training images; validation and test images drawn from ``val_test_seed``."""
    train_rng, other_rng = np.random.default_rng(0), np.random.default_rng(val_test_seed)
    arrays = {}
    for split, n, rng in (("train", 32, train_rng), ("val", 12, other_rng), ("test", 12, other_rng)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1)
    root.mkdir(parents=True)
    np.savez(root / "pneumoniamnist.npz", **arrays)


def pretrain_on(root: Path, tmp_path: Path) -> tuple[SSLPretrain, RecordIds]:
    pl.seed_everything(0)
    data = MedMNIST(root=str(root), flag="pneumoniamnist", image_size=28, batch_size=8)
    model = SSLPretrain(backbone="test_resnet", task=data.task, lr=0.05,
                        method_args={"hidden_dim": 32, "output_dim": 16})
    ids = RecordIds()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[ids],
                         default_root_dir=str(tmp_path))
    trainer.fit(model, datamodule=model.attach_data(data))
    assert "val" in model.epoch_metrics  # the kNN monitor read the validation images
    return model, ids


def test_pretraining_never_trains_on_validation_or_test_images(tmp_path, one_thread):
    medmnist_with(tmp_path / "a", val_test_seed=1)
    medmnist_with(tmp_path / "b", val_test_seed=2)
    model, ids = pretrain_on(tmp_path / "a", tmp_path / "run_a")
    assert ids.ids == {f"train_{i}" for i in range(32)}  # every training image, and nothing else
    other, _ = pretrain_on(tmp_path / "b", tmp_path / "run_b")
    # other validation and test pixels, the same weights: they never reached an update
    assert model.exported["fingerprint"] == other.exported["fingerprint"]
    assert model.epoch_metrics["val"] != other.epoch_metrics["val"]


def test_a_folder_of_unlabelled_images_pretrains(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        folder = tmp_path / "images" / ("scanner_a" if i % 2 else "scanner_b" / Path("nested"))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(40, 36), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    (tmp_path / "images" / ".DS_Store").write_bytes(b"")
    main(["fit", "--config", SIMCLR, "--config", UNLABELLED,
          "--data.init_args.root", str(tmp_path / "images"), "--data.init_args.grey", "true",
          "--data.init_args.augmentation", "chest_xray", "--data.init_args.image_size", "32",
          "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
          "--model.init_args.backbone", "test_resnet", "--model.init_args.method_args", "{hidden_dim: 32}",
          *quiet(tmp_path / "runs", "folder", epochs=1)])
    results = json.loads((tmp_path / "runs" / "folder" / "version_0" / "results.json").read_text())
    assert results["task"] is None and set(results["metrics"]) == {"train"}  # no labels: no kNN monitor
    assert results["data"]["num_samples"] == {"train": 20, "val": 0, "test": 0}
    export = results["extra"]["pretraining"]["export"]
    assert create_backbone("test_resnet", checkpoint=export["path"]).fingerprint == export["fingerprint"]
    provenance = torch.load(export["path"], weights_only=True)["trained_with"]
    assert provenance["method"] == "simclr" and provenance["data"]["dataset"] == "UnlabelledImages"


def test_momentum_and_teacher_temperature_are_logged(tmp_path, one_thread):
    data = SyntheticMedical(num_train=16, num_val=8, num_test=8, image_size=32, native_size=32, batch_size=8)
    model = SSLPretrain(method="dino", backbone="test_resnet", task=data.task,
                        views={"global_views": 2, "local_views": 2, "local_size": 16},
                        method_args={"hidden_dim": 32, "bottleneck_dim": 16, "output_dim": 64,
                                     "momentum": [0.9, 1.0]})
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=pl.loggers.TensorBoardLogger(str(tmp_path)),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         log_every_n_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=model.attach_data(data))
    events = EventAccumulator(trainer.logger.log_dir)
    events.Reload()
    momentum = [event.value for event in events.Scalars("train/momentum")]
    assert momentum == pytest.approx([0.9, 1.0])  # cosine from start to end over the 2 steps
    assert {"train/teacher_temp"} <= set(events.Tags()["scalars"])


class Preempted(RuntimeError):
    """Stands in for a job killed mid-training."""


class PreemptAtEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == 2:
            raise Preempted("preempted at the start of epoch 2")


def test_a_resumed_pretraining_exports_the_uninterrupted_weights(tmp_path, monkeypatch):
    dino = [
        "fit", "--config", str(REPO / "configs" / "pretrain" / "dino.yaml"), "--config", SYNTHETIC,
        "--data.init_args.num_train", "32", "--data.init_args.num_val", "16",
        "--data.init_args.num_test", "16", "--data.init_args.batch_size", "8",
        "--model.init_args.backbone", "test_resnet",
        "--model.init_args.views", "{global_views: 2, local_views: 2, local_size: 16}",
        "--model.init_args.method_args",
        "{hidden_dim: 32, bottleneck_dim: 16, output_dim: 64, batch_norm: true, warmup_teacher_temp: 0.02, "
        "warmup_teacher_temp_epochs: 2, momentum: [0.9, 1.0]}",
        "--model.init_args.warmup_epochs", "1",
    ]
    main([*dino, *quiet(tmp_path / "uninterrupted", "dino", epochs=3)])
    fixed = run_config.fixed_callbacks
    with monkeypatch.context() as patch:
        patch.setattr(run_config, "fixed_callbacks", lambda: [*fixed(), PreemptAtEpoch()])
        with pytest.raises(Preempted):
            main([*dino, *quiet(tmp_path / "resumed", "dino", epochs=3)])
    main([*dino, *quiet(tmp_path / "resumed", "dino", epochs=3), "--ckpt_path", "last"])
    whole, resumed = (json.loads((tmp_path / run / "dino" / "version_0" / "results.json").read_text())
                      for run in ("uninterrupted", "resumed"))
    # the teacher, DINO's centre, the schedules, the optimiser and the views all continued where they stopped
    assert resumed["extra"]["pretraining"]["export"]["fingerprint"] == \
        whole["extra"]["pretraining"]["export"]["fingerprint"]
    for stage in ("train", "val"):
        assert resumed["metrics"][stage] == pytest.approx(whole["metrics"][stage])
