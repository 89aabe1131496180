"""The preprocessing a set of weights was trained with; applied on the device inside the backbone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Mean/std on the [0, 1] scale, the input size and interpolation the weights expect.

    ``mean=(0, 0, 0), std=(1, 1, 1)`` means inputs in [0, 1], not normalised (SimCLR v1 converted weights).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)


UNNORMALISED = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def from_timm_cfg(cfg: Mapping) -> Preprocessing:
    """The preprocessing a timm pretrained config gives its weights (timm's defaults where it is silent)."""
    return Preprocessing(
        mean=tuple(cfg.get("mean") or IMAGENET_MEAN),
        std=tuple(cfg.get("std") or IMAGENET_STD),
        input_size=int((cfg.get("input_size") or (3, 224, 224))[-1]),
        interpolation=cfg.get("interpolation") or "bilinear",
    )
