"""``create_backbone``: a name (registry weights or any timm architecture) and an optional checkpoint to a
Backbone."""

from __future__ import annotations

import timm

from .backbone import Backbone
from .preprocessing import Preprocessing


def create_backbone(
    name: str,
    checkpoint: str | None = None,
    embedding: str | None = None,
    resize_to: int | None = None,
    **model_kwargs,
) -> Backbone:
    """A Backbone for ``name``: a timm architecture with random initialisation (named pretrained weights and
    checkpoint files are resolved by the weights registry)."""
    if checkpoint is not None:
        raise NotImplementedError("loading checkpoints needs the weights registry")
    if name not in timm.list_models():
        raise ValueError(f"unknown backbone {name!r}: not a timm architecture (see timm.list_models())")
    model = timm.create_model(name, pretrained=False, num_classes=0, **model_kwargs)
    cfg = model.pretrained_cfg
    preprocessing = Preprocessing(
        mean=tuple(cfg.get("mean", Preprocessing.mean)),
        std=tuple(cfg.get("std", Preprocessing.std)),
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        interpolation=cfg.get("interpolation", "bilinear"),
    )
    backbone = Backbone(model, name, preprocessing, embedding=embedding or "pre_logits", resize_to=resize_to)
    _ = backbone.fingerprint  # of the weights as created, before any training changes them
    return backbone
