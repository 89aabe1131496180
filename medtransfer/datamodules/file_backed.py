"""The base of the datamodules that read image files under a folder (public datasets as they unpack, and your
own folders and CSVs): where the files are, how the splits the files do not give are carved, and what to do
with an image that cannot be read."""

from __future__ import annotations

from .base import MedicalDataModule


class FileBackedDataModule(MedicalDataModule):
    """A dataset read from files under ``root``. A split the files do not give is carved from the training
    images: seeded by ``split_seed``, stratified by label and grouped by patient where patients are known.

    Args:
        root: the dataset folder.
        val_fraction: share of the training images carved out for validation when the dataset has no
            validation split of its own.
        test_fraction: share of the training images carved out for testing when the dataset has no test split
            of its own.
        split_seed: seed of the carved splits (independent of ``fraction_seed``).
        skip_corrupt: leave out missing or unreadable images (logged and counted) instead of failing.
        image_size, batch_size, augmentation, ...: see ``MedicalDataModule``.
    """

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        skip_corrupt: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.skip_corrupt = skip_corrupt

    def layout_fingerprint(self) -> dict:
        """What, besides the samples' ids and labels, decides what the files mean (e.g. the class folders,
        the CSV read): nothing by default."""
        return {}

    def data_fingerprint(self) -> dict:
        return super().data_fingerprint() | self.layout_fingerprint() | {"split_seed": self.split_seed}
