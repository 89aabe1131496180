"""Your own data as a CSV of image paths and labels.

An image path column, one or more label columns, optional patient and split columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigValueError
from ..task import Task
from .class_sets import check_grade_order
from .config_values import check_class_names, check_flag, config_key
from .errors import ClassSetError, DatasetLayoutError, check_layout
from .file_backed import FileBackedDataModule
from .label_column import LabelColumn, read_label_column
from .sources import Source
from .splits import complete_splits
from .tabular import (
    check_filled,
    check_unique,
    checked_file_source,
    class_labels,
    listed_path,
    read_table,
    row_origins,
)

SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class CSVDataset(FileBackedDataModule):
    """A dataset listed in a CSV file.

    - one label column: class numbers ``0..C-1`` or class names (``class_names`` fixes their order, otherwise
      sorted); two classes make a binary task (the second is positive), more a multiclass one;
    - several label columns: a multilabel task with one 0/1 column per finding (the column names are the
    classes);
    - ``patient_column`` groups a patient's images in carved splits and label fractions;
    - ``split_column`` with values ``train``/``val`` (or ``valid``/``validation``)/``test``; missing splits
      are carved from train (seeded, stratified, patient-grouped). A file written by ``write_splits`` or
      ``medtransfer prepare`` reads back with ``split_column: split``.

    Without ``class_names`` the labels make the class set, so it must be what was meant (docs/datasets.md,
    "Classes"; ``label_column``): a column mixing class numbers and names, a fractional class number
    (``0.5``), a skipped class number, one class written two ways (``Normal``/``normal``,
    ``1``/``1.0``/``01``, ``sick``/``sick ``), ordinal grades given as names (their order is unknown), a
    class or a finding without training images once the splits are built: all refused.
    ``class_names`` declares the classes: values are read by exact name (or as class numbers when no name is
    a number), and a declared class without training images is kept with a warning.

    Args:
        root: folder the image paths are relative to (absolute paths are used as they are).
        csv_path: the CSV file (relative to ``root`` or absolute).
        image_column, label_columns, patient_column, split_column: column names.
        class_names: the classes in class order, for a single label column of names or numbers (numbers are
            positions in this list); for several label columns, the findings' names, one per column.
        ordinal: classes are ordered grades (multiclass, ranked by quadratic weighted kappa).
        grey: decode images as grey, repeated to 3 channels.
        val_fraction, test_fraction, split_seed: carved splits (see ``FileBackedDataModule``).
        skip_corrupt, image_size, batch_size, augmentation, ...: see ``FileBackedDataModule``.
    """

    default_augmentation = "natural"
    class_set_fix = (
        "add training rows for it or fix its label or split column, or list the classes in "
        f"{config_key('class_names')} to keep it"
    )
    split_fix = ("give each patient's rows one split in the split column, or leave the split column out to "
                 "carve patient-grouped splits (data.init_args.val_fraction, test_fraction)")

    def __init__(
        self,
        root: str,
        csv_path: str = "labels.csv",
        image_column: str = "path",
        label_columns: str | list[str] = "label",
        patient_column: str | None = None,
        split_column: str | None = None,
        class_names: list[str] | None = None,
        ordinal: bool = False,
        grey: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(root, **kwargs)
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns or [])
        check_label_settings(self.label_columns, class_names, ordinal)
        check_flag("grey", grey)
        self.csv_path = csv_path
        self.image_column = image_column
        self.patient_column = patient_column
        self.split_column = split_column
        self.class_names = None if class_names is None else list(class_names)
        self.grey = grey
        root_path = check_layout(self.name, root, [], "your own files")
        self.table_path = Path(csv_path).expanduser()
        if not self.table_path.is_absolute():
            self.table_path = root_path / self.table_path
        if not self.table_path.exists():
            raise DatasetLayoutError(
                f"{self.name}: {config_key('csv_path')} {self.table_path} does not exist"
            )
        columns = [image_column, *self.label_columns, *(c for c in (patient_column, split_column) if c)]
        self.frame = read_table(self.table_path, columns, self.name)
        self.origins = row_origins(self.table_path, self.frame)
        check_filled(self.frame, [image_column, *self.label_columns], self.table_path, self.origins)
        check_unique(self.frame, image_column, self.table_path, self.origins)
        self.labels, self.task = self._labels_and_task(ordinal)

    def classes_declared_by(self) -> str | None:
        return None if self.class_names is None else config_key("class_names")

    def splits_declared_by(self) -> str | None:
        return None  # the split column, or patient-grouped carved splits

    def _labels_and_task(self, ordinal: bool) -> tuple[np.ndarray, Task]:
        if len(self.label_columns) > 1:
            return self._findings(), Task("multilabel", tuple(self.class_names or self.label_columns))
        column = LabelColumn(self.name, self.table_path, self.label_columns[0],
                             self.frame[self.label_columns[0]])
        labels, class_names = read_label_column(column, self.class_names)
        if len(class_names) < 2:
            raise ClassSetError(
                f"{column.where} holds a single class {class_names}; a classification dataset needs at "
                f"least two (or list the classes in {config_key('class_names')})"
            )
        if ordinal and self.class_names is None:
            check_grade_order(self.name, class_names, f"column {column.name!r}")
        kind = "binary" if len(class_names) == 2 and not ordinal else "multiclass"
        return labels, Task(
            kind, tuple(class_names), ordinal=ordinal, primary_metric="kappa" if ordinal else "auroc"
        )

    def _findings(self) -> np.ndarray:
        """``N x C`` 0/1 float labels, one column per finding."""
        return np.stack(
            [class_labels(self.frame[c].tolist(), 2, self.table_path, c, self.origins)
             for c in self.label_columns],
            axis=1,
        ).astype(np.float32)

    def build_sources(self) -> dict[str, Source]:
        root = Path(self.root).expanduser()
        paths = [listed_path(root, p) for p in self.frame[self.image_column].str.strip()]
        if paths and not any(path.exists() for path in paths):  # a wrong root or column, not some files
            raise DatasetLayoutError(
                f"{self.name}: none of the {len(paths)} images {self.table_path.name} lists exists (e.g. "
                f"{paths[0]}): check {config_key('root')} (the folder the listed paths are relative to) and "
                f"{config_key('image_column')} (the column of image paths, now {self.image_column!r})")
        ids = self.frame[self.image_column].str.strip().tolist()
        # " p7 " is patient p7, as every other column is read: else it would be grouped and split apart
        groups = self.frame[self.patient_column].str.strip().to_numpy() if self.patient_column else None
        splits = self._split_of_rows()
        available = {}
        for split in ("train", "val", "test"):
            rows = np.flatnonzero(splits == split)
            if rows.size:
                available[split] = checked_file_source(
                    self.name,
                    [paths[i] for i in rows],
                    self.labels[rows],
                    [ids[i] for i in rows],
                    [self.origins[i] for i in rows],
                    groups=None if groups is None else groups[rows],
                    skip_corrupt=self.skip_corrupt,
                    grey=self.grey,
                    draft_size=self.image_size,  # JPEG decoded at the smallest scale >= the input size
                )
        return complete_splits(available, self.val_fraction, self.test_fraction, self.split_seed, self.name)

    def _split_of_rows(self) -> np.ndarray:
        if not self.split_column:
            return np.full(len(self.frame), "train")
        values = self.frame[self.split_column].str.strip().str.lower()
        bad = [i for i, v in enumerate(values) if v not in SPLIT_VALUES]
        if bad:
            raise DatasetLayoutError(
                f"{self.table_path.parent}/{self.origins[bad[0]]}: {self.split_column}="
                f"{values.iloc[bad[0]]!r}; expected one of {sorted(SPLIT_VALUES)}"
            )
        return values.map(SPLIT_VALUES).to_numpy()

    def layout_fingerprint(self) -> dict:
        return {"csv": self.table_path.name}


def check_label_settings(label_columns: list[str], class_names: list[str] | None, ordinal: bool) -> None:
    """The label columns, class names and ordinal flag fit together (before the table is read)."""
    check_flag("ordinal", ordinal)
    check_class_names(class_names)
    key = config_key("label_columns")
    if not label_columns or not all(isinstance(c, str) and c.strip() for c in label_columns):
        raise ConfigValueError(f"{key}: {label_columns!r} names no label column: give a column name, or a "
                               "list of 0/1 finding columns for a multilabel task")
    if len(set(label_columns)) < len(label_columns):
        raise ConfigValueError(f"{key}: {label_columns} names a column more than once: name each once")
    if len(label_columns) == 1:
        return
    if ordinal:
        raise ConfigValueError(
            f"{config_key('ordinal')}: true needs a single label column, but {key} names "
            f"{len(label_columns)} (a multilabel task): set ordinal: false or name one column"
        )
    if class_names is not None and len(class_names) != len(label_columns):
        raise ConfigValueError(
            f"{config_key('class_names')}: {class_names} names {len(class_names)} findings for the "
            f"{len(label_columns)} label columns {label_columns}: give one name per column, in their order"
        )

