"""MedMNIST v2 (Yang et al. 2023): the 2D datasets as published, with their official splits.

The files are ``<flag>.npz`` (28 px) or ``<flag>_<size>.npz`` (64/128/224 px) with arrays
``{train,val,test}_{images,labels}``.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..task import Task
from .base import MedicalDataModule
from .config_values import check_choice, check_flag
from .download import download_file
from .errors import BadLabelError, DatasetLayoutError, check_layout
from .npz_arrays import default_cache_dir, load_npz, unpack_large
from .sources import ArraySource, Source

log = logging.getLogger(__name__)

PAGE = "https://medmnist.com (files on https://zenodo.org/records/10519652)"
ZENODO = "https://zenodo.org/records/10519652/files/{name}?download=1"
SIZES = (28, 64, 128, 224)


@dataclass(frozen=True)
class Flag:
    """What one MedMNIST dataset asks: task, class names, modality preset and the 28 px file's MD5."""

    kind: str
    classes: tuple[str, ...]
    augmentation: str
    md5: str
    ordinal: bool = False


ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)
FLAGS: dict[str, Flag] = {
    "pathmnist": Flag(
        "multiclass",
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
        "histology",
        "a8b06965200029087d5bd730944a56c1",
    ),
    "chestmnist": Flag(
        "multilabel",
        (
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
        "chest_xray",
        "02c8a6516a18b556561a56cbdd36c4a8",
    ),
    "dermamnist": Flag(
        "multiclass",
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
        "natural",
        "0744692d530f8e62ec473284d019b0c7",
    ),
    "octmnist": Flag(
        "multiclass",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        "natural",
        "c68d92d5b585d8d81f7112f81e2d0842",
    ),
    "pneumoniamnist": Flag(
        "binary", ("normal", "pneumonia"), "chest_xray", "28209eda62fecd6e6a2d98b1501bb15f"
    ),
    "retinamnist": Flag(
        "multiclass", ("0", "1", "2", "3", "4"), "fundus", "bd4c0672f1bba3e3a89f0e4e876791e4", ordinal=True
    ),
    "breastmnist": Flag(
        "binary", ("malignant", "normal, benign"), "natural", "750601b1f35ba3300ea97c75c52ff8f6"
    ),
    "bloodmnist": Flag(
        "multiclass",
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
        "histology",
        "7053d0359d879ad8a5505303e11de1dc",
    ),
    "tissuemnist": Flag(
        "multiclass",
        (
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ),
        "histology",
        "ebe78ee8b05294063de985d821c1c34b",
    ),
    # CT slices have a left and a right (kidney-left / kidney-right): no flips
    "organamnist": Flag("multiclass", ORGANS, "none", "866b832ed4eeba67bfb9edee1d5544e6"),
    "organcmnist": Flag("multiclass", ORGANS, "none", "0afa5834fb105f7705a7d93372119a21"),
    "organsmnist": Flag("multiclass", ORGANS, "none", "e5c39f1af030238290b9557d9503af9d"),
}


# as types, so that the config parser (and a benchmark's --dry_run) refuses a misspelt flag or an unpublished
# size, naming the valid ones, before anything runs
FlagName = Literal[tuple(FLAGS)]
Resolution = Literal[SIZES]


def flag_task(flag: str) -> Task:
    """The task of a MedMNIST dataset: its kind and classes, scored by kappa when ordinal, else by AUROC."""
    info = FLAGS[flag]
    return Task(
        info.kind, info.classes, ordinal=info.ordinal, primary_metric="kappa" if info.ordinal else "auroc"
    )


def file_names(flag: str, size: int) -> list[str]:
    """Accepted file names, preferred first: ``<flag>.npz`` is the 28 px file."""
    return [f"{flag}.npz", f"{flag}_28.npz"] if size == 28 else [f"{flag}_{size}.npz"]


class MedMNIST(MedicalDataModule):
    """One 2D MedMNIST dataset from its ``.npz`` file in ``root``.

    Args:
        root: folder with ``<flag>.npz`` / ``<flag>_<size>.npz`` (e.g. ``~/.medmnist``).
        flag: the dataset (``pathmnist``, ``chestmnist``, ``dermamnist``, ``octmnist``, ``pneumoniamnist``,
            ``retinamnist``, ``breastmnist``, ``bloodmnist``, ``tissuemnist``, ``organ{a,c,s}mnist``).
        size: the published resolution (28, 64, 128 or 224).
        download: fetch the file from Zenodo when absent (MD5-checked for 28 px).
        cache_dir: where arrays over 1 GiB (the 128 and 224 px files of the large datasets) are unpacked once
            and memory-mapped, so all processes and workers share one copy (default ``$MEDTRANSFER_CACHE/npz``
            or ``~/.cache/medtransfer/npz``; delete it freely).
        image_size: side fed to the model (default: ``size``).
        batch_size, ...: see ``MedicalDataModule``; the default augmentation follows the modality.
    """

    def __init__(
        self,
        root: str,
        flag: FlagName = "pneumoniamnist",
        size: Resolution = 28,
        download: bool = False,
        cache_dir: str | None = None,
        image_size: int | None = None,
        **kwargs,
    ) -> None:
        check_choice("flag", flag, sorted(FLAGS), what="MedMNIST 2D dataset")
        check_choice("size", size, SIZES, what="MedMNIST resolution")
        check_flag("download", download)
        self.default_augmentation = FLAGS[flag].augmentation
        super().__init__(image_size=image_size or size, **kwargs)
        self.root = root
        self.flag = flag
        self.size = size
        self.download = download
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.task = flag_task(flag)

    @property
    def name(self) -> str:
        return f"MedMNIST-{self.flag}"

    def path(self) -> Path:
        root = Path(self.root).expanduser()
        names = file_names(self.flag, self.size)
        found = [root / name for name in names if (root / name).exists()]
        if found:
            return found[0]
        return (
            check_layout(self.name, root, names[:1], f"{PAGE}, or set data.init_args.download: true")
            / names[0]
        )

    def prepare_data(self) -> None:
        if self.download and not any(
            (Path(self.root).expanduser() / n).exists() for n in file_names(self.flag, self.size)
        ):
            name = file_names(self.flag, self.size)[0]
            md5 = FLAGS[self.flag].md5 if self.size == 28 else None
            download_file(ZENODO.format(name=name), Path(self.root).expanduser() / name, md5, get_from=PAGE)
        self._read(unpack_large, self.path())  # once per node, before every process maps the large arrays

    def build_sources(self) -> dict[str, Source]:
        """The official train, val and test splits of the ``.npz`` file.

        Under DDP, Lightning runs ``prepare_data`` on one process per node first, so large arrays are unpacked
        once before the others map them.
        """
        path = self.path()
        arrays = self._read(load_npz, path)
        return {split: self._split(arrays, path, split) for split in ("train", "val", "test")}

    def _read(self, reader, path: Path):
        """``reader(path, cache_dir)``, an unreadable file said as such."""
        try:
            return reader(path, self.cache_dir)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise DatasetLayoutError(
                f"{path}: not a readable .npz file ({err}); download it again from {PAGE}"
            ) from None

    def _split(self, arrays, path: Path, split: str) -> ArraySource:
        keys = (f"{split}_images", f"{split}_labels")
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise DatasetLayoutError(
                f"{path}: no array {missing[0]!r} (found {sorted(arrays)}); MedMNIST "
                "files hold {train,val,test}_{images,labels}"
            )
        images, labels = arrays[keys[0]], arrays[keys[1]]
        self._check_images(images, path, keys[0])
        labels = self._labels(labels, len(images), path, keys[1])
        return ArraySource(images, labels, [f"{split}_{i}" for i in range(len(images))])

    def _check_images(self, images: np.ndarray, path: Path, key: str) -> None:
        shape = tuple(images.shape)
        square = images.ndim in (3, 4) and shape[1] == shape[2] and (images.ndim == 3 or shape[3] in (1, 3))
        if images.dtype != np.uint8 or not square:
            raise DatasetLayoutError(
                f"{path}: {key} is {images.dtype} {shape}, expected uint8 N x S x S (grey) or N x S x S x 3"
            )
        if shape[1] != self.size:
            raise DatasetLayoutError(
                f"{path}: {key} is {shape[1]} px but data.init_args.size is {self.size}; set size: "
                f"{shape[1]} or use {file_names(self.flag, self.size)[0]}"
            )

    def _labels(self, labels: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
        c = self.task.num_classes
        if len(labels) != n:
            raise DatasetLayoutError(f"{path}: {key} has {len(labels)} rows for {n} images")
        if self.task.kind == "multilabel":
            if labels.shape != (n, c) or not np.isin(labels, (0, 1)).all():
                raise BadLabelError(
                    f"{path}: {key} is {tuple(labels.shape)}, expected N x {c} of 0/1 "
                    f"({self.flag} is multilabel)"
                )
            return labels.astype(np.float32)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise BadLabelError(f"{path}: {key} is {tuple(labels.shape)}, expected N or N x 1 class indices")
        labels = labels.astype(np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= c))
        if bad.size:
            raise BadLabelError(
                f"{path}: {key}[{bad[0]}] = {labels[bad[0]]} is outside the {c} classes of "
                f"{self.flag} (0..{c - 1}); {bad.size} such rows"
            )
        return labels

    def data_fingerprint(self) -> dict:
        return super().data_fingerprint() | {"flag": self.flag, "size": self.size}
