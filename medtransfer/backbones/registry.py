"""The weights registry: every named set of pretrained weights, where it comes from and how to load it.

Names follow timm's ``arch.tag`` style. Each entry records the timm architecture (and the kwargs that make it
match the checkpoint), the public download URL and file name, the checksum where one is published, the
checkpoint layout (``layouts.py``), the preprocessing the weights were trained with and the embedding recipe.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import timm
import torch

from .embedding import embedding_recipe
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, UNNORMALISED, Preprocessing

IMAGENET_BILINEAR = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224, "bilinear")
IMAGENET_BICUBIC = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224, "bicubic")
UNNORMALISED_BICUBIC = Preprocessing(UNNORMALISED.mean, UNNORMALISED.std, 224, "bicubic")


@dataclass(frozen=True)
class WeightsEntry:
    """One named set of weights.

    ``sha256`` is the full SHA-256 of the file or its leading hex digits (torchvision puts the first 8 in the
    file name); ``None`` where no checksum is published. ``url`` is ``None`` where the file has to be made by
    hand (converted from another framework): ``instructions`` then say how.
    """

    name: str
    arch: str
    method: str
    layout: str
    file_name: str
    url: str | None
    sha256: str | None
    preprocessing: Preprocessing
    licence: str
    homepage: str
    embedding: str = "pre_logits"
    timm_kwargs: dict = field(default_factory=dict)
    instructions: str = ""

    def embed_dim(self) -> int:
        features = num_features(self.arch, tuple(sorted(self.timm_kwargs.items())))
        return features * embedding_recipe(self.embedding)[1]

    def source(self) -> str:
        return self.url or f"convert by hand: {self.instructions}"


@functools.cache
def num_features(arch: str, timm_kwargs: tuple[tuple[str, object], ...]) -> int:
    """The architecture's feature size, built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return int(timm.create_model(arch, pretrained=False, num_classes=0, **dict(timm_kwargs)).num_features)


def _fb(path: str) -> str:
    return f"https://dl.fbaipublicfiles.com/{path}"


def _dino_vit(name: str, arch: str, stem: str) -> WeightsEntry:
    return WeightsEntry(
        name, arch, "DINO", "dino", f"{stem}.pth", _fb(f"dino/{stem}/{stem}.pth"), None, IMAGENET_BICUBIC,
        "Apache-2.0", "https://github.com/facebookresearch/dino", embedding="cls_last4",
    )


