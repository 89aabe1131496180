"""DataLoader defaults that fit the machine: workers from the CPUs (shared among a node's DDP processes),
kept between epochs, prefetching, pinned memory on a GPU; every one overridable from the config."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from medtransfer.datamodules import ChestXrayPneumonia, SyntheticMedical
from medtransfer.datamodules.base import MAX_AUTO_WORKERS, WORKERS_ENV, default_num_workers


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_workers_come_from_the_cpus_shared_among_the_node_processes(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    assert default_num_workers(1) == max(1, min(cpus(), MAX_AUTO_WORKERS))
    assert default_num_workers(4) == max(1, min(cpus() // 4, MAX_AUTO_WORKERS))
    assert default_num_workers(10_000) == 1  # never none: decoding stays off the training process
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert default_num_workers(4) == 3
    monkeypatch.setenv(WORKERS_ENV, "many")
    with pytest.raises(ValueError, match="MEDTRANSFER_NUM_WORKERS='many'"):
        default_num_workers()


def fake_trainer(devices: int, device: str) -> SimpleNamespace:
    return SimpleNamespace(num_devices=devices, strategy=SimpleNamespace(root_device=torch.device(device)),
                           world_size=devices, global_rank=0)


def test_automatic_settings_follow_the_trainer(monkeypatch, pneumonia_root):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    dm = ChestXrayPneumonia(root=str(pneumonia_root), image_size=16, batch_size=4)
    dm.trainer = fake_trainer(2, "cuda")
    settings = dm.loader_settings()
    assert settings["num_workers"] == default_num_workers(2)
    assert settings["pin_memory"] is True and settings["persistent_workers"] is True
    assert settings["prefetch_factor"] == 4
    dm.trainer = fake_trainer(1, "cpu")
    assert dm.loader_settings()["pin_memory"] is False


def test_the_config_overrides_every_setting(pneumonia_root):
    dm = ChestXrayPneumonia(root=str(pneumonia_root), image_size=16, batch_size=4, num_workers=1,
                            pin_memory=False, persistent_workers=False, prefetch_factor=2)
    dm.trainer = fake_trainer(1, "cuda")
    assert dm.loader_settings() == {"num_workers": 1, "pin_memory": False, "persistent_workers": False,
                                    "prefetch_factor": 2}
    dm.num_workers = 0  # in-process loading: no worker options at all (DataLoader refuses them)
    assert dm.loader_settings() == {"num_workers": 0, "pin_memory": False}


def test_loaders_use_the_settings_and_batches_keep_the_contract(pneumonia_root):
    dm = ChestXrayPneumonia(root=str(pneumonia_root), image_size=16, batch_size=4, num_workers=1,
                            pin_memory=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.num_workers == 1 and loader.persistent_workers and loader.prefetch_factor == 4
    batch = next(iter(loader))
    # grey X-rays travel as one channel and become the contract's uint8 B x 3 x H x W in the batch
    assert batch["image"].shape == (4, 3, 16, 16) and batch["image"].dtype == torch.uint8
    assert batch["image"].is_contiguous()
    assert torch.equal(batch["image"][:, 0], batch["image"][:, 2])


def test_the_suite_and_synthetic_data_load_in_process():
    assert os.environ.get(WORKERS_ENV) == "0"  # tests/conftest.py: no worker start-up per test
    assert SyntheticMedical(num_train=8, num_val=4, num_test=4).loader_settings()["num_workers"] == 0
