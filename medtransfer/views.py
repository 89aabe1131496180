"""The multi-view batch contract between the datamodules and self-supervised pretraining.

A self-supervised model says which views it trains on with a ``view_spec`` (a ``ViewSpec``); whoever runs
it hands that to the datamodule (``MedicalDataModule.serve_views``; the ``medtransfer`` CLI does this),
which then serves its training split as multi-view batches: ``views`` is a list of uint8
``B x 3 x S x S`` tensors (the global views first, each ``global_size`` px, then the local views of
multi-crop, each ``local_size`` px), next to ``label`` (ignored by pretraining) and ``id``. Like every batch,
views are not normalised: the backbone does that on the device. How a view is augmented follows the data's
modality (``medtransfer.datamodules.views``); this module only says how many views of which size and
strength.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import MedTransferError

VIEWS_KEY = "views"
MODALITIES = ("auto", "natural", "chest_xray", "histology", "fundus", "plain")
LOCAL_TO_GLOBAL = 96 / 224  # DINO's and SwAV's local/global crop sides


class ViewSpecError(MedTransferError, ValueError):
    """A view specification that cannot be built; the message names the key under model.init_args.views."""


@dataclass(frozen=True)
class ViewSpec:
    """How many views of each training image, of which size, crop scale and augmentation strength.

    Args:
        global_views: views at ``global_size`` (2 for SimCLR, MoCo, BYOL; 2 or more for DINO and SwAV).
        global_size: side of the global views (default: the data's ``image_size``).
        global_scale: area range of the random resized crops of global views, as fractions of the image.
        local_views: small multi-crop views (DINO, SwAV); 0 for the other methods.
        local_size: side of the local views (default: 96/224 of ``global_size``).
        local_scale: area range of the local crops.
        modality: augmentation family: ``auto`` (the data's augmentation preset: ``chest_xray``,
            ``histology``, ``fundus``, ``natural``; ``none`` gives ``plain``), or one of them by name.
        jitter: strength of the colour or intensity jitter (1 = the method papers' values for ``natural``).
        blur: Gaussian blur probability per global view, in order (the last value serves further views).
        local_blur: Gaussian blur probability of local views.
        solarize: solarisation probability per global view (``natural`` only: never on grey X-rays, fundus
            or histology).
    """

    global_views: int = 2
    global_size: int | None = None
    global_scale: tuple[float, float] = (0.2, 1.0)
    local_views: int = 0
    local_size: int | None = None
    local_scale: tuple[float, float] = (0.05, 0.3)
    modality: str = "auto"
    jitter: float = 1.0
    blur: tuple[float, ...] = (0.5,)
    local_blur: float = 0.5
    solarize: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale", "blur", "solarize"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if self.global_views < 1 or self.local_views < 0:
            raise ViewSpecError(f"model.init_args.views: global_views must be >= 1 and local_views >= 0, got "
                                f"{self.global_views} and {self.local_views}")
        for name in ("global_size", "local_size"):
            size = getattr(self, name)
            if size is not None and size < 8:
                raise ViewSpecError(f"model.init_args.views.{name}: {size} px is too small (at least 8)")
        for name in ("global_scale", "local_scale"):
            low, high = getattr(self, name) if len(getattr(self, name)) == 2 else (0.0, -1.0)
            if not 0 < low <= high <= 1:
                raise ViewSpecError(f"model.init_args.views.{name}: expected [low, high] with "
                                    f"0 < low <= high <= 1 (area fractions), got {list(getattr(self, name))}")
        if self.modality not in MODALITIES:
            raise ViewSpecError(f"model.init_args.views.modality: {self.modality!r} is not one of "
                                f"{list(MODALITIES)}")
        if self.jitter < 0:
            raise ViewSpecError(f"model.init_args.views.jitter must be >= 0, got {self.jitter}")
        for name in ("blur", "solarize"):
            values = getattr(self, name)
            if not values or not all(0 <= p <= 1 for p in values):
                raise ViewSpecError(f"model.init_args.views.{name}: expected probabilities in [0, 1] (one "
                                    f"per global view, the last repeating), got {list(values)}")
        if not 0 <= self.local_blur <= 1:
            raise ViewSpecError(f"model.init_args.views.local_blur must be in [0, 1], got {self.local_blur}")

    @classmethod
    def from_dict(cls, values: dict | None) -> ViewSpec:
        """The spec of a ``model.init_args.views`` mapping; an unknown key is an error naming the known
        ones."""
        values = dict(values or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ViewSpecError(f"model.init_args.views: unknown key(s) {unknown}; known: {known}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def num_views(self) -> int:
        return self.global_views + self.local_views

    def sizes(self, image_size: int) -> tuple[int, int]:
        """(global side, local side) in pixels for data served at ``image_size``."""
        side = self.global_size or image_size
        return side, self.local_size or max(8, round(side * LOCAL_TO_GLOBAL))

    def blur_of(self, view: int) -> float:
        """Blur probability of global view ``view``."""
        return self.blur[min(view, len(self.blur) - 1)]

    def solarize_of(self, view: int) -> float:
        return self.solarize[min(view, len(self.solarize) - 1)]
