"""The Backbone module: a timm model taking uint8 images, returning embeddings.

See docs/architecture.md, "A backbone".
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from .embedding import embedding_recipe
from .preprocessing import Preprocessing


class Backbone(nn.Module):
    """A timm model that takes uint8 images and returns ``B x embed_dim`` embeddings.

    It wraps the timm model: normalises uint8 images on the device with the weights' own mean/std, optionally
    resizes them to ``resize_to``, and returns ``B x embed_dim`` embeddings by the named recipe.

    ``freeze()`` makes it a fixed feature extractor for good: no gradients, and ``train()`` keeps it in eval
    mode so BatchNorm statistics and dropout never move. ``use_channels_last()`` stores the convolution
    weights and lays out each batch channels-last (NHWC), the layout GPU tensor cores and oneDNN convolve
    fastest; ``convolutional`` says whether a network has convolutions for it to pay on.
    """

    def __init__(
        self,
        model: nn.Module,
        name: str,
        preprocessing: Preprocessing,
        embedding: str = "pre_logits",
        resize_to: int | None = None,
        arch: str | None = None,
        timm_kwargs: dict | None = None,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.arch = arch or name  # the timm architecture and arguments that rebuild ``model`` (exports)
        self.timm_kwargs = dict(timm_kwargs or {})
        self.stem = stem  # ``stem.py``: part of what rebuilds ``model`` (exports)
        self.preprocessing = preprocessing
        self.embedding = embedding
        self.resize_to = resize_to
        self._embed, multiple = embedding_recipe(embedding)
        self.embed_dim = int(model.num_features) * multiple
        mean, std = torch.tensor(preprocessing.mean), torch.tensor(preprocessing.std)
        self.register_buffer("mean", mean.view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1) * 255, persistent=False)
        self.frozen = False
        self.channels_last = False
        self._fingerprint: str | None = None
        self.load_report = None  # what ``create_backbone`` loaded (``loading.LoadReport``), if anything

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float on the 0-255 scale) ``B x 3 x H x W`` images to the model's input.

        The input is in the dtype of the model's weights (float32 unless the trainer runs in true half
        precision, e.g. ``bf16-true``).
        """
        if self.channels_last:  # on the uint8 batch: a quarter of the bytes of the float one
            images = images.contiguous(memory_format=torch.channels_last)
        x = images.float()
        if self.resize_to is not None and tuple(x.shape[-2:]) != (self.resize_to, self.resize_to):
            mode = self.preprocessing.interpolation
            smooth = mode in ("bilinear", "bicubic")
            x = F.interpolate(x, size=(self.resize_to, self.resize_to), mode=mode,
                              align_corners=False if smooth else None, antialias=smooth)
        return ((x - self.mean) / self.std).to(self.mean.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._embed(self.model, self.normalise(images))

    def use_channels_last(self) -> Backbone:
        """Convolution weights and every batch channels-last from now on.

        Outputs equal the default layout's to float rounding; a checkpoint's weights load into this layout
        unchanged.
        """
        self.channels_last = True
        self.model.to(memory_format=torch.channels_last)
        return self

    @property
    def convolutional(self) -> bool:
        """Whether the network convolves beyond a patch embedding: more than one 2-D convolution.

        ResNets, ConvNeXts and hybrids are; a ViT or Swin (one patch-embedding convolution, then matrix
        products) is not, and gains nothing from channels-last.
        """
        return sum(isinstance(m, nn.Conv2d) for m in self.model.modules()) > 1

    def freeze(self) -> Backbone:
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> Backbone:
        return super().train(mode and not self.frozen)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the weights as loaded; identifies them in stores and results."""
        if self._fingerprint is None:
            self._fingerprint = state_dict_fingerprint(self.model.state_dict())
        return self._fingerprint

    def current_fingerprint(self) -> str:
        """The fingerprint of the weights as they are now.

        ``fingerprint`` keeps the first one taken, the weights a run started from, when training changes them.
        """
        return state_dict_fingerprint(self.model.state_dict())

    def describe(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "embed_dim": self.embed_dim,
                "embedding": self.embedding, "stem": self.stem, "preprocessing": self.preprocessing.to_dict()}


def state_dict_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """16 hex digits of a SHA-256 over every tensor's name, shape and bytes, in name order.

    Equal weights give equal fingerprints whatever the device, memory layout or dict order, so results.json
    and the feature stores can tell which weights produced them.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]
