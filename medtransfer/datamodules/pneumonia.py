"""Paediatric chest X-ray pneumonia (Kermany et al. 2018, Cell).

``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` as published on Mendeley Data and copied to Kaggle (with
an extra nested copy and ``__MACOSX`` debris).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np

from ..task import Task
from .config_values import check_choice
from .errors import DatasetLayoutError, layout_message
from .file_backed import FileBackedDataModule
from .images import FileSource, iter_image_files
from .sources import Source
from .splits import carve_sources

log = logging.getLogger(__name__)

PAGE = (
    "https://data.mendeley.com/datasets/rscbjbr9sj (ChestXRay2017.zip) or "
    "https://www.kaggle.com/datasets/paultimothymooney/chest-xray-pneumonia"
)
CLASSES = ("NORMAL", "PNEUMONIA")
PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_"),  # person12_bacteria_47.jpeg
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"),  # IM-0115-0001.jpeg, NORMAL2-IM-1427-0001.jpeg
)


def patient_of(file_name: str) -> str:
    """The patient id in a Kermany file name; the file's own stem when the name follows no known pattern."""
    for pattern in PATIENT_PATTERNS:
        match = pattern.match(file_name)
        if match:
            return match.group(1)
    return Path(file_name).stem


def find_split_root(root: Path, max_depth: int = 3) -> Path | None:
    """The shallowest folder under ``root`` with ``train/`` and ``test/`` class folders.

    The Kaggle copy nests a second ``chest_xray/`` inside the first; taking the shallowest never counts an
    image twice.
    """
    level = [root]
    for _ in range(max_depth + 1):
        for folder in level:
            if all((folder / split / name).is_dir() for split in ("train", "test") for name in CLASSES):
                return folder
        level = [
            child
            for folder in level
            for child in sorted(folder.iterdir())
            if child.is_dir() and not child.name.startswith((".", "__MACOSX"))
        ]
    return None


class ChestXrayPneumonia(FileBackedDataModule):
    """Pneumonia vs normal on paediatric chest X-rays (5,856 images), binary, AUROC.

    Args:
        root: the folder that holds ``chest_xray/`` (or ``chest_xray/`` itself, or the Kaggle download
            folder).
        validation: ``carved`` (default): the official 16-image ``val/`` is too small to select checkpoints
            on, so it joins the training images and a patient-grouped, stratified validation split of
            ``val_fraction`` is carved from them; ``official``: use ``val/`` as published.
        val_fraction, split_seed: size and seed of the carved validation split.
        skip_corrupt, image_size, batch_size, ...: see ``FileBackedDataModule``; default augmentation
            ``chest_xray``.
    """

    default_augmentation = "chest_xray"

    def __init__(self, root: str, validation: Literal["carved", "official"] = "carved", **kwargs) -> None:
        check_choice("validation", validation, ("carved", "official"), what="validation split")
        super().__init__(root, test_fraction=0.0, **kwargs)  # the official test/ is the test split
        self.validation = validation
        self.task = Task("binary", ("normal", "pneumonia"))

    def build_sources(self) -> dict[str, Source]:
        root = Path(self.root).expanduser()
        base = find_split_root(root) if root.is_dir() else None
        expected = [f"chest_xray/{split}/{name}" for split in ("train", "val", "test") for name in CLASSES]
        if base is None:
            missing = [name for name in expected if not (root / name).is_dir()]
            raise DatasetLayoutError(layout_message(self.name, root, expected, missing, PAGE))
        sources = {split: self._read(base, split) for split in ("train", "val", "test")}
        if self.validation == "official":
            if len(sources["val"]) == 0:
                expected = ["val/NORMAL", "val/PNEUMONIA"]
                raise DatasetLayoutError(
                    layout_message(
                        self.name, base, expected, expected, PAGE, "no images in val/: use validation: carved"
                    )
                )
            return sources
        pool = _concat(sources["train"], sources["val"])
        carved = carve_sources(
            pool,
            {"val": self.val_fraction},
            self.split_seed,
            f"{self.name} (official val/ of {len(sources['val'])} images joined train)",
        )
        return {"train": carved["train"], "val": carved["val"], "test": sources["test"]}

    def _read(self, base: Path, split: str) -> FileSource:
        paths, labels = [], []
        for label, name in enumerate(CLASSES):
            folder = base / split / name
            found = list(iter_image_files(folder)) if folder.is_dir() else []
            paths += found
            labels += [label] * len(found)
        if split != "val" and not paths:
            raise DatasetLayoutError(f"{self.name}: no images in {base / split}/NORMAL or /PNEUMONIA")
        ids = [f"{split}/{p.parent.name}/{p.name}" for p in paths]
        groups = np.asarray([patient_of(p.name) for p in paths])
        return FileSource(
            paths,
            np.asarray(labels, dtype=np.int64),
            ids,
            groups,
            origins=None,
            grey=True,
            skip_corrupt=self.skip_corrupt,
            draft_size=self.image_size,  # JPEG decoded at the smallest scale >= the input size
        )

    def layout_fingerprint(self) -> dict:
        return {"validation": self.validation}


def _concat(first: FileSource, second: FileSource) -> FileSource:
    return FileSource(
        first.paths + second.paths,
        np.concatenate([first.labels, second.labels]),
        first.ids + second.ids,
        np.concatenate([first.groups, second.groups]),
        grey=first.grey,
        skip_corrupt=first.skip_corrupt,
        draft_size=first.draft_size,
    )
