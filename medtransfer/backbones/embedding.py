"""Embedding recipes: how a timm model's forward pass becomes one ``B x D`` vector per image."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

EmbeddingFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def pre_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """timm's embedding contract: pooled features before the classifier."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def cls_last4(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """DINO's linear-evaluation recipe for ViTs: the normed CLS tokens of the last 4 blocks, concatenated."""
    blocks = model.get_intermediate_layers(images, n=4, return_prefix_tokens=True, norm=True)
    return torch.cat([prefix[:, 0] for _, prefix in blocks], dim=-1)


RECIPES: dict[str, tuple[EmbeddingFn, int]] = {"pre_logits": (pre_logits, 1), "cls_last4": (cls_last4, 4)}


def embedding_recipe(name: str) -> tuple[EmbeddingFn, int]:
    """The recipe's function and how many times ``num_features`` its output holds."""
    if name not in RECIPES:
        raise ValueError(f"unknown embedding recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]
