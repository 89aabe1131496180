"""The callbacks that draw maps: after a test (PNGs and TensorBoard images of a few test images per class,
also for a frozen head trained on feature stores) and for every image ``predict`` scores."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medtransfer.datamodules import SyntheticMedical
from medtransfer.explain import ExplanationError, ExplanationMaps, PredictionExplanations
from medtransfer.lightning_modules import KNN, Finetune, LinearProbe


def synthetic(kind: str, num_test: int = 10) -> SyntheticMedical:
    return SyntheticMedical(kind=kind, num_train=16, num_val=8, num_test=num_test, native_size=32,
                            image_size=32, batch_size=8)


def trainer(tmp_path, callbacks, logger=False) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)


def test_maps_of_test_images_per_class_go_to_pngs_and_tensorboard(tmp_path):
    torch.manual_seed(0)
    data = synthetic("binary")
    model = Finetune(backbone="test_resnet", task=data.task)
    maps = ExplanationMaps(images_per_class=2)
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    trainer(tmp_path, [maps], logger).test(model, datamodule=data, verbose=False)
    names = data.task.class_names
    run = tmp_path / "run" / "version_0"
    written = sorted(p.name for p in (run / "explanations").iterdir())
    assert written == sorted(p.name for p in maps.paths) and len(written) == 2 * len(names)
    for name in names:
        assert sum(p.startswith(f"test_{name}_") for p in written) == 2
    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    expected = sorted(f"test/explanations/{n}/{k}" for n in names for k in (0, 1))
    assert sorted(events.Tags()["images"]) == expected


def test_a_frozen_head_on_feature_stores_is_explained_from_the_test_images(tmp_path):
    """The test batches hold cached embeddings; the maps read the images through the wrapped datamodule,
    one set per label of a multilabel task."""
    torch.manual_seed(1)
    data = synthetic("multilabel", num_test=12)
    model = LinearProbe(backbone="test_resnet", task=data.task, features_dir=str(tmp_path / "features"))
    maps = ExplanationMaps(images_per_class=1)
    trainer(tmp_path, [maps]).test(model, datamodule=model.attach_data(data), verbose=False)
    labels = data.split_source("test").labels
    present = [name for c, name in enumerate(data.task.class_names) if labels[:, c].any()]
    assert [p.name.split("_")[1] for p in maps.paths] == present and all(p.is_file() for p in maps.paths)


def test_a_model_without_gradients_is_tested_and_warned_about_not_stopped(tmp_path):
    """kNN votes carry no gradient, so a CNN under kNN has no Grad-CAM: the test still ends with its
    metrics, and the warning says why there are no maps."""
    data = synthetic("binary")
    model = KNN(backbone="test_resnet", task=data.task, features_dir=str(tmp_path / "features"))
    maps = ExplanationMaps(images_per_class=1)
    with pytest.warns(UserWarning, match="no explanation maps.*kNN votes"):
        trainer(tmp_path, [maps]).test(model, datamodule=model.attach_data(data), verbose=False)
    assert maps.paths == [] and "test" in model.epoch_metrics


def test_a_layer_that_does_not_exist_stops_the_run_before_it_starts(tmp_path):
    data = synthetic("binary")
    model = Finetune(backbone="test_resnet", task=data.task)
    with pytest.raises(ExplanationError, match="no module 'layer5'"):
        trainer(tmp_path, [ExplanationMaps(layer="layer5")]).test(model, datamodule=data, verbose=False)


class Outputs(pl.Callback):
    def __init__(self) -> None:
        self.explanations: list[str] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.explanations += outputs["explanation"]


def test_predict_draws_a_map_per_image_and_names_it_in_the_outputs(tmp_path):
    torch.manual_seed(2)
    data = synthetic("binary", num_test=5)
    model = Finetune(backbone="test_vit", backbone_kwargs={"img_size": 32}, task=data.task)
    seen = Outputs()
    trainer(tmp_path, [PredictionExplanations(), seen]).predict(model, datamodule=data)
    ids = data.split_source("test").ids
    assert seen.explanations == [f"explanations/{i}.png" for i in ids]  # plain ids: test-000000, ...
    assert all((tmp_path / path).is_file() for path in seen.explanations)


def test_predict_on_feature_stores_reads_the_images_of_the_batch_ids(tmp_path):
    """A frozen head predicts from cached embeddings; its maps come from the same images, found by id."""
    torch.manual_seed(3)
    data = synthetic("multiclass", num_test=4)
    model = LinearProbe(backbone="test_resnet", task=data.task, features_dir=str(tmp_path / "features"))
    seen = Outputs()
    cached = model.attach_data(data)
    trainer(tmp_path, [PredictionExplanations(), seen]).predict(model, datamodule=cached)
    assert seen.explanations == [f"explanations/{i}.png" for i in data.split_source("test").ids]
    assert all((tmp_path / path).is_file() for path in seen.explanations)
