"""EmbeddingsDataModule: a datamodule's splits served as feature stores; the data never knows the model."""

from __future__ import annotations

import json

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


def test_stores_are_extracted_in_the_trainers_precision_and_the_heads_layout(tmp_path):
    data = tiny_data()
    model = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task,
                        memory_format="channels_last")
    convs = [m.weight for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", precision="bf16-mixed")
    trainer.fit(model, datamodule=model.attach_data(data))
    manifests = [json.loads(f.read_text()) for f in tmp_path.rglob("store.json")]
    assert sorted(m["fingerprint"]["split"] for m in manifests) == ["train", "val"]
    assert all(m["fingerprint"]["autocast"] == "bfloat16" for m in manifests)
    # outside a trainer the datamodule extracts in the precision it is given: the same stores
    cached = EmbeddingsDataModule(data, [model.backbone], str(tmp_path), precision="bf16-mixed")
    assert cached.split_batches("val").ids.tolist() == store_for(
        model.backbone, data, "val", str(tmp_path), "bf16-mixed").ids.tolist()
    assert len(manifests) == len(list(tmp_path.rglob("store.json")))  # nothing extracted again
