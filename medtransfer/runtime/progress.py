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




TRAINING_BAR = "pytorch_lightning.callbacks.TQDMProgressBar"


def choose_training_bar(trainer_config) -> None:
    """Give a command's trainer config tqdm's training bar unless it turns the bar off or names its own.
    Lightning draws the bar with Rich whenever Rich is installed (other packages pull it in), and Rich's live
    display redraws from a thread of its own: on a 2-core CPU it cost Finetune 8% of its training images/s
    (``benchmarks/train_throughput.py``), and every other medtransfer bar is tqdm's."""
    if trainer_config.get("enable_progress_bar") is False:
        return
    callbacks = trainer_config.get("callbacks") or []
    if any(_is_progress_bar(callback) for callback in callbacks):
        return
    from jsonargparse import Namespace

    trainer_config.callbacks = [*callbacks, Namespace(class_path=TRAINING_BAR, init_args=Namespace())]


def _is_progress_bar(callback) -> bool:
    from importlib import import_module

    from pytorch_lightning.callbacks import ProgressBar

    if isinstance(callback, ProgressBar):
        return True
    class_path = callback.get("class_path") if hasattr(callback, "get") else None
    if not class_path:
        return False
    module, _, name = class_path.rpartition(".")
    try:
        return issubclass(getattr(import_module(module), name), ProgressBar)
    except (ImportError, AttributeError, TypeError, ValueError):
        return False  # the trainer's instantiation names a callback it cannot build
