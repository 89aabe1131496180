"""MedMNIST .npz files: the published arrays, task per flag, sizes, bad files; and the real files when
present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medtransfer.datamodules import MedMNIST
from medtransfer.datamodules.errors import BadLabelError, DatasetLayoutError
from medtransfer.datamodules.medmnist import FLAGS
from medtransfer.errors import ConfigValueError
from medtransfer.grid.resolve import InvalidRunError
from medtransfer.grid.runner import make_plan

from .conftest import write_medmnist


def test_tasks_per_flag(medmnist_root, check_batches):
    retina = MedMNIST(root=str(medmnist_root), flag="retinamnist", batch_size=4)
    assert retina.task.ordinal and retina.task.primary_metric == "kappa" and retina.augmentation == "fundus"
    chest = MedMNIST(root=str(medmnist_root), flag="chestmnist", size=64, image_size=32, batch_size=4)
    assert chest.task.kind == "multilabel" and chest.task.num_classes == 14
    pneumonia = MedMNIST(root=str(medmnist_root), flag="pneumoniamnist", batch_size=4)
    assert pneumonia.task.kind == "binary" and pneumonia.image_size == 28
    assert MedMNIST(root=".", flag="organamnist").augmentation == "none"  # left/right organs: no flips
    assert all(len(f.classes) >= 2 for f in FLAGS.values())
    check_batches(retina, 28)
    check_batches(chest, 32)
    sources = pneumonia.sources()
    assert {k: len(v) for k, v in sources.items()} == {"train": 20, "val": 6, "test": 6}
    assert sources["val"].ids[:2] == ["val_0", "val_1"] and sources["train"].labels.dtype == np.int64


def test_bad_files(medmnist_root, tmp_path):
    with pytest.raises(ConfigValueError, match="init_args.flag: unknown MedMNIST 2D dataset 'nodulemnist3d'"):
        MedMNIST(root=str(medmnist_root), flag="nodulemnist3d")
    with pytest.raises(
        DatasetLayoutError, match=r"dermamnist.npz   <- missing(.|\n)*found instead(.|\n)*medmnist.com"
    ):
        MedMNIST(root=str(medmnist_root), flag="dermamnist").sources()
    with pytest.raises(DatasetLayoutError, match="pneumoniamnist_64.npz   <- missing"):
        MedMNIST(root=str(medmnist_root), flag="pneumoniamnist", size=64).sources()
    write_medmnist(tmp_path / "pathmnist.npz", {"train": 12, "val": 2, "test": 2}, classes=12, colour=True)
    with pytest.raises(BadLabelError, match=r"train_labels\[9\] = 9 is outside the 9 classes of pathmnist"):
        MedMNIST(root=str(tmp_path), flag="pathmnist").sources()
    np.savez(tmp_path / "bloodmnist.npz", train_images=np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"no array 'train_labels' \(found \['train_images'\]\)"):
        MedMNIST(root=str(tmp_path), flag="bloodmnist").sources()
    write_medmnist(tmp_path / "breastmnist.npz", {"train": 4, "val": 2, "test": 2}, size=64)
    with pytest.raises(DatasetLayoutError, match="is 64 px but data.init_args.size is 28"):
        MedMNIST(root=str(tmp_path), flag="breastmnist").sources()
    (tmp_path / "octmnist.npz").write_bytes(b"truncated download")
    with pytest.raises(DatasetLayoutError, match="not a readable .npz file"):
        MedMNIST(root=str(tmp_path), flag="octmnist").sources()


def test_real_retinamnist_and_pneumoniamnist(real_medmnist, check_batches):
    retina = MedMNIST(root=str(real_medmnist), flag="retinamnist", batch_size=16)
    assert {k: len(v) for k, v in retina.sources().items()} == {"train": 1080, "val": 120, "test": 400}
    assert np.bincount(retina.sources()["train"].labels).tolist() == [486, 128, 206, 194, 66]
    check_batches(retina, 28)
    pneumonia = MedMNIST(root=str(real_medmnist), flag="pneumoniamnist", batch_size=16, train_fraction=0.1)
    pneumonia.setup("fit")
    assert np.bincount(pneumonia.sources()["test"].labels).tolist() == [234, 390]
    counts = np.bincount(pneumonia.split_source("train").labels).tolist()
    assert counts == [121, 350]  # 10% of [1214, 3494], stratified
    check_batches(pneumonia, 28)


@pytest.mark.parametrize("key, value, valid", [
    ("data.init_args.flag", "pneumonimnist", "'pneumoniamnist', 'retinamnist'"),
    ("data.init_args.size", 32, "28, 64, 128, 224"),
    ("data.init_args.augmentation", "chest-xray", "'fundus', 'chest_xray'"),
])
def test_a_misspelt_choice_stops_the_dry_run(tmp_path, key, value, valid):
    # before, the config parser took any string: --dry_run passed and every run failed as it started
    recipe = Path(__file__).parents[2] / "configs" / "experiments" / "medmnist_v2_resnet18_28.yaml"
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "typo", "output_dir": str(tmp_path / "out"), "configs": [str(recipe)],
        "overrides": {"data.init_args.root": str(tmp_path)}, "axes": {key: [value]},
    }))
    with pytest.raises(InvalidRunError, match=f"{key}: expected one of .*{valid}.*, got '?{value}'?"):
        make_plan(grid)
