"""One process at a time per folder: a run folder (``fit``, ``validate``, ``test``: two runs that would write
the same ``version_<n>`` cannot overwrite each other's checkpoints and results.json) and a grid's output
folder (two ``medtransfer benchmark`` processes would start the same unfinished runs).

The lock is ``flock`` on the folder itself: no lock file, so a folder holds only what its owner writes
(loggers that warn about a non-empty folder stay quiet, a finished grid stays byte-identical), and the
operating system drops the lock when its process ends, however it ends, so a killed run never leaves a stale
lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import MedTransferError
from ..utils.atomic import write_failure


class FolderBusyError(MedTransferError, RuntimeError):
    """Another medtransfer process holds the folder."""


class RunFolderBusyError(FolderBusyError):
    """Another medtransfer run is writing the same run folder."""


def lock_folder(folder: str | Path, busy: FolderBusyError) -> int:
    """Take ``folder``'s lock (creating the folder) and return the open descriptor that holds it: keep it
    open for as long as the folder is written; ``busy`` is raised when another process holds it."""
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
        raise busy from None
    return fd


@contextlib.contextmanager
def holding(folder: str | Path, busy: FolderBusyError) -> Iterator[None]:
    """``folder``'s lock for the length of a block."""
    fd = lock_folder(folder, busy)
    try:
        yield
    finally:
        os.close(fd)


def run_folder_busy(folder: str | Path) -> RunFolderBusyError:
    return RunFolderBusyError(
        f"{folder} is being written by another medtransfer run; wait for it to end, or give this run its own "
        "folder (--trainer.logger.init_args.version, or another name or save_dir)"
    )
