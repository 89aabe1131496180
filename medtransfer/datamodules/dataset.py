"""The one torch Dataset: a source plus a transform, producing docs/architecture.md batch items."""

from __future__ import annotations

import random

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from .errors import SkippedSample
from .samplers import sample_seed
from .sources import Source


class TransformedDataset(Dataset):
    """Items ``{"image": 3 x H x W uint8, "label", "id"}`` from a source.

    A key ``(index, epoch)`` (from ``EpochSampler``) seeds the augmentation from ``(seed, epoch, index)``, so
    an epoch's augmented images do not depend on the number of workers or processes and repeat after a resume.
    An image the source skips (``skip_corrupt``) becomes ``None``, which ``collate_skipping`` leaves out.
    """

    def __init__(self, source: Source, transform: A.Compose, seed: int = 0, multilabel: bool = False) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.multilabel = multilabel

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        index, epoch = key if isinstance(key, tuple) else (int(key), None)
        if epoch is not None:
            seed_pipeline(self.transform, sample_seed(self.seed, epoch, index))
        try:
            raw = self.source.load_pixels(index)
        except SkippedSample:
            return None
        return self.item(raw, index)

    def item(self, raw: np.ndarray, index: int) -> dict:
        """The batch item of sample ``index`` from its decoded uint8 image, grey ``H x W`` or
        ``H x W x 3``."""
        image = self.transform(image=raw)["image"]
        return {
            "image": channels_first(image),
            "label": self._label(index),
            "id": self.source.ids[index],
        }

    def _label(self, index: int) -> torch.Tensor:
        label = self.source.labels[index]
        if self.multilabel:
            return torch.as_tensor(np.asarray(label, dtype=np.float32))
        return torch.as_tensor(int(label), dtype=torch.long)


def seed_pipeline(transform, seed: int) -> None:
    """Seed an albumentations pipeline through ONE generator pair that all its transforms draw from in turn.
    Albumentations' own ``set_random_seed`` gives every transform a generator seeded alike, so their first
    draws are equal: a horizontal and a vertical flip of p=0.5 would always happen together, and a rotation
    of p=0.8 with them; it also builds a generator pair per transform, which costs more than a flip. Other
    transforms (``MultiViewTransform``) seed themselves."""
    if isinstance(transform, A.BaseCompose):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    else:
        transform.set_random_seed(seed)


def channels_first(image: np.ndarray) -> torch.Tensor:
    """``3 x H x W`` uint8 from ``H x W x 3`` or grey ``H x W``; grey is repeated as a view (no copy), so the
    collated batch holds the only three-channel copy (docs/architecture.md, "A batch"). Colour is transposed
    by numpy: torch's strided uint8 copy is several times slower, and so is collating strided images."""
    if image.ndim == 2 or image.shape[2] == 1:
        return torch.from_numpy(np.ascontiguousarray(image.reshape(1, *image.shape[:2]))).expand(3, -1, -1)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def collate_skipping(items: list[dict | None]) -> dict:
    """Default collation of the items that were read; skipped (unreadable) images leave the batch one smaller.
    A batch in which every image was skipped cannot be trained on, so it is an error naming the problem."""
    kept = [item for item in items if item is not None]
    if not kept:
        raise RuntimeError(
            f"all {len(items)} images of a batch were unreadable and skipped (skip_corrupt: true); see the "
            "warnings above for the files, and fix or remove them"
        )
    return default_collate(kept)
