"""The datamodules from YAML through ``medtransfer fit`` (tiny models, a few batches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

from medtransfer.cli import main
from medtransfer.datamodules import MedicalDataModule

REPO = Path(__file__).resolve().parents[2]
DATA_CONFIGS = sorted((REPO / "configs" / "data").glob("*.yaml"))


def fit(tmp_path: Path, config: Path, root: Path | None, *extra: str) -> dict:
    argv = [
        "fit",
        "--config",
        str(config),
        "--model.class_path",
        "medtransfer.lightning_modules.Finetune",
        "--model.init_args.backbone",
        "test_resnet",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--data.init_args.num_workers",
        "0",
        "--data.init_args.batch_size",
        "4",
        *extra,
    ]
    if root is not None:
        argv += ["--data.init_args.root", str(root)]
    main(argv)
    [results] = tmp_path.rglob("results.json")
    return json.loads(results.read_text())


def test_every_data_config_names_real_arguments():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(MedicalDataModule, "data", required=True)
    assert len(DATA_CONFIGS) == 11
    for config in DATA_CONFIGS:
        parsed = parser.parse_object({"data": yaml.safe_load(config.read_text())["data"]})
        assert parsed.data.class_path.startswith("medtransfer.datamodules."), config.name


@pytest.mark.slow
def test_fit_pcam_from_yaml(tmp_path, pcam_root):
    results = fit(
        tmp_path, REPO / "configs" / "data" / "pcam.yaml", pcam_root, "--data.init_args.image_size", "32"
    )
    assert results["data"]["name"] == "PCam" and results["task"]["kind"] == "binary"
    assert "auroc" in results["metrics"]["test"]


@pytest.mark.slow
def test_fit_chestxray14_multilabel_from_yaml(tmp_path, chestxray14_root):
    results = fit(
        tmp_path,
        REPO / "configs" / "data" / "chestxray14.yaml",
        chestxray14_root,
        "--data.init_args.image_size",
        "32",
        "--data.init_args.val_fraction",
        "0.25",
    )
    assert results["task"]["kind"] == "multilabel" and results["data"]["num_samples"]["test"] == 9
    assert "auroc" in results["metrics"]["test"]


@pytest.mark.slow
def test_fit_real_retinamnist_experiment(tmp_path, real_medmnist):
    results = fit(tmp_path, REPO / "configs" / "experiments" / "retinamnist_finetune.yaml", real_medmnist)
    assert results["data"]["num_samples"] == {"train": 1080, "val": 120, "test": 400}
    assert "kappa" in results["metrics"]["test"] and results["task"]["primary_metric"] == "kappa"
