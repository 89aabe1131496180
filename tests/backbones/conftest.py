"""Fixtures for the backbone tests: an offline, empty weights cache, and reference models with random weights
(built once per session) whose state dicts the tests write in each source's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from medtransfer.backbones.registry import WeightsEntry

# Smaller instances of the real architectures: the same key names, widths, heads and patch sizes (so the same
# layouts), fewer blocks. ViTs run on 32 px images (img_size only changes the position embedding's length).
SMALL_KWARGS = {
    "resnet50": {"layers": (1, 1, 1, 1)},
    "vit_small_patch16_224": {"depth": 4, "img_size": 32},
    "vit_small_patch8_224": {"depth": 4, "img_size": 32},
    "vit_base_patch16_224": {"depth": 4, "img_size": 32},
}


@pytest.fixture(autouse=True)
def offline_weights_cache(tmp_path, monkeypatch):
    """Never touch the network or the user's caches: an empty TORCH_HOME and Hugging Face cache under
    tmp_path, offline mode."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_hub"))
    monkeypatch.setenv("MEDTRANSFER_OFFLINE", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def hub_cache(tmp_path) -> Path:
    """The (empty) Hugging Face cache of the test."""
    return tmp_path / "hf_hub"


def put_in_hub_cache(cache: Path, repo: str, files: dict[str, Path], commit: str = "0" * 40) -> list[Path]:
    """Place ``files`` (name in the repository: local file) in the Hugging Face cache as huggingface_hub does
    after a download of ``repo`` at ``commit`` (the ``main`` branch)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    placed = []
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())
        placed.append(snapshot / name)
    return placed


def randomise_buffers(model: nn.Module, seed: int) -> nn.Module:
    """Give BatchNorm statistics non-default values, so that a loader that skips them is caught."""
    generator = torch.Generator().manual_seed(seed)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(torch.randn(buffer.shape, generator=generator))
        elif name.endswith("running_var"):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
        elif name.endswith("num_batches_tracked"):
            buffer.fill_(int(torch.randint(1, 10_000, (1,), generator=generator)))
    return model


class ReferenceModels:
    """Random-weight timm models, one per (architecture, kwargs), created on first use."""

    def __init__(self) -> None:
        self._models: dict[tuple, nn.Module] = {}

    def get(self, arch: str, **kwargs) -> nn.Module:
        key = (arch, tuple(sorted(kwargs.items())))
        if key not in self._models:
            torch.manual_seed(len(self._models))
            model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
            self._models[key] = randomise_buffers(model, seed=len(self._models)).eval()
        return self._models[key]

    def for_entry(self, entry: WeightsEntry) -> tuple[nn.Module, dict]:
        """The small reference model for ``entry`` and the timm kwargs that build the same small model."""
        small = SMALL_KWARGS[entry.arch]
        return self.get(entry.arch, **entry.timm_kwargs, **small), dict(small)


@pytest.fixture(scope="session")
def references() -> ReferenceModels:
    return ReferenceModels()


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="session")
def full_resnet50(references) -> nn.Module:
    """A real-size ResNet-50 with random weights, built once per session."""
    return references.get("resnet50")
