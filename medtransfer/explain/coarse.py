"""Maps too coarse to point anywhere. A ResNet-18's last stage is 1 x 1 at 32 px: its Grad-CAM is one number,
which upsampled and scaled to the colour range draws rounding noise as hot edges. Where the default layer's
map would have fewer than ``MIN_MAP_SIDE`` cells on a side, the map is drawn from the latest earlier stage
that has enough, and a warning names the layer, the map size and the image size."""

from __future__ import annotations

import torch

from .gradcam import channels_first
from .targets import MIN_MAP_SIDE, Target


def map_size(target: Target, recorded: torch.Tensor) -> tuple[int, int]:
    """The spatial size of a CNN layer's ``B x C x h x w`` (or channels-last ``B x h x w x C``) output."""
    grid = channels_first(recorded, target.channels_last)
    return int(grid.shape[-2]), int(grid.shape[-1])


def is_coarse(size: tuple[int, int]) -> bool:
    return min(size) < MIN_MAP_SIDE


def drawn_layer(target: Target, records: dict[str, list[torch.Tensor]]) -> str:
    """The layer the map is drawn from: the target's, unless it is a default CNN stage whose map is coarse
    and an earlier stage's map is not (then the latest such stage)."""
    if not target.earlier or not is_coarse(map_size(target, records[target.layer][-1])):
        return target.layer
    fine = [name for name, _ in target.earlier
            if records[name] and not is_coarse(map_size(target, records[name][-1]))]
    return fine[-1] if fine else target.layer


def coarse_warning(target: Target, backbone: str, own: tuple[int, int], drawn: str,
                   drawn_size: tuple[int, int], image_size: tuple[int, int]) -> str | None:
    """One line saying that the target layer's map (``own`` cells) is coarser than ``MIN_MAP_SIDE`` on a side,
    and what was drawn instead; None for a map fine enough."""
    what = "Grad-CAM" if target.method == "gradcam" else "attention map"
    start = (f"{what} of {backbone}: {target.layer} gives a {own[0]} x {own[1]} map for {image_size[0]} x "
             f"{image_size[1]} images (under {MIN_MAP_SIDE} x {MIN_MAP_SIDE}, too coarse to show where "
             "anything lies)")
    if drawn != target.layer:
        return (f"{start}; drawing the earlier {drawn} ({drawn_size[0]} x {drawn_size[1]}) instead (name a "
                "layer to choose another)")
    if not is_coarse(own):
        return None
    if target.named:
        return f"{start}; kept because it was named"
    return f"{start}; no earlier layer gives a finer map: larger images would"
