"""Files that appear whole or not at all: written beside their place and renamed onto it, so a reader (or a
run that was interrupted) never sees half a file. A write the file system refuses (disk full, read-only
folder, no permission) is an ``OutputWriteError`` naming the file, and the file's previous version stays."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import MedTransferError

HINTS = {
    errno.ENOSPC: "the disk is full: free space or write the outputs elsewhere",
    errno.EDQUOT: "the disk quota is used up: free space or write the outputs elsewhere",
    errno.EROFS: "the file system is read-only: write the outputs elsewhere",
    errno.EACCES: "no permission to write there: change the folder's permissions or write elsewhere",
    errno.EPERM: "no permission to write there: change the folder's permissions or write elsewhere",
}


class OutputWriteError(MedTransferError, OSError):
    """An output file could not be written; its previous version, if any, is unchanged."""


def write_failure(path: str | Path, error: OSError) -> OutputWriteError:
    """The ``OutputWriteError`` for ``error`` raised while writing ``path``, with what to do about it."""
    hint = HINTS.get(error.errno, "check the folder (e.g. --trainer.default_root_dir, the logger's save_dir)")
    reason = error.strerror or str(error)
    failure = OutputWriteError(f"cannot write {path}: {reason}; {hint}. Nothing there was changed")
    failure.errno = error.errno
    return failure


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path in ``path``'s folder (created if missing) to write the file to: renamed onto
    ``path`` when the block ends, deleted when it raises (an ``OSError`` comes out as ``OutputWriteError``).
    The name is unique, so processes writing the same file at once never write into each other's temporary
    file; the last rename wins."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, MedTransferError):
            raise write_failure(path, error) from error
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def flush_to_disk(handle) -> None:
    """Flush an open file's writes to the disk (before it is renamed into place)."""
    handle.flush()
    os.fsync(handle.fileno())


def fsync_path(path: Path) -> None:
    """Flush the file or folder ``path`` to the disk before it is renamed into place, so a power cut cannot
    leave the new name pointing at empty blocks (a folder: its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
