"""Multi-view augmentation for self-supervised pretraining, per imaging modality (``medtransfer.views`` says
how many views of which size; this module says what a view of an X-ray, a slide or a fundus photo may look
like).

- ``natural``: random resized crop, horizontal flip, colour jitter, random grey, blur, solarisation (SimCLR,
  BYOL and DINO recipes).
- ``chest_xray``: grey X-rays stay grey: crop, horizontal flip, small rotation, brightness/contrast, blur; no
  colour jitter, no solarisation.
- ``histology``: crop, flips, 90 degree rotations, H&E stain jitter and mild colour jitter, blur.
- ``fundus``: the black camera border is cropped first (as in evaluation), then crop, flips, any rotation,
  brightness/contrast, mild colour; the view is masked to the circle the camera gives every real photo.
- ``plain`` (the data's ``none`` preset, e.g. CT slices, which have a left and a right): crop,
  brightness/contrast, blur; no flips, no colour.

Views are uint8 ``H x W x 3`` like every image here: normalisation happens in the backbone on the device.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from ..views import VIEWS_KEY, ViewSpec, ViewSpecError
from .dataset import TransformedDataset, channels_first, seed_pipeline
from .fundus import CircularMask, CropRetinaBorder
from .sources import as_rgb_uint8

# the data's augmentation preset -> the view family ``modality: auto`` picks
FAMILY_OF_PRESET = {"natural": "natural", "chest_xray": "chest_xray", "histology": "histology",
                    "fundus": "fundus", "none": "plain"}
VIEW_SEED_STRIDE = 0x9E3779B1  # decorrelates the views of one sample


def view_family(spec: ViewSpec, preset: str) -> str:
    """The augmentation family of ``spec`` for data whose augmentation preset is ``preset``."""
    if spec.modality != "auto":
        return spec.modality
    if preset not in FAMILY_OF_PRESET:
        families = sorted(set(FAMILY_OF_PRESET.values()))
        raise ViewSpecError(f"model.init_args.views.modality: auto cannot read the data's augmentation "
                            f"preset {preset!r}; set the modality to one of {families}")
    return FAMILY_OF_PRESET[preset]


class MultiViewTransform:
    """One albumentations pipeline per view; ``__call__`` turns an image into the list of its views."""

    def __init__(self, pipelines: list[A.Compose], family: str) -> None:
        self.pipelines = pipelines
        self.family = family

    def set_random_seed(self, seed: int) -> None:
        for i, pipeline in enumerate(self.pipelines):
            seed_pipeline(pipeline, (seed + i * VIEW_SEED_STRIDE) % 2**32)

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        return [pipeline(image=image)["image"] for pipeline in self.pipelines]


def build_view_transform(spec: ViewSpec, preset: str, image_size: int) -> MultiViewTransform:
    """The global views, then the local views, of ``spec`` for data of augmentation preset ``preset``."""
    family = view_family(spec, preset)
    global_size, local_size = spec.sizes(image_size)
    pipelines = [
        _view(family, global_size, spec.global_scale, spec.jitter, spec.blur_of(i), spec.solarize_of(i))
        for i in range(spec.global_views)
    ]
    pipelines += [_view(family, local_size, spec.local_scale, spec.jitter, spec.local_blur, 0.0)
                  for _ in range(spec.local_views)]
    return MultiViewTransform(pipelines, family)


def _view(family: str, size: int, scale: tuple[float, float], jitter: float, blur: float,
          solarize: float) -> A.Compose:
    crop = A.RandomResizedCrop(size=(size, size), scale=scale, interpolation=cv2.INTER_LINEAR,
                               area_for_downscale="image")
    blurring = A.GaussianBlur(blur_limit=0, sigma_limit=(0.1, max(0.2, 2.0 * size / 224)), p=blur)
    if family == "natural":
        steps = [crop, A.HorizontalFlip(p=0.5),
                 A.ColorJitter(brightness=0.4 * jitter, contrast=0.4 * jitter, saturation=0.2 * jitter,
                               hue=min(0.5, 0.1 * jitter), p=0.8),
                 A.ToGray(p=0.2), blurring, A.Solarize(threshold_range=(0.5, 0.5), p=solarize)]
    elif family == "chest_xray":
        steps = [crop, A.HorizontalFlip(p=0.5),
                 A.Affine(rotate=(-10, 10), border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
                 _intensity(0.25 * jitter), blurring]
    elif family == "histology":
        steps = [crop, A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0),
                 A.HEStain(method="random_preset", intensity_scale_range=(1 - 0.3 * jitter, 1 + 0.3 * jitter),
                           intensity_shift_range=(-0.1 * jitter, 0.1 * jitter), p=0.8),
                 A.ColorJitter(brightness=0.2 * jitter, contrast=0.2 * jitter, saturation=0.1 * jitter,
                               hue=min(0.5, 0.04 * jitter), p=0.5),
                 blurring]
    elif family == "fundus":
        steps = [CropRetinaBorder(), crop, A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5),
                 A.Rotate(limit=180, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
                 _intensity(0.3 * jitter),
                 A.ColorJitter(brightness=0, contrast=0, saturation=0.1 * jitter, hue=min(0.5, 0.02 * jitter),
                               p=0.5),
                 blurring, CircularMask()]  # last: the border stays black whatever the jitter did
    elif family == "plain":
        steps = [crop, _intensity(0.25 * jitter), blurring]
    else:
        raise ViewSpecError(f"model.init_args.views.modality: unknown family {family!r}")
    return A.Compose(steps)


def _intensity(strength: float) -> A.RandomBrightnessContrast:
    """Brightness and contrast, the same on every channel (grey stays grey)."""
    return A.RandomBrightnessContrast(brightness_limit=strength, contrast_limit=strength, p=0.8)


class MultiViewDataset(TransformedDataset):
    """Items ``{"views": [3 x S x S uint8, ...], "label", "id"}``; seeded per (seed, epoch, sample) like
    ``TransformedDataset``, so views repeat exactly after a resume and do not depend on the workers."""

    transform: MultiViewTransform

    def item(self, raw: np.ndarray, index: int) -> dict:
        # colour jitter and stain need three channels
        views = [channels_first(view) for view in self.transform(as_rgb_uint8(raw))]
        return {VIEWS_KEY: views, "label": self._label(index), "id": self.source.ids[index]}
