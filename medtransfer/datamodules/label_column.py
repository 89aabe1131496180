"""A CSV's single label column read as class labels (docs/datasets.md, "Classes").

Without ``class_names`` the column makes the class set, so it must say it one way: class numbers (whole, from
0, none skipped) or class names, never both, and each class spelled one way (``Normal`` and ``normal``, ``1``
and ``1.0``, ``sick`` and ``sick `` are refused, not read as two classes or quietly merged). With
``class_names`` the user declares the classes: a value is a class by its exact name (surrounding spaces
aside), or, when no class name is a number itself, by its class number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .class_sets import NUMBER, how_spellings_differ, is_number_text, respelled
from .config_values import config_key
from .errors import BadLabelError, ClassSetError
from .tabular import class_labels, row_number, row_origins

DECLARE = f"list the classes in {config_key('class_names')}"


@dataclass(frozen=True)
class LabelColumn:
    """A table's label column as read (strings, indexed by data row), with what messages name."""

    dataset: str
    path: Path
    name: str
    raw: pd.Series

    @property
    def where(self) -> str:
        return f"{self.dataset}: {self.path}: column {self.name!r}"

    @property
    def values(self) -> pd.Series:
        return self.raw.str.strip()

    def origins(self, rows: pd.Series | None = None) -> list[str]:
        """``file row N`` of every value (of those where ``rows`` is true), for ``tabular.class_labels``."""
        return row_origins(self.path, self.raw if rows is None else self.raw[rows])

    def first_row(self, rows: pd.Series) -> int:
        """The file row of the first value where ``rows`` is true."""
        return row_number(rows.idxmax())


def read_label_column(column: LabelColumn, class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """The int64 class of every row and the class names in class order."""
    if class_names is not None:
        return declared_labels(column, list(class_names)), list(class_names)
    numbers = column.values.str.fullmatch(NUMBER.pattern)
    if numbers.all():
        return numbered_labels(column)
    if numbers.any():
        raise mixed_error(column, numbers)
    check_one_spelling(column)
    names = sorted(column.values.unique())
    return column.values.map({name: i for i, name in enumerate(names)}).to_numpy(np.int64), names


def numbered_labels(column: LabelColumn) -> tuple[np.ndarray, list[str]]:
    """Class numbers ``0..C-1``, named ``"0"``..``"C-1"``."""
    fractional = column.values.astype(float) % 1 != 0
    if fractional.any():
        raise ClassSetError(
            f"{column.where} holds {int(fractional.sum())} number(s) that are not class numbers "
            f"({column.values[fractional.idxmax()]} in row {column.first_row(fractional)}): class numbers "
            f"are whole numbers 0, 1, ...; fix the rows, or {DECLARE} if the numbers are names"
        )
    check_one_spelling(column)
    num_classes = int(column.values.astype(float).max()) + 1
    labels = class_labels(column.values.tolist(), num_classes, column.path, column.name, column.origins())
    check_no_skipped_numbers(column, labels)
    return labels, [str(i) for i in range(num_classes)]


def check_no_skipped_numbers(column: LabelColumn, labels: np.ndarray) -> None:
    """Every class number below the largest one has rows: a skipped number would be a class without
    images."""
    present = np.unique(labels)
    skipped = int(present[-1]) + 1 - len(present)
    if skipped == 0:
        return
    # the first k missing numbers are below len(present) + k: no need to list all up to the largest
    first = np.setdiff1d(np.arange(min(int(present[-1]), len(present) + 3) + 1), present)[:3]
    raise ClassSetError(
        f"{column.where} skips {skipped} class number(s) ({', '.join(map(str, first))}"
        f"{', ...' if skipped > 3 else ''}; the numbers run to {present[-1]}): each skipped number would be "
        f"a class without images; renumber the classes 0..{len(present) - 1}, or {DECLARE} to keep an empty "
        "one"
    )


def mixed_error(column: LabelColumn, numbers: pd.Series) -> ClassSetError:
    values = column.values
    shown_numbers = ", ".join(list(dict.fromkeys(values[numbers]))[:3])
    shown_names = ", ".join(repr(name) for name in list(dict.fromkeys(values[~numbers]))[:3])
    rows = sorted((column.first_row(numbers), column.first_row(~numbers)))
    return ClassSetError(
        f"{column.where} mixes class numbers ({shown_numbers}) and class names ({shown_names}) "
        f"(rows {rows[0]}, {rows[1]}): use one or the other, or {DECLARE}"
    )


def check_one_spelling(column: LabelColumn) -> None:
    """Each class is written one way in the file (as read, before surrounding spaces are stripped)."""
    group = respelled(column.raw)
    if not group:
        return
    spelled = [f"{spelling!r} (row {column.first_row(column.raw == spelling)})" for spelling in group]
    listed = ", ".join(spelled[:-1]) + f" and {spelled[-1]}"
    raise ClassSetError(
        f"{column.where} writes one class {len(group)} ways: {listed} {how_spellings_differ(group)}: write "
        f"each class one way, or {DECLARE} if they are different classes"
    )


def declared_labels(column: LabelColumn, class_names: list[str]) -> np.ndarray:
    """Each value's class among the declared ``class_names``: by exact name, or by class number when no
    class name is a number (a numeric name makes a number in the column a name, never a position)."""
    values = column.values
    labels = values.map({name: i for i, name in enumerate(class_names)})
    numbered = labels.isna() & values.str.fullmatch(NUMBER.pattern)
    if numbered.any() and not any(is_number_text(name) for name in class_names):
        labels[numbered] = class_labels(values[numbered].tolist(), len(class_names), column.path, column.name,
                                        column.origins(numbered))
    unknown = labels.isna()
    if unknown.any():
        value = values[unknown.idxmax()]
        raise BadLabelError(
            f"{column.path.parent}/{column.path.name} row {column.first_row(unknown)}: {column.name}="
            f"{value!r} is not one of {config_key('class_names')} {class_names}"
            f"{case_hint(value, class_names)}"
        )
    return labels.to_numpy(np.int64)


def case_hint(value: str, class_names: list[str]) -> str:
    """``; ... has 'normal' (names match exactly, case included)`` when ``value`` differs from a class name
    only in case."""
    same = [name for name in class_names if name.casefold() == value.casefold()]
    if not same:
        return ""
    return f"; {config_key('class_names')} has {same[0]!r} (names match exactly, case included)"
