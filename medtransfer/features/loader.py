"""Batches of cached features: a DataLoader stand-in whose batches are index slices of tensors in memory."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..datamodules.samplers import EpochSampler, UnpaddedSampler


class FeatureBatches:
    """Batches ``{"features": [B x D per backbone], "label", "id"}`` of features already in memory (on the
    training device when they fit), so an epoch costs a few tensor indexing ops and no DataLoader workers.

    The order comes from the same samplers as the image path: ``EpochSampler`` (seeded, reshuffled each epoch,
    sharded over DDP ranks) for training, ``UnpaddedSampler`` (each sample on exactly one rank) for
    evaluation. Lightning sets the epoch through ``sampler.set_epoch``, so with the same seed a cached and an
    online run see the same samples in the same batches.
    """

    batch_sampler = None  # Lightning inspects these DataLoader attributes; batches come from ``sampler`` here

    def __init__(
        self,
        features: list[torch.Tensor],
        labels: torch.Tensor,
        ids: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        n = len(labels)
        if any(len(f) != n for f in features) or len(ids) != n:
            raise ValueError(
                f"feature rows {[len(f) for f in features]}, {n} labels and {len(ids)} ids differ"
            )
        self.features = features
        self.labels = labels
        self.ids = np.asarray(ids).astype(object)  # a batch's id list then shares the strings
        self.batch_size = batch_size
        self.shuffle = shuffle
        rows = range(n)
        self.sampler = (
            EpochSampler(rows, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
            if shuffle
            else UnpaddedSampler(rows, num_replicas, rank)
        )

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        order = np.asarray(self.sampler.indices(), dtype=np.int64)
        contiguous = not self.shuffle and self.sampler.num_replicas == 1
        device = self.labels.device
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            index = (
                slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else torch.from_numpy(rows).to(device)
            )
            yield {
                "features": [_take(f, index) for f in self.features],
                "label": _take(self.labels, index),
                "id": self.ids[rows].tolist(),
            }


def _take(tensor: torch.Tensor, index: slice | torch.Tensor) -> torch.Tensor:
    """Rows of ``tensor``: a view for a slice, else ``index_select`` (on a CPU a few times faster than
    ``tensor[index]``)."""
    return tensor[index] if isinstance(index, slice) else tensor.index_select(0, index)
