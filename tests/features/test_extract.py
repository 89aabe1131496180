"""Extraction: reuse and invalidation by fingerprint, whole splits, DDP sharding equal to one process, the
channels-last layout and bfloat16 autocast."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

from medtransfer.features import extract as extract_module
from medtransfer.features import store_for
from medtransfer.features.fingerprint import store_fingerprint

from .feature_fixtures import tiny_backbone, tiny_data


def count_extractions(monkeypatch) -> list[str]:
    calls = []
    real = extract_module.embed_split

    def counting(backbone, datamodule, split, world=1, rank=0, **options):
        calls.append(split)
        return real(backbone, datamodule, split, world, rank, **options)

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


def test_an_array_of_other_pixels_under_the_same_name_makes_a_new_store(tmp_path, backbone, monkeypatch):
    from medtransfer.datamodules import MedMNIST

    path = tmp_path / "medmnist" / "pneumoniamnist.npz"
    calls = count_extractions(monkeypatch)
    options = {"root": str(path.parent), "flag": "pneumoniamnist", "image_size": 32, "augmentation": "none"}
    write_pneumoniamnist(path, size=28, seed=0)
    first = store_for(backbone, MedMNIST(**options), "val", tmp_path / "f")
    write_pneumoniamnist(path, size=28, seed=3)  # the same file name, ids and labels; other pixels
    second = store_for(backbone, MedMNIST(**options), "val", tmp_path / "f")
    assert second.path != first.path and calls == ["val", "val"]


def write_folder(root, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in ("benign", "malignant"):
        for k in range(10):
            path = root / name / f"P{k:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(path)


def test_an_image_file_rewritten_under_its_name_makes_a_new_store(tmp_path, backbone, monkeypatch):
    from medtransfer.datamodules import ImageFolder

    root = tmp_path / "folders"
    write_folder(root, seed=0)
    calls = count_extractions(monkeypatch)

    def train_store():
        data = ImageFolder(root=str(root), image_size=32, augmentation="none", batch_size=8)
        return store_for(backbone, data, "train", tmp_path / "f")

    first = train_store()
    assert train_store().path == first.path and calls == ["train"]
    rewritten = root / first.ids[0]  # one training image exported again, e.g. with other windowing
    before = rewritten.stat().st_mtime_ns
    Image.fromarray(np.full((20, 24, 3), 200, np.uint8)).save(rewritten)
    os.utime(rewritten, ns=(before + 10**9, before + 10**9))  # a later time, on any file system's clock
    second = train_store()
    assert second.path != first.path and calls == ["train", "train"]
    assert second.ids.tolist() == first.ids.tolist()
    assert not np.array_equal(second.features[0], first.features[0])
    np.testing.assert_array_equal(second.features[1:], first.features[1:])


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


# bfloat16 keeps 8 bits of mantissa (a relative rounding of 2^-9 per operation); through the tiny ResNet the
# embeddings move by 0.6% of their norm on average (0.8% at most on these images). The bound leaves room for
# other CPUs' kernels.
BF16_TOLERANCE = 0.03  # relative L2 distance of each bfloat16 embedding from its float32 one
FLOAT32_STORE_ENTRIES = {"backbone", "data", "split", "pixels", "transform", "image_size", "dtype",
                         "medtransfer_version"}


def test_channels_last_extraction_gives_the_contiguous_features_and_shares_their_store(tmp_path, data):
    contiguous, nhwc = tiny_backbone(), tiny_backbone().use_channels_last()
    assert nhwc.convolutional and nhwc.channels_last
    rows, ids = extract_module.embed_split(contiguous, data, "val")
    nhwc_rows, nhwc_ids = extract_module.embed_split(nhwc, data, "val")
    assert nhwc_ids == ids and nhwc_rows.dtype == np.float16
    # float rounding, then the store's float16 rounding (one unit in the last place at most)
    np.testing.assert_allclose(nhwc_rows.astype(np.float32), rows.astype(np.float32), rtol=2e-3, atol=1e-3)
    # the layout is not an input of the store: one store serves both
    assert store_fingerprint(nhwc, data, "val") == store_fingerprint(contiguous, data, "val")
    assert store_for(nhwc, data, "val", tmp_path).path == store_for(contiguous, data, "val", tmp_path).path


def test_bf16_extraction_is_within_tolerance_of_float32_and_never_mixed_with_it(tmp_path, data, backbone,
                                                                               monkeypatch):
    full = store_for(backbone, data, "val", tmp_path)
    assert set(full.fingerprint) == FLOAT32_STORE_ENTRIES  # no autocast entry for float32
    calls = count_extractions(monkeypatch)
    half = store_for(backbone, data, "val", tmp_path, precision="bf16-mixed")
    assert calls == ["val"] and half.path != full.path  # a store of its own, extracted anew
    assert half.fingerprint == full.fingerprint | {"autocast": "bfloat16"}
    stored = json.loads((half.path / "store.json").read_text())
    assert stored["fingerprint"]["autocast"] == "bfloat16" and stored["dtype"] == "float16"
    assert half.features.dtype == np.float16 and half.ids.tolist() == full.ids.tolist()
    exact, rounded = full.features.astype(np.float32), half.features.astype(np.float32)
    distance = np.linalg.norm(rounded - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert 0 < distance.max() < BF16_TOLERANCE  # it ran in bfloat16, and close to float32
    # precisions that extract in float32 find the float32 store; bf16 again finds the bfloat16 one
    assert store_for(backbone, data, "val", tmp_path, precision="32-true").path == full.path
    assert store_for(backbone, data, "val", tmp_path, precision="bf16-true").path == half.path
    assert calls == ["val"]


@pytest.mark.parametrize(("precision", "device", "expected"), [
    (None, "cpu", None), ("32-true", "cuda", None), ("64-true", "cpu", None),
    ("bf16-mixed", "cpu", torch.bfloat16), ("bf16-true", "cuda", torch.bfloat16),
    ("16-mixed", "cuda", torch.float16), ("16-mixed", "cpu", torch.bfloat16),
    ("16-true", "cpu", torch.float16),
])
def test_extraction_autocasts_as_the_trainers_precision_does(precision, device, expected):
    assert extract_module.extraction_autocast(precision, torch.device(device)) == expected
