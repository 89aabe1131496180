"""One process at a time per run folder: ``fit``, ``validate`` and ``test`` hold an exclusive lock on their
log folder, so two runs that would write the same ``version_<n>`` (the same pinned version, or two launched at
the same moment) cannot overwrite each other's checkpoints and results.json: the second stops with a
``RunFolderBusyError``. The lock is ``flock`` on the folder itself (no lock file: a run folder holds only what
the run writes, and loggers that warn about a non-empty folder stay quiet); the operating system drops it
when its process ends, however it ends, so a killed run never leaves a stale lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import MedTransferError
from ..utils.atomic import write_failure

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
_held: list[int] | None = None  # the locks of the command running now (``run_locks``)


class RunFolderBusyError(MedTransferError, RuntimeError):
    """Another medtransfer process is writing the same run folder."""


def lock_run_folder(folder: str | Path) -> int:
    """Take ``folder``'s lock (creating the folder) and return the open descriptor that holds it: keep it
    open for as long as the run writes there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise write_failure(folder, error) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunFolderBusyError(
            f"{folder} is being written by another medtransfer run; wait for it to end, or give this run its "
            "own folder (--trainer.logger.init_args.version, or another name or save_dir)"
        ) from None
    if _held is not None:
        _held.append(fd)
    return fd


@contextlib.contextmanager
def run_locks() -> Iterator[None]:
    """Release, when the block ends, every lock ``lock_run_folder`` took inside it (one command's)."""
    global _held
    outer, _held = _held, []
    try:
        yield
    finally:
        for fd in _held:
            os.close(fd)
        _held = outer


def launching_rank() -> bool:
    """True in the process that writes a run's files: not a DDP worker started with a rank above 0
    (Lightning's launcher, torchrun, SLURM tasks)."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


@contextlib.contextmanager
def hold_run_folder(folder: str | Path) -> Iterator[None]:
    """``folder``'s lock for the length of a block."""
    fd = lock_run_folder(folder)
    try:
        yield
    finally:
        os.close(fd)
