"""One benchmark process at a time per output folder: two would start the same unfinished runs and overwrite
each other's folders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import MedTransferError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no locking
    fcntl = None

LOCK_FILE = ".lock"


class GridBusyError(MedTransferError, RuntimeError):
    """Another ``medtransfer benchmark`` process is working on the same output folder."""


@contextlib.contextmanager
def exclusive(output_dir: Path) -> Iterator[None]:
    """Hold ``<output_dir>/.lock`` (an advisory ``flock``: released by the system when the holder dies, so a
    killed benchmark never leaves the folder locked) or fail at once with ``GridBusyError``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / LOCK_FILE, "a") as handle:  # never written: a finished grid stays byte-identical
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GridBusyError(
                    f"another `medtransfer benchmark` is running the grid in {output_dir} (it holds "
                    f"{output_dir / LOCK_FILE}); wait for it to end, or give this one another --output_dir"
                ) from None
        yield
