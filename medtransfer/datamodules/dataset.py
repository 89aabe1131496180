"""The one torch Dataset: a source plus a transform, producing DESIGN.md batch items."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from .samplers import sample_seed
from .sources import Source


class TransformedDataset(Dataset):
    """Items ``{"image": 3 x H x W uint8, "label", "id"}`` from a source.

    A key ``(index, epoch)`` (from ``EpochSampler``) seeds the augmentation from ``(seed, epoch, index)``, so an
    epoch's augmented images do not depend on the number of workers or processes and repeat after a resume.
    """

    def __init__(self, source: Source, transform: A.Compose, seed: int = 0, multilabel: bool = False) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.multilabel = multilabel

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (int(key), None)
        if epoch is not None:
            self.transform.set_random_seed(sample_seed(self.seed, epoch, index))
        image = self.transform(image=self.source.load_image(index))["image"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
            "label": self._label(index),
            "id": self.source.ids[index],
        }

    def _label(self, index: int) -> torch.Tensor:
        label = self.source.labels[index]
        if self.multilabel:
            return torch.as_tensor(np.asarray(label, dtype=np.float32))
        return torch.as_tensor(int(label), dtype=torch.long)
