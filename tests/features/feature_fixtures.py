"""Tiny synthetic data and a tiny random-init backbone: feature stores in a second or two on a CPU."""

from __future__ import annotations

import torch

from medtransfer.backbones import create_backbone
from medtransfer.datamodules import SyntheticMedical


def tiny_data(**kwargs) -> SyntheticMedical:
    options = {"num_train": 48, "num_val": 24, "num_test": 24, "native_size": 32, "image_size": 32,
               "batch_size": 16, "augmentation": "none"}
    return SyntheticMedical(**(options | kwargs))


def tiny_backbone(seed: int = 0):
    torch.manual_seed(seed)
    return create_backbone("test_resnet").freeze()
