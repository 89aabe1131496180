"""Attention maps of a ViT (Caron et al., 2021, DINO): how strongly the class token attends to each patch
in the last block, per head. They show where the model looks, not why it decides (no class enters them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def recorded_attention(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside, every forward pass of the timm attention ``module`` appends its ``B x heads x N x N``
    attention weights (after the softmax) to the yielded list. timm's fused kernel never forms the weights,
    so the module runs its explicit path meanwhile (the same outputs, to float rounding)."""
    recorded: list[torch.Tensor] = []
    fused = module.fused_attn
    handle = module.attn_drop.register_forward_hook(lambda _m, _inputs, output: recorded.append(output))
    module.fused_attn = False
    try:
        yield recorded
    finally:
        module.fused_attn = fused
        handle.remove()


def cls_attention(attention: torch.Tensor, prefix_tokens: int, grid: tuple[int, int]) -> torch.Tensor:
    """``B x heads x h x w``: the class token's attention (row 0) to the patch tokens, on the patch grid."""
    to_patches = attention[:, :, 0, prefix_tokens:]
    if to_patches.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{to_patches.shape[-1]} patch tokens do not form a {grid[0]} x {grid[1]} grid")
    return to_patches.reshape(*to_patches.shape[:2], *grid)
