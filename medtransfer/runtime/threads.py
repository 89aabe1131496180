"""The CPUs this process may use, and the number of intra-op CPU threads torch uses, changed for a block
and put back after it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """``count`` intra-op CPU threads inside the block (``None``: leave the number as it is), the previous
    number after it, also when the block raises."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM or container allocation, not the machine's
    count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
