"""The training progress of a run: tqdm's bar on a terminal, one line per epoch everywhere else."""

from __future__ import annotations

import sys
import time

import torch
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

from .progress import show_progress


def step_value_on_bar(value: torch.Tensor) -> bool:
    """Whether a per-step tensor may go on the progress bar: Lightning turns progress-bar values into numbers
    after every batch, which on a GPU makes the host wait for each step before it queues the next; on a CPU
    the number is there already. The loggers get the value either way (every ``log_every_n_steps``)."""
    return value.device.type == "cpu"


def training_bar(callbacks: list, enabled: bool | None):
    """The progress bar a run's trainer gets: None when the trainer has one already or the config turns the
    bar off; tqdm's bar where someone watches (``show_progress``); else ``EpochLines``, one line per epoch, so
    a log file or a SLURM ``output.log`` holds no carriage-return redraws. Lightning's own default is Rich's
    bar whenever Rich is installed, whose redraw thread cost Finetune 8% of its training images/s on a 2-core
    CPU (``benchmarks/train_throughput.py``); every other medtransfer bar is tqdm's."""
    if enabled is False or any(isinstance(callback, ProgressBar) for callback in callbacks):
        return None
    return TQDMProgressBar() if show_progress() else EpochLines()


class EpochLines(ProgressBar):
    """The training bar where no one watches: after each training epoch, one line on stderr with the epoch's
    logged metrics (training loss, validation metrics) and how long it took, from rank zero only."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._epoch_started: float | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._write_line(trainer)  # the epoch before: its validation and its metrics are complete now
        self._epoch_started = time.monotonic()

    def on_train_end(self, trainer, pl_module) -> None:
        self._write_line(trainer)

    def _write_line(self, trainer) -> None:
        if self._epoch_started is None or not self._enabled or not trainer.is_global_zero:
            return
        seconds = time.monotonic() - self._epoch_started
        self._epoch_started = None
        shown = {name: value for name, value in trainer.callback_metrics.items()
                 if name.count("/") == 1 and not name.endswith("_step")}
        values = ", ".join(f"{name} {float(value):.4g}" for name, value in sorted(shown.items()))
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        # the epoch just finished, counted from 1: Lightning has moved ``current_epoch`` on past it
        sys.stderr.write(f"epoch {trainer.current_epoch}{total}: {values} ({seconds:.1f} s)\n")
        sys.stderr.flush()
