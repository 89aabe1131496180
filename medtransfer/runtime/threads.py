"""Torch's intra-op CPU threads: the one place a run's thread count is chosen and changed.

A head trained on cached features takes steps of a handful of tiny matrix products; on a CPU, OpenMP's
synchronisation across threads costs more than the products (100 epochs of a linear probe ran 2-3x faster on
one thread, measured on a 2-core VM). ``step_threads`` gives such runs one thread for their steps; the large
computations inside them (extracting a feature store, the exact logistic solve, the results' statistics) ask
for every thread back with ``all_threads``. The exact solve with few outputs is the exception
(``solver_threads``): its work is matrix-vector products, which MKL runs on one thread, so a second thread
only spins between them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_every_thread: int | None = None  # the count before ``step_threads`` lowered it, while it runs


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


@contextmanager
def step_threads(one_thread: bool) -> Iterator[None]:
    """The threads a run's steps take: one when ``one_thread`` (see the module docstring), else every
    thread; the count is put back when the run ends."""
    global _every_thread
    outer, _every_thread = _every_thread, torch.get_num_threads()
    try:
        with torch_threads(1 if one_thread else None):
            yield
    finally:
        _every_thread = outer


@contextmanager
def all_threads() -> Iterator[None]:
    """Every thread the process had before ``step_threads`` lowered the count, for a large computation
    inside a run whose steps take one thread (outside such a run: the current count)."""
    with torch_threads(_every_thread):
        yield


# the exact logistic solve's products with at most this many outputs gain no wall time from a second thread
# (1 and 5 outputs on 5,000 x 2,048 features: the same wall time on one thread at half the CPU time; 14
# outputs: 1.5x faster on two; 2-core VM, MKL, docs/protocols.md)
SOLVER_ONE_THREAD_OUTPUTS = 5


def solver_threads(num_outputs: int, device: torch.device) -> int | None:
    """The threads of the exact logistic solve (``torch_threads``): one for a CPU solve of at most
    ``SOLVER_ONE_THREAD_OUTPUTS`` outputs, whose idle second thread would only spin; else the count as it
    is."""
    return 1 if device.type == "cpu" and num_outputs <= SOLVER_ONE_THREAD_OUTPUTS else None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a SLURM or container allocation, not the machine's
    count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
