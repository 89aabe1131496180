"""albumentations pipelines per imaging modality. All keep ``H x W x 3`` uint8: normalisation is the
backbone's job (docs/architecture.md, "A batch")."""

from __future__ import annotations

from typing import Literal

import albumentations as A
import cv2

PRESETS = ("none", "natural", "histology", "fundus", "chest_xray")
# as a type: the config parser (and a benchmark's --dry_run) refuses a misspelt preset before anything runs
Preset = Literal[PRESETS]


def build_transform(preset: str, image_size: int, train: bool, crop_border: bool = True) -> A.Compose:
    """The train (augmenting) or eval (deterministic resize) pipeline of a modality preset; ``crop_border``:
    fundus photos are cropped to the retina first (off for a prepared cache, which holds them cropped)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {list(PRESETS)}")
    resize = [A.Resize(image_size, image_size, interpolation=cv2.INTER_AREA)]
    if preset == "fundus" and crop_border:
        from .fundus import CropRetinaBorder

        resize = [CropRetinaBorder(), *resize]
    if not train or preset == "none":
        return A.Compose(resize)
    return A.Compose(resize + _augmentations(preset, image_size))


def _augmentations(preset: str, image_size: int) -> list:
    if preset == "natural":
        return [A.HorizontalFlip(p=0.5)]
    if preset == "histology":
        return [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.04, p=0.8),
        ]
    if preset == "fundus":
        return [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Rotate(limit=180, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.8),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),
        ]
    # chest X-ray: no vertical flip (anatomy has an up), small geometric jitter
    return [
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.8),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),
    ]
