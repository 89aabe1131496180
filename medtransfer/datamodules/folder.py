"""Your own data as folders: one folder per class.

The class folders are optionally under ``train/``, ``val/`` (or ``valid/``) and ``test/`` split folders.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigValueError
from ..task import Task
from .class_sets import check_grade_order, how_spellings_differ, respelled
from .config_values import check_class_names, check_flag, config_key
from .errors import ClassSetError, DatasetLayoutError, check_layout, describe_folder
from .file_backed import FileBackedDataModule
from .images import IGNORED_NAMES, FileSource, iter_image_files, sample_id
from .sources import Source
from .splits import complete_splits

log = logging.getLogger(__name__)

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
SPLIT_OF_FOLDER = {name: split for split, names in SPLIT_FOLDERS.items() for name in names}
# folder names that say a split, not a class (compared ignoring case): read as classes, ``Training/`` and
# ``Testing/`` made a task of telling the splits apart
SPLIT_LIKE_NAMES = frozenset({*SPLIT_OF_FOLDER, "training", "testing"})


def class_folders(folder: Path) -> list[str]:
    """The class folders' names under ``folder``, sorted; dot folders and ``__MACOSX`` are left out."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_NAMES
    )


PATIENT_EXAMPLE = "use a regex whose first group is the patient id, e.g. '^(P\\d+)_'"


def patient_regex(pattern: str | None) -> re.Pattern | None:
    """``data.init_args.patient_pattern`` compiled, checked to have a group (the patient id)."""
    if pattern is None:
        return None
    key = config_key("patient_pattern")
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as err:
        raise ConfigValueError(
            f"{key}: {pattern!r} is not a regular expression ({err}); {PATIENT_EXAMPLE}"
        ) from None
    if regex.groups < 1:
        raise ConfigValueError(f"{key}: {pattern!r} has no group to hold the patient id; {PATIENT_EXAMPLE}")
    return regex


def patient_ids(paths: list[Path], regex: re.Pattern | None) -> np.ndarray | None:
    """The first group of ``regex`` matched against each file name, or None without a pattern."""
    if regex is None:
        return None
    ids = []
    for path in paths:
        match = regex.search(path.name)
        if match is None or match.group(1) is None:
            raise ConfigValueError(
                f"{config_key('patient_pattern')} {regex.pattern!r} does not match {path.name} ({path}) with "
                f"a group; {PATIENT_EXAMPLE}"
            )
        ids.append(match.group(1))
    return np.asarray(ids)


class ImageFolder(FileBackedDataModule):
    """Any classification dataset laid out as ``root/<class>/<image>`` or ``root/<split>/<class>/<image>``.

    Class names are the sorted class folder names (two classes make a binary task, the second folder being the
    positive class). Missing ``val``/``test`` split folders are carved from train: seeded, stratified and,
    with ``patient_pattern``, grouped by patient. Dot files and ``__MACOSX`` are ignored.

    The folders found make the class set, so it must be what was meant (docs/datasets.md, "Classes"): class
    folders whose names differ only in case, surrounding spaces or number format (``Normal``/``normal``) are
    refused, and so is a class without training images once the splits are built (an empty class folder, a
    class folder only under ``test/`` or ``val/``, or a class whose few images were all carved out), and so
    are ``ordinal`` grades whose folder names are not numbers in numeric order (``10`` sorts before ``2``).
    Split folders are recognised whatever their case (``Train/``, ``TEST/``); class folders named like splits
    (``Training/``, ``Testing/``) are refused.
    With ``class_names`` the user declares the classes: only those folders are read, in that order, and a
    declared class without training images is kept with a warning.

    Args:
        root: the dataset folder.
        class_names: the class folders that are the classes, in class order (the second of two is the
            positive class); folders not listed are left out (logged). Default: every class folder, sorted.
        ordinal: the classes are ordered grades, in class order (e.g. folders ``0``..``4``); ranks by kappa.
        patient_pattern: regex whose first group extracts the patient id from a file name.
        grey: decode images as grey (X-rays, CT), repeated to 3 channels.
        val_fraction, test_fraction, split_seed: carved splits, when their folders are absent (see
            ``FileBackedDataModule``).
        skip_corrupt, image_size, batch_size, augmentation, ...: see ``FileBackedDataModule``.
    """

    default_augmentation = "natural"
    class_set_fix = (
        "add training images to its folder, or remove the class folder from every split, or list the classes "
        f"in {config_key('class_names')} to keep it"
    )
    split_fix = ("move each patient's images into one split folder, or keep one folder of class folders to "
                 "carve patient-grouped splits (data.init_args.val_fraction, test_fraction)")

    def __init__(
        self,
        root: str,
        ordinal: bool = False,
        patient_pattern: str | None = None,
        grey: bool = False,
        class_names: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        check_flag("ordinal", ordinal)
        check_flag("grey", grey)
        check_class_names(class_names)
        self.ordinal = ordinal
        self.patient_pattern = patient_pattern
        self.patient_regex = patient_regex(patient_pattern)
        self.grey = grey
        self.class_names = None if class_names is None else list(class_names)
        self.classes = self._find_classes()
        kind = "binary" if len(self.classes) == 2 and not ordinal else "multiclass"
        self.task = Task(
            kind, tuple(self.classes), ordinal=ordinal, primary_metric="kappa" if ordinal else "auroc"
        )

    def classes_declared_by(self) -> str | None:
        return None if self.class_names is None else config_key("class_names")

    def splits_declared_by(self) -> str | None:
        return None  # the split folders, or patient-grouped carved splits

    def split_folders(self) -> dict[str, Path]:
        """The split folders under the root, by split.

        ``train/``, ``val/`` (or ``valid/``, ``validation/``) and ``test/``, their names compared ignoring
        case (``Train/``, ``TEST/``); two folders of one split are refused.
        """
        return split_folders(self.name, Path(self.root).expanduser())

    def _find_classes(self) -> list[str]:
        root = check_layout(
            self.name, self.root, [], "your own files: root/<class>/<image> or root/train/<class>/<image>"
        )
        folders = self.split_folders() or {"train": root}
        found = first_class_folders(folders)
        if self.class_names is not None:
            return declared_classes(self.name, self.class_names, found)
        check_folder_spellings(self.name, root, found)
        check_no_split_names(self.name, root, found)
        classes = sorted(found)
        if self.ordinal:
            check_grade_order(self.name, classes, "the class folders")
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
            patient_ids(paths, self.patient_regex),
            grey=self.grey,
            skip_corrupt=self.skip_corrupt,
            draft_size=self.image_size,  # JPEG decoded at the smallest scale >= the input size
        )

    def layout_fingerprint(self) -> dict:
        return {"classes": self.classes}


