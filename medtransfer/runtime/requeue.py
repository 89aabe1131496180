"""SLURM auto-requeue that continues to the same result: save at an epoch's end, requeue, stop.

A job submitted with ``--signal=USR1@<seconds> --requeue`` gets SIGUSR1 that long before its time limit. On
it, ``SlurmRequeue`` lets training run to the end of the current epoch when that fits in the time left
(``MEDTRANSFER_REQUEUE_GRACE_S``: the signal's lead minus a margin; the benchmark's SLURM scripts set it), so
``TaskCheckpoint`` writes that epoch's ``last.ckpt``; otherwise it stops at once, and the last epoch's
``last.ckpt`` is where the job continues. Rank 0 then runs ``scontrol requeue`` and every rank stops
(``Requeued``); the requeued job runs the same command with ``--ckpt_path last`` and, training being
deterministic from an epoch's end (docs/reliability.md), ends exactly where an uninterrupted run ends.

There is one resume mechanism, ``last.ckpt`` in the run's folder: Lightning's own SLURM handler (which saves
``hpc_ckpt_<n>.ckpt`` in ``default_root_dir`` in the middle of a step, and resumes from it only when no
``--ckpt_path`` is given) never runs, because Lightning leaves SIGUSR1 alone when a handler is installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning import Callback

from .settings import requeue_grace_s

GRACE_ENV = "MEDTRANSFER_REQUEUE_GRACE_S"  # read through runtime.settings
REQUEUE_SIGNAL = signal.SIGUSR1


class Requeued(Exception):  # noqa: N818 - an outcome, not a failure
    """The job was requeued; this attempt stops here (the command ends with status 0)."""


def slurm_job_id() -> str | None:
    """``<array job>_<task>`` for an array task, else the job id; None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_job(job_id: str) -> str | None:
    """``scontrol requeue <job_id>``; None when it worked, else why not."""
    try:
        done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")


def finish_epoch(elapsed_s: float, batches_done: int, batches_left: int, validation_s: float,
                 grace_s: float | None) -> bool:
    """Whether the rest of this epoch (its batches at this epoch's pace, and a validation as long as the
    last one) fits in ``grace_s``; no grace known: it does not."""
    if grace_s is None or batches_done <= 0:
        return False
    return elapsed_s / batches_done * batches_left + validation_s <= grace_s




class SlurmRequeue(Callback):
    """Requeue a SLURM job on ``REQUEUE_SIGNAL`` (see the module docstring); does nothing outside SLURM."""

    def __init__(self) -> None:
        self.signalled = False
        self.stop_at_epoch_end = False
        self._previous_handler = None
        self._epoch_started = 0.0
        self._validation_s = 0.0
        self._validation_started = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        """Install the handler before Lightning registers its own (it keeps an existing one)."""
        if SLURMEnvironment.detect() and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(REQUEUE_SIGNAL, self._on_signal)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous_handler is not None:
            signal.signal(REQUEUE_SIGNAL, self._previous_handler)
            self._previous_handler = None

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True  # no output here: the main thread may be in the middle of writing

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.stop_at_epoch_end:  # the epoch before has ended and TaskCheckpoint has saved it
            self._requeue(trainer, "after the end of the last epoch")
        self._epoch_started = time.monotonic()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_started = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validation_s = time.monotonic() - self._validation_started

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._previous_handler is None or self.stop_at_epoch_end:
            return
        # every rank decides together (the signal reaches the ranks at slightly different steps)
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        done = batch_idx + 1
        left = max(0, int(trainer.num_training_batches) - done) if trainer.num_training_batches != float(
            "inf") else 1 << 30
        finish = finish_epoch(time.monotonic() - self._epoch_started, done, left, self._validation_s,
                              requeue_grace_s())
        if trainer.strategy.broadcast(finish, src=0):
            self.stop_at_epoch_end = True
            if trainer.is_global_zero:
                sys.stderr.write(f"medtransfer: SLURM requeue signal: finishing epoch "
                                 f"{trainer.current_epoch} ({left} batches) to save it, then requeueing\n")
        else:
            self._requeue(trainer, "from the last saved epoch (the rest of this one would not fit in "
                          f"{GRACE_ENV}={requeue_grace_s() or 'unset'} s)")

    def _requeue(self, trainer, where: str) -> None:
        """Rank 0 requeues the job; if that worked, every rank stops; if not, training goes on."""
        problem = None
        if trainer.is_global_zero:
            job = slurm_job_id()
            problem = "no SLURM job id" if job is None else requeue_job(job)
        problem = trainer.strategy.broadcast(problem, src=0)
        if problem is not None:
            sys.stderr.write(f"medtransfer: scontrol requeue failed ({problem}); training goes on\n")
            self.stop_at_epoch_end = False
            self.signalled = False
            return
        raise Requeued(f"medtransfer: requeued SLURM job {slurm_job_id()}; it continues {where} with "
                       "--ckpt_path last")


def requeued_job() -> bool:
    """Whether this is a SLURM job that ran before (requeued: ``SLURM_RESTART_COUNT`` > 0)."""
    return os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")
