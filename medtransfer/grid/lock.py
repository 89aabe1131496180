"""One benchmark process at a time per output folder (``medtransfer.runtime.lock``): two would start the same
unfinished runs and overwrite each other's folders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..runtime.lock import FolderBusyError, holding


class GridBusyError(FolderBusyError):
    """Another ``medtransfer benchmark`` process is working on the same output folder."""


@contextlib.contextmanager
def exclusive(output_dir: Path) -> Iterator[None]:
    """Hold ``output_dir``'s lock while the block runs, or fail at once with ``GridBusyError``."""
    busy = GridBusyError(f"another `medtransfer benchmark` is running the grid in {output_dir}; wait for it "
                         "to end, or give this one another --output_dir")
    with holding(output_dir, busy):
        yield
