"""The one progress bar of medtransfer's long steps (extraction, downloads, decompression, unpacking,
``medtransfer prepare --cache``): a tqdm bar on stderr that shows itself only where someone watches.

Use ``progress(iterable, desc, total)`` to wrap a loop, or ``progress(desc=..., total=..., unit="B")`` as a
context manager with ``bar.update(n)`` for bytes. The bar is off when stderr is not a terminal (log files of
SLURM jobs and CI stay readable) and on every DDP rank but zero (one bar, not one per process);
``MEDTRANSFER_PROGRESS=1`` forces it on (rank zero only), ``MEDTRANSFER_PROGRESS=0`` off.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm

from .ranks import process_rank
from .settings import progress_forced

PROGRESS_ENV = "MEDTRANSFER_PROGRESS"  # read through runtime.settings


def progress(iterable: Iterable | None = None, desc: str | None = None, total: int | float | None = None,
             unit: str = "it", **kwargs) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one) on stderr, disabled where ``show_progress`` says no.
    ``unit="B"`` scales to kB/MB/GB; other tqdm keyword arguments pass through."""
    if unit == "B":
        kwargs.setdefault("unit_scale", True)
        kwargs.setdefault("unit_divisor", 1024)
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=not show_progress(),
                dynamic_ncols=True, leave=kwargs.pop("leave", True), **kwargs)


def show_progress() -> bool:
    """Whether this process draws progress bars: rank zero only, then ``MEDTRANSFER_PROGRESS`` if set, else
    whether stderr is a terminal."""
    if process_rank() != 0:
        return False
    forced = progress_forced()
    return sys.stderr.isatty() if forced is None else forced
