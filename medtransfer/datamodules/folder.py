"""Your own data as folders: one folder per class, optionally under ``train/``, ``val/`` (or ``valid/``) and
``test/`` split folders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..task import Task
from .errors import DatasetLayoutError, check_layout, describe_folder
from .file_backed import FileBackedDataModule
from .images import IGNORED_NAMES, FileSource, iter_image_files, sample_id
from .sources import Source
from .splits import complete_splits

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def class_folders(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_NAMES
    )


def patient_ids(paths: list[Path], pattern: str | None) -> np.ndarray | None:
    """The first group of ``pattern`` matched against each file name, or None without a pattern."""
    if pattern is None:
        return None
    regex = re.compile(pattern)
    ids = []
    for path in paths:
        match = regex.search(path.name)
        if match is None or not match.groups():
            raise ValueError(
                f"data.patient_pattern {pattern!r} does not match {path.name} ({path}) with a "
                "group; use a regex whose first group is the patient id, e.g. '^(P\\d+)_'"
            )
        ids.append(match.group(1))
    return np.asarray(ids)


class ImageFolder(FileBackedDataModule):
    """Any classification dataset laid out as ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``.

    Class names are the sorted class folder names (two classes make a binary task, the second folder being the
    positive class). Missing ``val``/``test`` split folders are carved from train: seeded, stratified and,
    with
    ``patient_pattern``, grouped by patient. Dot files and ``__MACOSX`` are ignored.

    Args:
        root: the dataset folder.
        ordinal: the classes are ordered grades (sorted folder names, e.g. ``0``..``4``); ranks by kappa.
        patient_pattern: regex whose first group extracts the patient id from a file name.
        grey: decode images as grey (X-rays, CT), repeated to 3 channels.
        val_fraction, test_fraction, split_seed: carved splits, when their folders are absent (see
            ``FileBackedDataModule``).
        skip_corrupt, image_size, batch_size, augmentation, ...: see ``FileBackedDataModule``.
    """

    default_augmentation = "natural"

    def __init__(
        self,
        root: str,
        ordinal: bool = False,
        patient_pattern: str | None = None,
        grey: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        self.ordinal = ordinal
        self.patient_pattern = patient_pattern
        self.grey = grey
        self.classes = self._find_classes()
        kind = "binary" if len(self.classes) == 2 and not ordinal else "multiclass"
        self.task = Task(
            kind, tuple(self.classes), ordinal=ordinal, primary_metric="kappa" if ordinal else "auroc"
        )

    def split_folders(self) -> dict[str, Path]:
        root = Path(self.root).expanduser()
        found = {}
        for split, names in SPLIT_FOLDERS.items():
            for name in names:
                if (root / name).is_dir():
                    found[split] = root / name
                    break
        return found

    def _find_classes(self) -> list[str]:
        root = check_layout(
            self.name, self.root, [], "your own files: root/<class>/<image> or root/train/<class>/<image>"
        )
        folders = self.split_folders() or {"train": root}
        classes = sorted({c for folder in folders.values() for c in class_folders(folder)})
        if len(classes) < 2:
            raise DatasetLayoutError(
                f"{self.name}: found {len(classes)} class folder(s) {classes} under "
                f"{sorted(map(str, folders.values()))}"
                f"; expected at least two, as root/<class>/<image> or root/train/<class>/<image>. "
                f"{root} holds: {describe_folder(root)}"
            )
        return classes

    def build_sources(self) -> dict[str, Source]:
        folders = self.split_folders() or {"train": Path(self.root).expanduser()}
        available = {split: self._read(split, folder) for split, folder in folders.items()}
        return complete_splits(available, self.val_fraction, self.test_fraction, self.split_seed, self.name)

    def _read(self, split: str, folder: Path) -> FileSource:
        paths, labels = [], []
        for label, name in enumerate(self.classes):
            found = list(iter_image_files(folder / name)) if (folder / name).is_dir() else []
            paths += found
            labels += [label] * len(found)
        if not paths:
            raise DatasetLayoutError(
                f"{self.name}: no images (.png, .jpg, .jpeg, .bmp, .tif) in the class folders "
                f"of {folder} ({self.classes})"
            )
        root = Path(self.root).expanduser()
        ids = [sample_id(p.relative_to(root)) for p in paths]
        return FileSource(
            paths,
            np.asarray(labels, dtype=np.int64),
            ids,
            patient_ids(paths, self.patient_pattern),
            grey=self.grey,
            skip_corrupt=self.skip_corrupt,
            draft_size=self.image_size,  # JPEG decoded at the smallest scale >= the input size
        )

    def layout_fingerprint(self) -> dict:
        return {"classes": self.classes}
