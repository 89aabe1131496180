"""Grad-CAM (Selvaraju et al., 2017): where in a layer's feature map the evidence for one class lies.

Each channel ``k`` of the layer's activation ``A`` is weighted by ``alpha_k``, the spatial mean of the class
score's gradient over that channel; the map is ``ReLU(sum_k alpha_k A_k)`` at the layer's resolution."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``B x h x w`` maps from a layer's ``B x C x h x w`` activations and the class scores' gradients with
    respect to them."""
    if activations.shape != gradients.shape or activations.dim() != 4:
        raise ValueError(f"Grad-CAM needs B x C x h x w activations and gradients of the same shape, got "
                         f"{tuple(activations.shape)} and {tuple(gradients.shape)}")
    alpha = gradients.mean(dim=(2, 3), keepdim=True)
    return F.relu((alpha * activations).sum(dim=1))


def channels_first(activations: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A ``B x h x w x C`` layer output (timm models whose ``output_fmt`` is NHWC, e.g. Swin) as
    ``B x C x h x w``; any other tensor as it is."""
    return activations.permute(0, 3, 1, 2) if channels_last and activations.dim() == 4 else activations


def tokens_to_grid(tokens: torch.Tensor, prefix_tokens: int, grid: tuple[int, int]) -> torch.Tensor:
    """A ViT layer's ``B x N x C`` tokens as a ``B x C x h x w`` feature map of its patch tokens (the
    ``prefix_tokens`` class and register tokens dropped), so Grad-CAM reads it like a CNN's."""
    patches = tokens[:, prefix_tokens:]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form the {grid[0]} x {grid[1]} patch grid")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


@contextmanager
def recorded_output(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside, every forward pass of ``module`` appends its output tensor to the yielded list."""
    recorded: list[torch.Tensor] = []

    def keep(_module, _inputs, output) -> None:
        recorded.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = module.register_forward_hook(keep)
    try:
        yield recorded
    finally:
        handle.remove()
