"""Your own data as a CSV: an image path column, one or more label columns, optional patient and split
columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..task import Task
from .errors import BadLabelError, DatasetLayoutError, check_layout
from .file_backed import FileBackedDataModule
from .sources import Source
from .splits import complete_splits
from .tabular import check_filled, check_unique, checked_file_source, class_labels, read_table, row_origins

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

    Args:
        root: folder the image paths are relative to (absolute paths are used as they are).
        csv_path: the CSV file (relative to ``root`` or absolute).
        image_column, label_columns, patient_column, split_column: column names.
        class_names: class order for a single label column of names (or names for numbered classes).
        ordinal: classes are ordered grades (multiclass, ranked by quadratic weighted kappa).
        grey: decode images as grey, repeated to 3 channels.
        val_fraction, test_fraction, split_seed: carved splits (see ``FileBackedDataModule``).
        skip_corrupt, image_size, batch_size, augmentation, ...: see ``FileBackedDataModule``.
    """

    default_augmentation = "natural"

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
        self.csv_path = csv_path
        self.image_column = image_column
        self.label_columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
        self.patient_column = patient_column
        self.split_column = split_column
        self.grey = grey
        root_path = check_layout(self.name, root, [], "your own files")
        self.table_path = Path(csv_path).expanduser()
        if not self.table_path.is_absolute():
            self.table_path = root_path / self.table_path
        if not self.table_path.exists():
            raise DatasetLayoutError(f"{self.name}: data.csv_path {self.table_path} does not exist")
        columns = [image_column, *self.label_columns, *(c for c in (patient_column, split_column) if c)]
        self.frame = read_table(self.table_path, columns, self.name)
        self.origins = row_origins(self.table_path, self.frame)
        check_filled(self.frame, [image_column, *self.label_columns], self.table_path, self.origins)
        check_unique(self.frame, image_column, self.table_path, self.origins)
        self.labels, self.task = self._labels_and_task(class_names, ordinal)

    def _labels_and_task(self, class_names: list[str] | None, ordinal: bool) -> tuple[np.ndarray, Task]:
        if len(self.label_columns) > 1:
            if ordinal:
                raise ValueError(
                    "data.ordinal needs a single label column (several columns make a multilabel task)"
                )
            labels = np.stack(
                [
                    class_labels(self.frame[c].tolist(), 2, self.table_path, c, self.origins)
                    for c in self.label_columns
                ],
                axis=1,
            ).astype(np.float32)
            return labels, Task("multilabel", tuple(class_names or self.label_columns))
        column = self.label_columns[0]
        values = self.frame[column].str.strip()
        if class_names is None and not _all_integers(values):
            class_names = sorted(values.unique())
        if class_names is not None and not _all_integers(values):
            index = {name: i for i, name in enumerate(class_names)}
            unknown = [i for i, v in enumerate(values) if v not in index]
            if unknown:
                raise BadLabelError(
                    f"{self.table_path.parent}/{self.origins[unknown[0]]}: {column}="
                    f"{values.iloc[unknown[0]]!r} is not one of data.class_names {class_names}"
                )
            labels = np.asarray([index[v] for v in values], dtype=np.int64)
        else:
            num_classes = len(class_names) if class_names else int(pd.to_numeric(values).max()) + 1
            labels = class_labels(values.tolist(), num_classes, self.table_path, column, self.origins)
            class_names = class_names or [str(i) for i in range(num_classes)]
        if len(class_names) < 2:
            raise BadLabelError(
                f"{self.table_path}: column {column!r} holds a single class {class_names}; a "
                "classification dataset needs at least two (or set data.class_names)"
            )
        kind = "binary" if len(class_names) == 2 and not ordinal else "multiclass"
        return labels, Task(
            kind, tuple(class_names), ordinal=ordinal, primary_metric="kappa" if ordinal else "auroc"
        )

    def build_sources(self) -> dict[str, Source]:
        root = Path(self.root).expanduser()
        paths = [
            Path(p) if Path(p).is_absolute() else root / p for p in self.frame[self.image_column].str.strip()
        ]
        ids = self.frame[self.image_column].str.strip().tolist()
        groups = self.frame[self.patient_column].to_numpy() if self.patient_column else None
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


def _all_integers(values: pd.Series) -> bool:
    return bool(values.str.fullmatch(r"[+-]?\d+(\.0*)?").all())
