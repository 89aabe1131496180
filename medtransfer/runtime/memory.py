"""The memory this process may still take, and refusing up front what would not fit.

A head that holds a whole split (the exact solver's standardised training features, kNN's bank) asks first
whether its largest allocation fits, and stops with what it needs, what is free and the option that fits,
instead of being killed by the kernel half an hour into a solve (a PCam-size store, 262,144 x 2,048: 1 GiB
as stored in float16, 2 GiB standardised in float32). Linux only (``/proc/meminfo`` and the cgroup's limit);
elsewhere nothing is refused.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MedTransferError

GIB = 1024**3


class InsufficientMemoryError(MedTransferError, MemoryError):
    """An allocation a run needs is larger than the memory still available."""


def available_bytes() -> int | None:
    """The memory that can still be allocated without swapping: the kernel's ``MemAvailable``, or what the
    cgroup (a container, a SLURM allocation) still allows when that is less; None where neither is known."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_fits(needed: int, what: str, fix: str) -> None:
    """Refuse ``what`` when its ``needed`` bytes exceed the memory available (``InsufficientMemoryError``
    naming both and ``fix``, the option that fits)."""
    available = available_bytes()
    if available is not None and needed > available:
        raise InsufficientMemoryError(
            f"{what} needs {needed / GIB:.1f} GiB of memory and {available / GIB:.1f} GiB are available: "
            f"{fix}"
        )
