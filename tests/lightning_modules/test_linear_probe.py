"""LinearProbe on feature stores: the online path's metrics, label fractions, slim checkpoints, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from medtransfer.cli import main as medtransfer_main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.lightning_modules import LinearProbe
from medtransfer.lightning_modules.frozen import FeatureCacheError

REPO = Path(__file__).resolve().parents[2]


def small_data(**kwargs) -> SyntheticMedical:
    options = {"num_train": 64, "num_val": 32, "num_test": 32, "native_size": 32, "image_size": 32,
               "batch_size": 16, "augmentation": "none"}
    return SyntheticMedical(**(options | kwargs))


def run(feature_cache: bool, features_dir: Path, data: SyntheticMedical, epochs: int = 3):
    pl.seed_everything(0)
    model = LinearProbe(backbone="test_resnet", feature_cache=feature_cache, features_dir=str(features_dir),
                        task=data.task, lr=0.05)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=data)
    (test,) = trainer.test(model, datamodule=data, verbose=False)
    return model, test


def test_cached_and_online_probes_agree_on_the_same_data(tmp_path):
    cached, cached_test = run(True, tmp_path, small_data())
    online, online_test = run(False, tmp_path / "unused", small_data())
    assert not (tmp_path / "unused").exists()
    assert set(cached_test) == set(online_test) == {"test/auroc", "test/acc", "test/f1", "test/loss"}
    for name, value in online_test.items():
        assert abs(cached_test[name] - value) < 0.01, name
    torch.testing.assert_close(cached.head.weight, online.head.weight, atol=2e-3, rtol=0)
    assert set(cached.epoch_metrics["train"]) == set(online.epoch_metrics["train"])


def test_a_configured_augmentation_the_stores_cannot_apply_is_announced(tmp_path, recwarn):
    run(True, tmp_path, small_data(augmentation="histology"), epochs=1)
    assert any("'histology' is not applied" in str(w.message) for w in recwarn)
    recwarn.clear()
    run(True, tmp_path, small_data(), epochs=1)  # augmentation: none says the same explicitly
    run(False, tmp_path, small_data(augmentation="histology"), epochs=1)  # applied on images
    assert not any("is not applied" in str(w.message) for w in recwarn)


def test_label_fraction_selects_rows_of_the_whole_split_store(tmp_path):
    data = small_data(train_fraction=0.25)
    model, _ = run(True, tmp_path, data, epochs=1)
    loader = model.feature_dataloader(data, "train")
    assert sorted(loader.ids.tolist()) == sorted(data.split_source("train").ids)
    assert len(loader.ids) == len(data.train_indices()) < 64
    train_stores = list(tmp_path.glob("SyntheticMedical/test_resnet/train-*"))
    assert len(train_stores) == 1  # the store holds the whole split; another fraction reuses it
    other = small_data(train_fraction=0.5)
    run(True, tmp_path, other, epochs=1)
    assert list(tmp_path.glob("SyntheticMedical/test_resnet/train-*")) == train_stores


def test_checkpoints_leave_out_the_frozen_backbone_and_check_it_on_load(tmp_path):
    data = small_data()
    model, _ = run(True, tmp_path, data, epochs=1)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "probe.ckpt")
    saved = torch.load(tmp_path / "probe.ckpt", weights_only=True)
    assert not [k for k in saved["state_dict"] if k.startswith("backbone.")]
    assert saved["frozen_backbones"] == {"backbone": model.backbone.fingerprint}
    for seed, fits in ((0, True), (1, False)):  # a random-init backbone from another seed is other weights
        pl.seed_everything(seed)
        restored = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task)
        checkpoint = torch.load(tmp_path / "probe.ckpt", weights_only=True)
        if not fits:
            with pytest.raises(FeatureCacheError, match="weight fingerprints"):
                restored.on_load_checkpoint(checkpoint)
            continue
        restored.on_load_checkpoint(checkpoint)  # as the Trainer does, then a strict load
        restored.load_state_dict(checkpoint["state_dict"])
        torch.testing.assert_close(restored.head.weight, model.head.weight)


@pytest.mark.slow
def test_fit_with_a_linear_probe_config_uses_the_stores_extract_made(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(REPO / "configs/experiments/synthetic_linear.yaml"),
            "--data.init_args.num_train", "64", "--data.init_args.num_val", "32",
            "--data.init_args.num_test", "32", "--model.init_args.backbone", "test_resnet",
            "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", ["medtransfer"])
    assert_exit_ok(lambda: medtransfer_main(["extract", *args]))
    out = capsys.readouterr().out
    assert out.count("features/SyntheticMedical/test_resnet/") == 3
    medtransfer_main(["fit", *args])
    results = json.loads(next((tmp_path / "runs").rglob("results.json")).read_text())
    assert results["model"]["name"] == "LinearProbe" and "auroc" in results["metrics"]["test"]
    assert len(list((tmp_path / "features/SyntheticMedical/test_resnet").iterdir())) == 3  # reused


def assert_exit_ok(call) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 0
