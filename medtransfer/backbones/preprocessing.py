"""The preprocessing a set of weights was trained with; applied on the device inside the backbone."""

from __future__ import annotations

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


IMAGENET = Preprocessing()
UNNORMALISED = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
