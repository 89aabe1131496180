"""PatchCamelyon (Veeling et al. 2018): histology patches of lymph node sections, binary.

96 x 96 histology patches of lymph node sections, binary (metastasis in the centre 32 x 32 pixels), official
split 262,144 / 32,768 / 32,768, read lazily from the published HDF5 files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..task import Task
from .base import MedicalDataModule
from .config_values import check_flag
from .download import download_file, gunzip_file
from .errors import BadLabelError, DatasetLayoutError, check_layout
from .images import file_stat, stat_stamp
from .sources import Source, as_rgb_uint8

log = logging.getLogger(__name__)

PAGE = "https://github.com/basveeling/pcam (files on https://zenodo.org/records/2546921)"
ZENODO = "https://zenodo.org/records/2546921/files/{name}?download=1"
SPLIT_FILES = {"train": "train", "val": "valid", "test": "test"}
FILE_MD5 = {  # of the published .h5.gz files
    "camelyonpatch_level_2_split_train_x.h5.gz": "1571f514728f59376b705fc836ff4b63",
    "camelyonpatch_level_2_split_train_y.h5.gz": "35c2d7259d906cfc8143347bb8e05be7",
    "camelyonpatch_level_2_split_valid_x.h5.gz": "d8c2d60d490dbd479f8199bdfa0cf6ec",
    "camelyonpatch_level_2_split_valid_y.h5.gz": "60a7035772fbdb7f34eb86d4420cf66a",
    "camelyonpatch_level_2_split_test_x.h5.gz": "d5b63470df7cfa627aeec8b9dc0c066e",
    "camelyonpatch_level_2_split_test_y.h5.gz": "2b85f58b927af9964a4c15b8f7e8f179",
}
PATCH_SHAPE = (96, 96, 3)


def pcam_file(split: str, kind: str) -> str:
    """``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`` (``kind`` is ``x`` or ``y``)."""
    return f"camelyonpatch_level_2_split_{SPLIT_FILES[split]}_{kind}.h5"


class HDF5Source(Source):
    """Images and labels of one PCam split, from its two HDF5 files.

    Images from dataset ``x`` (``N x 96 x 96 x 3`` uint8) and labels from dataset ``y`` (``N x 1 x 1 x 1``)
    of two HDF5 files. Labels are read at construction (a few hundred kB); images are read one at a time
    from a file opened lazily once per process, so DataLoader workers never share a handle and the 7 GB array
    is never loaded.
    """

    def __init__(self, x_path: Path, y_path: Path, id_prefix: str, groups: np.ndarray | None = None) -> None:
        self.x_path = str(x_path)
        self.labels = read_pcam_labels(y_path)
        self._check_images(len(self.labels), y_path)
        self.ids = [f"{id_prefix}_{i:06d}" for i in range(len(self.labels))]
        if groups is not None and len(groups) != len(self.labels):
            raise DatasetLayoutError(
                f"the metadata CSV next to {y_path} has {len(groups)} rows for "
                f"{len(self.labels)} labels; it belongs to another split or is incomplete"
            )
        self.groups = groups
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _check_images(self, n: int, y_path: Path) -> None:
        with open_hdf5(self.x_path) as handle:
            images = dataset_of(handle, "x", self.x_path)
            if images.ndim != 4 or tuple(images.shape[1:]) != PATCH_SHAPE or images.dtype != np.uint8:
                raise DatasetLayoutError(
                    f"{self.x_path}: dataset 'x' is {images.dtype} {tuple(images.shape)}, expected uint8 "
                    f"N x {' x '.join(map(str, PATCH_SHAPE))}"
                )
            if images.shape[0] != n:
                raise DatasetLayoutError(
                    f"{self.x_path} holds {images.shape[0]} images but {y_path} holds {n} "
                    "labels; the two files are from different splits or one is incomplete"
                )

    def load_image(self, index: int) -> np.ndarray:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.x_path, "r")
            self._pid = os.getpid()
        return as_rgb_uint8(self._file["x"][index])

    def pixel_stamps(self) -> list[str | None]:
        """The images file's size and modification time, for every sample (7 GB are not hashed)."""
        return [stat_stamp(file_stat(self.x_path))] * len(self.ids)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = None  # h5py handles cannot cross processes; each worker opens its own
        return state