_ENTRIES = (
    WeightsEntry(
        "resnet50.tv_in1k", "resnet50", "supervised (torchvision V1 recipe)", "torchvision",
        "resnet50-0676ba61.pth", "https://download.pytorch.org/models/resnet50-0676ba61.pth", "0676ba61",
        IMAGENET_BILINEAR, "BSD-3-Clause", "https://pytorch.org/vision/stable/models.html",
    ),
    WeightsEntry(
        "resnet50.tv2_in1k", "resnet50", "supervised (torchvision V2 recipe)", "torchvision",
        "resnet50-11ad3fa6.pth", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", "11ad3fa6",
        IMAGENET_BILINEAR, "BSD-3-Clause", "https://pytorch.org/vision/stable/models.html",
    ),
    WeightsEntry(
        "resnet50.simclr_in1k", "resnet50", "SimCLR v1 (TensorFlow, converted)", "simclr_converted",
        "resnet50-1x.pth", None, None, UNNORMALISED_BICUBIC, "Apache-2.0",
        "https://github.com/google-research/simclr",
        instructions="download ResNet50_1x from https://github.com/google-research/simclr (SimCLR v1 "
        "pretrained checkpoints) and convert it with https://github.com/tonylins/simclr-converter: "
        "`python convert.py ResNet50_1x/model.ckpt-225206 resnet50-1x.pth`",
    ),
    WeightsEntry(
        "resnet50.simclr_bolts_in1k", "resnet50", "SimCLR (Lightning Bolts)", "bolts_simclr",
        "simclr_imagenet.ckpt",
        "https://pl-bolts-weights.s3.us-east-2.amazonaws.com/simclr/bolts_simclr_imagenet/simclr_imagenet.ckpt",
        None, IMAGENET_BILINEAR, "Apache-2.0", "https://github.com/Lightning-Universe/lightning-bolts",
    ),
    WeightsEntry(
        "resnet50.swav_in1k", "resnet50", "SwAV (800 epochs)", "swav", "swav_800ep_pretrain.pth.tar",
        _fb("deepcluster/swav_800ep_pretrain.pth.tar"), None, IMAGENET_BILINEAR, "CC-BY-NC-4.0",
        "https://github.com/facebookresearch/swav",
    ),
    WeightsEntry(
        "resnet50.dino_in1k", "resnet50", "DINO", "dino", "dino_resnet50_pretrain.pth",
        _fb("dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"), None, IMAGENET_BICUBIC, "Apache-2.0",
        "https://github.com/facebookresearch/dino",
    ),
    _dino_vit("vit_small_patch16_224.dino", "vit_small_patch16_224", "dino_deitsmall16_pretrain"),
    _dino_vit("vit_small_patch8_224.dino", "vit_small_patch8_224", "dino_deitsmall8_pretrain"),
    _dino_vit("vit_base_patch16_224.dino", "vit_base_patch16_224", "dino_vitbase16_pretrain"),
    WeightsEntry(
        "resnet50.mocov2_in1k", "resnet50", "MoCo v2 (800 epochs)", "mocov2",
        "moco_v2_800ep_pretrain.pth.tar",
        _fb("moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar"), None, IMAGENET_BILINEAR,
        "MIT", "https://github.com/facebookresearch/moco",
    ),
    WeightsEntry(
        "resnet50.mocov3_in1k", "resnet50", "MoCo v3 (1000 epochs)", "mocov3", "r-50-1000ep.pth.tar",
        _fb("moco-v3/r-50-1000ep/r-50-1000ep.pth.tar"), None, IMAGENET_BILINEAR, "CC-BY-NC-4.0",
        "https://github.com/facebookresearch/moco-v3",
    ),
    WeightsEntry(
        # MoCo v3's ViT-S has 12 attention heads (timm's vit_small has 6; the weights have the same shapes)
        "vit_small_patch16_224.mocov3", "vit_small_patch16_224", "MoCo v3 (300 epochs)", "mocov3",
        "vit-s-300ep.pth.tar", _fb("moco-v3/vit-s-300ep/vit-s-300ep.pth.tar"), None, IMAGENET_BILINEAR,
        "CC-BY-NC-4.0", "https://github.com/facebookresearch/moco-v3", timm_kwargs={"num_heads": 12},
    ),
    WeightsEntry(
        "resnet50.byol_in1k", "resnet50", "BYOL (JAX, converted)", "byol_converted",
        "pretrain_res50x1.pth.tar",
        None, None, IMAGENET_BICUBIC, "Apache-2.0",
        "https://github.com/google-deepmind/deepmind-research/tree/master/byol",
        instructions="download https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl "
        "and convert it with https://github.com/chigur/byol-convert: "
        "`python convert.py pretrain_res50x1.pkl pretrain_res50x1.pth.tar`",
    ),
    WeightsEntry(
        "resnet50.barlowtwins_in1k", "resnet50", "Barlow Twins (1000 epochs)", "barlowtwins", "resnet50.pth",
        _fb("barlowtwins/ljng/resnet50.pth"), None, IMAGENET_BILINEAR, "MIT",
        "https://github.com/facebookresearch/barlowtwins",
    ),
)

REGISTRY: dict[str, WeightsEntry] = {entry.name: entry for entry in _ENTRIES}


def get_entry(name: str) -> WeightsEntry | None:
    """The registry entry called ``name``, or None when ``name`` is not a registered set of weights."""
    return REGISTRY.get(name)
