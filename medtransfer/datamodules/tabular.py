"""Label tables (CSV files listing images): reading them with errors that name the file, column and row, and
turning them into FileSources whose images are checked to exist."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BadLabelError, DatasetLayoutError
from .images import FileSource, missing_files

log = logging.getLogger(__name__)


def read_table(path: Path, columns: Sequence[str], dataset: str, get_from: str = "") -> pd.DataFrame:
    """A CSV with at least ``columns`` (read as strings), or an error naming the missing columns."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DatasetLayoutError(f"{dataset}: cannot read {path} as CSV ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        source = f"; the file from {get_from} has them" if get_from else ""
        raise DatasetLayoutError(
            f"{dataset}: {path} has no column(s) {missing} (found {list(frame.columns)}), "
            f"expected {list(columns)}{source}"
        )
    if frame.empty:
        raise DatasetLayoutError(f"{dataset}: {path} lists no samples")
    return frame


# how spreadsheets and pandas write a missing value ("None" and "NA" stay: they can be class names)
MISSING_VALUES = frozenset({"", "nan", "NaN", "NAN", "N/A", "n/a", "NULL", "null", "#N/A", "<NA>"})


def check_filled(frame: pd.DataFrame, columns: Sequence[str], path: Path, origins: Sequence[str]) -> None:
    """Every row has a value in each of ``columns``: an empty or ``NaN`` label would otherwise become a class
    of its own (or an image path of nothing)."""
    for column in columns:
        empty = np.flatnonzero(frame[column].str.strip().isin(MISSING_VALUES).to_numpy())
        if empty.size:
            raise BadLabelError(
                f"{path.parent}/{origins[empty[0]]}: {column}={frame[column].iloc[empty[0]]!r} is missing "
                f"({empty.size} row(s) without a {column}); fill it in or remove the row"
            )


def check_unique(frame: pd.DataFrame, column: str, path: Path, origins: Sequence[str]) -> None:
    """No image is listed twice: a repeated image could land in training and test at once (leakage)."""
    values = frame[column].str.strip()
    repeated = values[values.duplicated(keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        rows = [origins[i] for i in np.flatnonzero((values == first).to_numpy())]
        raise DatasetLayoutError(
            f"{path}: {column}={first!r} is listed more than once ({', '.join(rows)}; "
            f"{repeated.nunique()} image(s) repeated): a repeated image can fall into both the training and "
            "the test split. Keep one row per image"
        )


def row_number(index: int) -> int:
    """The row of the file holding data row ``index``, counting lines as an editor does (the header is row
    1)."""
    return int(index) + 2


def row_origins(path: Path, frame: pd.DataFrame | pd.Series) -> list[str]:
    """``file row N`` for every row (``row_number``)."""
    return [f"{path.name} row {row_number(i)}" for i in frame.index]


def class_labels(
    values: Sequence[str], num_classes: int, path: Path, column: str, rows: Sequence[str]
) -> np.ndarray:
    """Integer class labels in ``0 .. num_classes - 1``, or an error naming the first bad row."""
    labels = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        try:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            labels[i] = int(number)
        except ValueError:
            raise BadLabelError(
                f"{path.parent}/{rows[i]}: {column}={value!r} is not a class number"
            ) from None
        if not 0 <= labels[i] < num_classes:
            raise BadLabelError(
                f"{path.parent}/{rows[i]}: {column}={value!r} is outside the {num_classes} classes "
                f"(0..{num_classes - 1})"
            )
    return labels


def checked_file_source(
    dataset: str,
    paths: Sequence[Path],
    labels: np.ndarray,
    ids: Sequence[str],
    origins: Sequence[str],
    groups: np.ndarray | None = None,
    skip_corrupt: bool = False,
    **source_kwargs,
) -> FileSource:
    """A FileSource after checking that every listed image exists: missing images are an error, or, with
    ``skip_corrupt``, left out with a warning that names and counts them."""
    problem = missing_files(paths, origins)
    if problem:
        if not skip_corrupt:
            raise DatasetLayoutError(
                f"{dataset}: {problem}; restore the files, or set data.init_args.skip_corrupt: true to leave "
                "them out (logged and counted)"
            )
        keep = np.asarray([Path(p).exists() for p in paths])
        log.warning("%s: skip_corrupt: leaving out %d samples: %s", dataset, int((~keep).sum()), problem)
        paths = [p for p, k in zip(paths, keep, strict=True) if k]
        ids = [s for s, k in zip(ids, keep, strict=True) if k]
        origins = [o for o, k in zip(origins, keep, strict=True) if k]
        labels = labels[keep]
        groups = None if groups is None else np.asarray(groups)[keep]
    return FileSource(paths, labels, ids, groups, origins, skip_corrupt=skip_corrupt, **source_kwargs)


def listed_path(root: Path, text: str) -> Path:
    r"""The file a table row lists: ``text`` relative to ``root`` unless absolute (``~`` is the home folder).

    A path written on Windows (``img\a.png``) is read with ``/`` where no file has the name as written, so a
    table made on Windows reads on Linux and macOS.
    """
    path = _under(root, text)
    if "\\" in text and os.sep == "/" and not path.exists():
        written = _under(root, text.replace("\\", "/"))
        if written.exists():
            return written
    return path


def _under(root: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else root / text
