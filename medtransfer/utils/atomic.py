"""Files that appear whole or not at all: written beside their place and renamed onto it, so a reader (or a
run that was interrupted) never sees half a file. A write the file system refuses (disk full, read-only
folder, no permission, a file where a folder should be, a name too long) is an ``OutputWriteError`` naming the
file and what to do, and the file's previous version stays."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MedTransferError

HINTS = {
    errno.ENOSPC: "the disk is full: free space or write the outputs elsewhere",
    errno.EDQUOT: "the disk quota is used up: free space or write the outputs elsewhere",
    errno.EROFS: "the file system is read-only: write the outputs elsewhere",
    errno.EACCES: "no permission to write there: change the folder's permissions or write elsewhere",
    errno.EPERM: "no permission to write there: change the folder's permissions or write elsewhere",
    errno.ENAMETOOLONG: "a name in the path is longer than the file system allows (usually 255 bytes): "
                        "choose a shorter one",
    errno.EISDIR: "a folder of that name is in the way: give a file name, not a folder",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f) or the file system takes: raise "
                 "the limit or write elsewhere",
}
NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)  # a file stands where the path needs a folder
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems, where pathconf cannot say
TEMPORARY_SUFFIX_BYTES = 38  # ".<32 hex digits>.tmp" and the leading dot


class OutputWriteError(MedTransferError, OSError):
    """An output file could not be written; its previous version, if any, is unchanged."""


def write_failure(path: str | Path, error: OSError) -> OutputWriteError:
    """The ``OutputWriteError`` for ``error`` raised while writing ``path``, with what to do about it."""
    reason, hint = _reason_and_hint(Path(path), error)
    failure = OutputWriteError(f"cannot write {path}: {reason}; {hint}. Nothing there was changed")
    failure.errno = error.errno
    return failure


def _reason_and_hint(path: Path, error: OSError) -> tuple[str, str]:
    """What went wrong, in words, and what to do. A file where the path needs a folder is named: the
    system's own words for it ("File exists", "Not a directory") do not say which."""
    blocker = _file_in_the_way(path) if error.errno in NOT_A_FOLDER else None
    if blocker is not None:
        return f"{blocker} is a file, not a folder", "write elsewhere, or move that file away"
    hint = HINTS.get(error.errno, "check the folder (e.g. --trainer.default_root_dir, the logger's save_dir)")
    return error.strerror or str(error), hint


def _file_in_the_way(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that exists and is not a folder."""
    return next((folder for folder in reversed(path.parents)
                 if os.path.exists(folder) and not os.path.isdir(folder)), None)


def check_writable(path: str | Path) -> None:
    """Raises now the ``OutputWriteError`` that writing ``path`` would end in, for a refusal that can be seen
    before the work that makes its content: its folder cannot be created (a file in the way) or written to
    (permissions, a read-only file system), its name is too long, or a folder stands at its place. Creates
    the folder; writes nothing else."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if len(os.fsencode(path.name)) > _name_limit(path.parent):
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
        probe = path.parent / _temporary_name(path.name)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as error:
        raise write_failure(path, error) from error


def _name_limit(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or a file system that will not say
        return NAME_MAX


def _temporary_name(name: str) -> str:
    """``.<name>.<32 hex digits>.tmp``, with ``name`` cut short where the whole would pass ``NAME_MAX`` bytes:
    a file whose own name is near the limit can still be written through a temporary file."""
    room = NAME_MAX - TEMPORARY_SUFFIX_BYTES
    stem = os.fsencode(name)[:room].decode(errors="ignore") if len(os.fsencode(name)) > room else name
    return f".{stem}.{uuid.uuid4().hex}.tmp"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path in ``path``'s folder (created if missing) to write the file to: renamed onto
    ``path`` when the block ends, deleted when it raises (an ``OSError`` comes out as ``OutputWriteError``).
    The name is unique, so processes writing the same file at once never write into each other's temporary
    file; the last rename wins."""
    path = Path(path)
    tmp = path.with_name(_temporary_name(path.name))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        _remove_if_there(tmp)
        if isinstance(error, OSError) and not isinstance(error, MedTransferError):
            raise write_failure(path, error) from error
        raise


def _remove_if_there(tmp: Path) -> None:
    """Delete a temporary file, if it was made: where its folder could not be (a file in the way, a name too
    long), removing it fails too, and the error that matters is the one that stopped the write."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through ``atomic_path``. Written through a Python file, so that a refused write (a full
    disk) reaches ``atomic_path`` as the file system's ``OSError``: saved to a path, torch's own writer turns
    it into an opaque ``RuntimeError`` ("enforce fail at inline_container.cc ... unexpected pos"). What a
    write raised (that ``OSError``, or a signal's exception: Ctrl-C during a save) comes out as itself."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        writer = _KeptWriteError(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
    return Path(path)


class _KeptWriteError:
    """The file ``torch.save`` writes to, keeping the exception a write raised: torch's writer replaces it by
    a ``RuntimeError`` of its own."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.error: BaseException | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except BaseException as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


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
