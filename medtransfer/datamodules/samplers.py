"""Samplers whose order depends only on (seed, epoch, rank): runs resume and repeat exactly, DDP counts each
evaluation sample once."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """Shuffled training order, reseeded each epoch, yielding ``(index, epoch)`` so augmentation can be
    seeded per sample (see ``TransformedDataset``). Lightning calls ``set_epoch``; with one process it is a
    plain shuffle."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for index in self.indices():
            yield (index, epoch)

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch, in order (what ``__iter__`` yields, without epochs)."""
        return list(super().__iter__())


class UnpaddedSampler(DistributedSampler):
    """Evaluation order split across ranks without padding: every sample is seen by exactly one rank, so
    metrics synchronised over ranks count the whole split once (DistributedSampler pads with duplicates)."""

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def indices(self) -> range:
        """This rank's indices, in order."""
        return range(self.rank, self.total_size, self.num_replicas)

    def __len__(self) -> int:
        return self.num_samples


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one sample's augmentation in one epoch."""
    value = ((seed * 1_000_003 + epoch) * 2_654_435_761 + index * 40_503) % (2**64)
    value ^= value >> 29
    return (value * 0xBF58476D1CE4E5B9 >> 32) % (2**32)