def open_hdf5(path: str | Path) -> h5py.File:
    """The HDF5 file at ``path``, opened read-only; a file h5py cannot read is a ``DatasetLayoutError``."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetLayoutError(
            f"{path}: not a readable HDF5 file ({err}); download it again from {PAGE}"
        ) from None


def dataset_of(handle: h5py.File, key: str, path: str | Path) -> h5py.Dataset:
    """The HDF5 dataset ``key`` of an open file; a missing one is a ``DatasetLayoutError`` naming the keys."""
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        raise DatasetLayoutError(
            f"{path}: no HDF5 dataset {key!r} (found keys {list(handle.keys())}); PCam files "
            f"have 'x' (images) and 'y' (labels)"
        )
    return handle[key]


def read_pcam_labels(path: Path) -> np.ndarray:
    """The ``y`` dataset as ``N`` int64 in {0, 1}; ``N x 1 x 1 x 1`` (published) and ``N`` are accepted."""
    with open_hdf5(path) as handle:
        raw = dataset_of(handle, "y", path)
        if raw.ndim < 1 or int(np.prod(raw.shape[1:])) != 1:
            raise DatasetLayoutError(
                f"{path}: dataset 'y' has shape {tuple(raw.shape)}, expected N x 1 x 1 x 1"
            )
        labels = raw[()].reshape(-1).astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels > 1))
    if bad.size:
        raise BadLabelError(
            f"{path}: label {labels[bad[0]]} at index {bad[0]} ({bad.size} in all) is outside "
            "{0, 1} (normal, metastasis)"
        )
    return labels


class PCam(MedicalDataModule):
    """PatchCamelyon from ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`` in ``root``.

    Official train/valid/test splits. When ``camelyonpatch_level_2_split_*_meta.csv`` (published alongside) is
    present, its ``wsi`` column (the slide a patch comes from) groups patches for label fractions.

    Args:
        root: folder with the (decompressed) HDF5 files.
        download: fetch the files from Zenodo (~7.5 GB, MD5-checked) and decompress them when absent.
        image_size, batch_size, ...: see ``MedicalDataModule``; default augmentation ``histology``.
    """

    default_augmentation = "histology"

    def __init__(self, root: str, download: bool = False, image_size: int = 96, **kwargs) -> None:
        super().__init__(image_size=image_size, **kwargs)
        check_flag("download", download)
        self.root = root
        self.download = download
        self.task = Task("binary", ("normal", "metastasis"))

    def prepare_data(self) -> None:
        if self.download:
            fetch_pcam(Path(self.root).expanduser())

    def build_sources(self) -> dict[str, Source]:
        expected = [pcam_file(split, kind) for split in SPLIT_FILES for kind in ("x", "y")]
        root = Path(self.root).expanduser()
        gzipped = [name for name in expected if (root / f"{name}.gz").exists() and not (root / name).exists()]
        hint = ""
        if gzipped:
            hint = (
                f"Found {len(gzipped)} of them still gzipped ({gzipped[0]}.gz ...): decompress them with "
                f"`gunzip {root}/*.h5.gz`, or set data.init_args.download: true to decompress them."
            )
        root = check_layout(self.name, root, expected, f"{PAGE}, or set data.init_args.download: true", hint)
        return {
            split: HDF5Source(
                root / pcam_file(split, "x"),
                root / pcam_file(split, "y"),
                SPLIT_FILES[split],
                slide_groups(root, split),
            )
            for split in SPLIT_FILES
        }


def slide_groups(root: Path, split: str) -> np.ndarray | None:
    """The ``wsi`` column of the split's metadata CSV, when present."""
    path = root / f"camelyonpatch_level_2_split_{SPLIT_FILES[split]}_meta.csv"
    if not path.exists():
        return None
    meta = pd.read_csv(path)
    if "wsi" not in meta.columns:
        raise DatasetLayoutError(
            f"{path}: no 'wsi' column (found {list(meta.columns)}); delete the file or "
            f"download it again from {PAGE}"
        )
    return meta["wsi"].astype(str).to_numpy()


def fetch_pcam(root: Path) -> None:
    """Download (when absent) and decompress the six PCam files into ``root``."""
    for gz_name, md5 in FILE_MD5.items():
        target = root / gz_name.removesuffix(".gz")
        if target.exists():
            continue
        gz_path = download_file(ZENODO.format(name=gz_name), root / gz_name, md5, get_from=PAGE)
        gunzip_file(gz_path, target)
