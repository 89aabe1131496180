"""EmbeddingsDataModule: a datamodule's splits served as feature stores; the data never knows the model."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from medtransfer.features import EmbeddingsDataModule, store_for
from medtransfer.lightning_modules import LinearProbe
from medtransfer.lightning_modules.frozen import FeatureCacheError

from .feature_fixtures import tiny_data


def test_the_wrapper_serves_each_split_as_its_store_and_reads_as_the_source(tmp_path, data, backbone):
    data.train_fraction = 0.5
    data.setup("fit")
    cached = EmbeddingsDataModule(data, [backbone], str(tmp_path))
    assert cached.task == data.task and cached.name == data.name and cached.describe() == data.describe()
    train = cached.train_dataloader()
    assert sorted(train.ids.tolist()) == sorted(data.split_source("train").ids)  # the label fraction's rows
    store = store_for(backbone, data, "val", str(tmp_path))
    batch = next(iter(cached.val_dataloader()))
    rows = store.rows_of(batch["id"])
    torch.testing.assert_close(batch["features"][0], torch.from_numpy(store.features[rows]))
    assert cached.split_batches("val") is cached.val_dataloader()  # loaded once


def test_a_cached_head_given_the_images_says_how_to_wrap_them(tmp_path):
    data = tiny_data()
    model = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    with pytest.raises(FeatureCacheError, match=r"datamodule=model.attach_data\(datamodule\)"):
        trainer.fit(model, datamodule=data)
    trainer.fit(model, datamodule=model.attach_data(data))
    assert model.solver_summary is not None  # the exact solver ran on the stores
