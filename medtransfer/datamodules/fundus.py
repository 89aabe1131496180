"""Fundus photographs: crop the black border around the retina before resizing."""

from __future__ import annotations

import albumentations as A
import numpy as np


def retina_bounding_box(image: np.ndarray, threshold: int = 10) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the pixels brighter than ``threshold``; the whole image if none
    are."""
    grey = image.max(axis=2) if image.ndim == 3 else image
    rows = np.flatnonzero((grey > threshold).any(axis=1))
    cols = np.flatnonzero((grey > threshold).any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class CropRetinaBorder(A.ImageOnlyTransform):
    """Deterministic crop to the retina's bounding box (black camera border removed)."""

    def __init__(self, threshold: int = 10, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.threshold = threshold

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        top, bottom, left, right = retina_bounding_box(img, self.threshold)
        return np.ascontiguousarray(img[top:bottom, left:right])

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("threshold",)


class CircularMask(A.ImageOnlyTransform):
    """Black outside the circle inscribed in the image: a cropped, rotated view of a fundus photograph keeps
    the circular field of view the camera gives every real one."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        height, width = img.shape[:2]
        rows, cols = np.ogrid[:height, :width]
        centre_y, centre_x, radius = (height - 1) / 2, (width - 1) / 2, min(height, width) / 2
        outside = (rows - centre_y) ** 2 + (cols - centre_x) ** 2 > radius**2
        masked = img.copy()
        masked[outside] = 0
        return masked

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()
