"""Extraction: reuse and invalidation by fingerprint, whole splits, DDP sharding equal to one process."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medtransfer.features import extract as extract_module
from medtransfer.features import store_for

from .feature_fixtures import tiny_backbone, tiny_data


def count_extractions(monkeypatch) -> list[str]:
    calls = []
    real = extract_module.embed_split

    def counting(backbone, datamodule, split, world=1, rank=0):
        calls.append(split)
        return real(backbone, datamodule, split, world, rank)

    monkeypatch.setattr(extract_module, "embed_split", counting)
    return calls


def test_store_matches_the_backbone_on_the_whole_split(tmp_path, data, backbone):
    data.train_fraction = 0.25  # a fraction never shrinks the store: it holds the whole split
    store = store_for(backbone, data, "train", tmp_path)
    source = data.sources()["train"]
    assert store.ids.tolist() == source.ids and len(store) == 48
    np.testing.assert_array_equal(store.labels, source.labels)
    images = torch.stack([data.extraction_dataloader("train").dataset[i]["image"] for i in range(4)])
    with torch.no_grad():
        expected = backbone(images).numpy()
    np.testing.assert_allclose(store.features[:4].astype(np.float32), expected, rtol=1e-2, atol=1e-3)


def test_second_call_reuses_and_any_input_change_makes_a_new_store(tmp_path, data, backbone, monkeypatch,
                                                                   caplog):
    calls = count_extractions(monkeypatch)
    first = store_for(backbone, data, "val", tmp_path)
    with caplog.at_level("INFO"):
        again = store_for(backbone, data, "val", tmp_path)
    assert calls == ["val"] and again.path == first.path
    assert "reusing val store" in caplog.text
    other_size = store_for(backbone, tiny_data(image_size=24), "val", tmp_path)
    other_weights = store_for(tiny_backbone(seed=1), data, "val", tmp_path)
    other_data = store_for(backbone, tiny_data(seed=5), "val", tmp_path)
    other_split = store_for(backbone, data, "test", tmp_path)
    paths = {first.path, other_size.path, other_weights.path, other_data.path, other_split.path}
    assert len(paths) == 5 and len(calls) == 5


def write_pneumoniamnist(path, size: int, seed: int) -> None:
    """A MedMNIST-layout file: the same ids and labels whatever ``size`` and ``seed``, other pixels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in {"train": 8, "val": 4, "test": 4}.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).astype(np.uint8).reshape(count, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def test_same_ids_and_labels_from_other_pixels_make_a_new_store(tmp_path, backbone, monkeypatch):
    from medtransfer.datamodules import MedMNIST

    write_pneumoniamnist(tmp_path / "a" / "pneumoniamnist.npz", size=28, seed=0)
    write_pneumoniamnist(tmp_path / "a" / "pneumoniamnist_64.npz", size=64, seed=1)
    write_pneumoniamnist(tmp_path / "b" / "pneumoniamnist.npz", size=28, seed=2)  # e.g. another preprocessing
    calls = count_extractions(monkeypatch)
    options = {"flag": "pneumoniamnist", "image_size": 32, "augmentation": "none"}
    stores = [
        store_for(backbone, MedMNIST(root=str(tmp_path / "a"), size=28, **options), "val", tmp_path / "f"),
        store_for(backbone, MedMNIST(root=str(tmp_path / "a"), size=64, **options), "val", tmp_path / "f"),
        store_for(backbone, MedMNIST(root=str(tmp_path / "b"), size=28, **options), "val", tmp_path / "f"),
    ]
    assert len({store.path for store in stores}) == 3 and len(calls) == 3
    assert not np.array_equal(stores[0].features, stores[2].features)


def _ddp_worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = tiny_data(num_train=45)  # not a multiple of the world size: shards differ in length
        store_for(tiny_backbone(), data, "train", root)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_extraction_on_two_processes_equals_one_process(tmp_path):
    # fork: the workers inherit the imported modules (spawning re-imports torch and timm, ~30 s on 2 cores)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True,
                       start_method="fork")
    single = store_for(tiny_backbone(), tiny_data(num_train=45), "train", tmp_path / "single")
    ddp_dir = tmp_path / "ddp" / single.path.relative_to(tmp_path / "single")
    ddp = extract_module.FeatureStore.open(ddp_dir, expected_fingerprint=single.fingerprint)
    assert ddp.ids.tolist() == single.ids.tolist() and len(set(ddp.ids.tolist())) == 45
    np.testing.assert_array_equal(ddp.labels, single.labels)
    np.testing.assert_allclose(ddp.features.astype(np.float32), single.features.astype(np.float32), atol=1e-3)
    assert not [p for p in ddp_dir.parent.iterdir() if p.name.startswith(".tmp-")]


def test_ids_the_split_does_not_hold_are_refused(tmp_path, data, backbone, monkeypatch):
    rows = np.zeros((2, backbone.embed_dim), np.float16)
    monkeypatch.setattr(extract_module, "embed_split", lambda *a, **k: (rows, ["val-000000", "bogus"]))
    with pytest.raises(extract_module.StoreMismatchError, match="bogus"):
        store_for(backbone, data, "val", tmp_path)
