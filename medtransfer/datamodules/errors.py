"""Errors that tell a user what is wrong with their data, where, and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import MedTransferError


class DatasetLayoutError(MedTransferError, FileNotFoundError):
    """The dataset's folder does not hold the files its published layout has."""


class CorruptImageError(MedTransferError, ValueError):
    """An image file that is missing, unreadable or truncated."""


class SkippedSample(Exception):  # noqa: N818 - a signal, not a failure
    """Raised by a source for an unreadable image when ``skip_corrupt`` is on; the dataset drops the item."""


class BadLabelError(MedTransferError, ValueError):
    """A label outside the dataset's classes, or a label file without the expected columns."""


class ClassSetError(BadLabelError):
    """A class set that is almost certainly a mistake: one class spelled two ways, class numbers mixed with
    class names, a fractional class number, or a class with no training images (``class_sets``)."""


class PatientLeakError(MedTransferError, ValueError):
    """A patient's images in more than one of the splits the user made (``patient_splits``)."""


class CopiedImageError(MedTransferError, ValueError):
    """An image with a byte-identical copy in another of the splits the user made (``copies``)."""


class DatasetTooSmallError(MedTransferError, ValueError):
    """A split too small for what the run asks of it (e.g. one full batch of views per process)."""


class LoaderSettingError(MedTransferError, ValueError):
    """A DataLoader setting (``data.init_args.*``, ``MEDTRANSFER_NUM_WORKERS``) that cannot be used."""


def check_layout(
    dataset: str, root: str | Path, expected: Iterable[str], get_from: str, hint: str = ""
) -> Path:
    """``root`` as a Path, or one DatasetLayoutError listing every expected path that is missing and what the
    folder holds instead."""
    root = Path(root).expanduser()
    expected = list(expected)
    missing = [name for name in expected if not (root / name).exists()]
    if root.is_dir() and not missing:
        return root
    raise DatasetLayoutError(layout_message(dataset, root, expected, missing, get_from, hint))


def layout_message(
    dataset: str, root: Path, expected: list[str], missing: list[str], get_from: str, hint: str = ""
) -> str:
    lines = [f"{dataset}: the data is not where data.init_args.root says ({root})."]
    if not root.exists():
        lines.append(f"  {root} does not exist.")
    elif not root.is_dir():
        lines.append(f"  {root} is a file, not a folder.")
    lines.append("  expected:")
    lines += [f"    {root / name}{'   <- missing' if name in missing else ''}" for name in expected]
    if root.is_dir():
        lines.append(f"  found instead: {describe_folder(root)}")
    if hint:
        lines.append(f"  {hint}")
    lines.append(f"  Get the data from {get_from}")
    return "\n".join(lines)


def describe_folder(folder: Path, limit: int = 15) -> str:
    """The first entries of a folder (folders end in '/'), or 'nothing (empty folder)'."""
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    if not entries:
        return "nothing (empty folder)"
    names = [f"{p.name}/" if p.is_dir() else p.name for p in entries[:limit]]
    more = f" ... and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(names) + more
