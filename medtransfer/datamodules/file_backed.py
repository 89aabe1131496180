"""The base of the datamodules that read image files under a folder (public datasets as they unpack, and your
own folders and CSVs): where the files are, how the splits the files do not give are carved, and what to do
with an image that cannot be read."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigValueError
from .base import MedicalDataModule
from .cache import CacheError, CacheSettings, build_cache, cache_folder, file_sources, read_from_cache
from .config_values import check_flag, check_integer, check_share, config_key
from .sources import Source
from .transforms import build_transform


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
        cache_dir: read pixels from the cache that ``medtransfer prepare --cache true`` writes under this
            folder instead of decoding the original files (docs/running-fast.md); a missing or stale cache
            (files or settings changed since) is refused with the command that rebuilds it.
        cache_size: short side of the cached images (default ``image_size``; at least ``image_size``).
        image_size, batch_size, augmentation, ...: see ``MedicalDataModule``.
    """

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        skip_corrupt: bool = False,
        cache_dir: str | None = None,
        cache_size: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_split_settings(val_fraction, test_fraction, split_seed)
        check_flag("skip_corrupt", skip_corrupt)
        check_cache_size(cache_size, self.image_size)
        self.root = root
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.skip_corrupt = skip_corrupt
        self.cache_dir = cache_dir
        self.cache_size = self.image_size if cache_size is None else cache_size

    def layout_fingerprint(self) -> dict:
        """What, besides the samples' ids and labels, decides what the files mean (e.g. the class folders,
        the CSV read): nothing by default."""
        return {}

    def data_fingerprint(self) -> dict:
        fingerprint = super().data_fingerprint() | self.layout_fingerprint() | {"split_seed": self.split_seed}
        if self.cache_dir is not None:  # resized once more: not the same pixels as the originals
            fingerprint["cache"] = {"size": self.cache_size, "crop_border": self.crop_border}
        return fingerprint

    # -- prepared cache (medtransfer.datamodules.cache) -----------------------------------------------------
    @property
    def crop_border(self) -> bool:
        return self.augmentation == "fundus"

    def cache_settings(self, sources: dict[str, Source]) -> CacheSettings:
        grey = any(source.grey for source in file_sources(sources))
        return CacheSettings(size=self.cache_size, crop_border=self.crop_border, grey=grey)

    def cache_location(self, sources: dict[str, Source]) -> Path:
        if self.cache_dir is None:
            raise CacheError(f"{self.name}: set data.init_args.cache_dir to the prepared cache's folder")
        return cache_folder(self.cache_dir, self.name, self.root, self.cache_settings(sources))

    def prepare_cache(self, workers: int | None = None) -> Path:
        """Decode every image file of the dataset into the cache under ``cache_dir`` (replacing a stale
        one) over ``workers`` processes; ids, labels and splits keep coming from the dataset's own files."""
        sources = self.build_sources()
        return build_cache(sources, self.cache_location(sources), self.cache_settings(sources), self.name,
                           self.root, self.skip_corrupt, workers)

    def sources(self) -> dict[str, Source]:
        """The splits; with ``cache_dir``, their pixels come from the prepared cache."""
        if self._sources is None:
            sources = super().sources()
            if self.cache_dir is not None:
                self._sources = None  # a refused cache is never read around by a second call
                settings = self.cache_settings(sources)
                self._sources = read_from_cache(sources, self.cache_location(sources), settings)
        return self._sources

    def transform(self, train: bool):
        return build_transform(self.augmentation, self.image_size, train,
                               crop_border=self.cache_dir is None)  # the cache holds the retina cropped


def check_split_settings(val_fraction: float, test_fraction: float, split_seed: int) -> None:
    """Carved shares in [0, 1) that leave training images, and a seed numpy accepts (0 is allowed for a
    share: a dataset with that split of its own never carves it; carving with 0 is refused by
    ``splits.check_carved_shares``)."""
    check_share("val_fraction", val_fraction, "the share of the training images carved out for validation, "
                "e.g. 0.1")
    check_share("test_fraction", test_fraction, "the share of the training images carved out for testing, "
                "e.g. 0.2")
    if val_fraction + test_fraction >= 1:
        raise ConfigValueError(
            f"{config_key('val_fraction')} + {config_key('test_fraction')} = {val_fraction} + "
            f"{test_fraction} leaves no training images: expected a sum below 1 (e.g. 0.1 and 0.2)"
        )
    check_integer("split_seed", split_seed, 0, "the seed of the carved splits, e.g. 0")


def check_cache_size(cache_size: int | None, image_size: int) -> None:
    """No cached image smaller than the training size: training would enlarge it."""
    check_integer("cache_size", cache_size, 1, "the short side of the cached images; unset: image_size",
                  optional=True)
    if cache_size is not None and cache_size < image_size:
        raise ConfigValueError(
            f"{config_key('cache_size')}: {cache_size} is smaller than {config_key('image_size')} "
            f"{image_size}: training would enlarge the cached images; set cache_size to at least image_size "
            "(or leave it unset)"
        )