def split_folders(dataset: str, root: Path) -> dict[str, Path]:
    """The split folders under ``root``, by split (see ``ImageFolder.split_folders``)."""
    found: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        split = SPLIT_OF_FOLDER.get(folder.name.casefold())
        if split is None:
            continue
        if split in found:
            raise DatasetLayoutError(
                f"{dataset}: {found[split].name}/ and {folder.name}/ under {root} are both the {split} "
                "split's folder: merge them into one"
            )
        found[split] = folder
    return {split: found[split] for split in SPLIT_FOLDERS if split in found}  # train, val, test


def check_no_split_names(dataset: str, root: Path, found: dict[str, Path]) -> None:
    """Check that no class folder is named like a split.

    ``Training/`` and ``Testing/`` (or a ``test/`` inside a split folder) read as classes would make a task of
    telling the splits apart.
    """
    named = sorted(name for name in found if name.casefold() in SPLIT_LIKE_NAMES)
    if named:
        listed = ", ".join(f"{name!r} ({found[name].relative_to(root)})" for name in named)
        raise DatasetLayoutError(
            f"{dataset}: class folder(s) {listed} are named like splits, not classes: split folders are "
            "train/, val/ (or valid/, validation/) and test/ (any case), each holding the class folders; "
            f"rename them, or list the classes in {config_key('class_names')} if they are classes"
        )


def first_class_folders(folders: dict[str, Path]) -> dict[str, Path]:
    """Every class folder name under the split ``folders``, with the first folder of that name."""
    found: dict[str, Path] = {}
    for folder in folders.values():
        for name in class_folders(folder):
            found.setdefault(name, folder / name)
    return found


def declared_classes(dataset: str, class_names: list[str], found: dict[str, Path]) -> list[str]:
    """``class_names`` once each names a class folder of some split; the folders it leaves out are logged."""
    missing = [name for name in class_names if name not in found]
    if missing:
        raise ConfigValueError(
            f"{dataset}: {config_key('class_names')} lists {missing}, but no split has a class folder of "
            f"that name (found {sorted(found)}): fix the names, or add the folders"
        )
    left_out = sorted(set(found) - set(class_names))
    if left_out:
        log.warning("%s: leaving out the class folder(s) %s: not in %s", dataset, left_out,
                    config_key("class_names"))
    return class_names


def check_folder_spellings(dataset: str, root: Path, found: dict[str, Path]) -> None:
    """Check that no two class folders name one class written two ways.

    ``Normal`` under train/ and ``normal`` under test/ would become two classes.
    """
    group = respelled(found)
    if group:
        listed = " and ".join(f"{name!r} ({found[name].relative_to(root)})" for name in group)
        raise ClassSetError(
            f"{dataset}: class folders {listed} {how_spellings_differ(group)}: rename them to one spelling, "
            f"or list the classes in {config_key('class_names')} if they are different classes"
        )
