"""The preprocessing a set of weights was trained with; applied on the device inside the backbone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from ..errors import ConfigValueError

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


def with_normalisation(preprocessing: Preprocessing, normalisation: Mapping | None) -> Preprocessing:
    """``preprocessing`` with the mean and std of ``normalisation`` when given.

    For weights trained from scratch on a dataset's own statistics (MedMNIST v2: 0.5 and 0.5); the values are
    on the [0, 1] scale, three per key.
    """
    if normalisation is None:
        return preprocessing
    values = dict(normalisation)
    mean, std = values.pop("mean", None), values.pop("std", None)
    if values or not (is_triple(mean) and is_triple(std)) or min(std) <= 0:
        raise ConfigValueError(f"model.init_args.normalisation={dict(normalisation)}: expected "
                               "{mean: [m, m, m], std: [s, s, s]} on the [0, 1] scale, every std above 0")
    if max(mean) > 1 or min(mean) < 0 or max(std) > 1:
        scaled = {"mean": [round(v / 255, 4) for v in mean], "std": [round(v / 255, 4) for v in std]}
        raise ConfigValueError(
            f"model.init_args.normalisation={dict(normalisation)}: images reach the model on the [0, 1] "
            "scale, where every mean lies in [0, 1] and every std is at most 1 (these look like 0-255 "
            f"values, which would make every image nearly one colour: divided by 255 they are {scaled})")
    return replace(preprocessing, mean=tuple(map(float, mean)), std=tuple(map(float, std)))


def is_triple(value) -> bool:
    """Three numbers, one per channel."""
    return (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
