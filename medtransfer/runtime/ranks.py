"""Where this process stands among the processes of a run: the one answer to "am I rank 0?".

Before a process group exists (DDP ranks being started, a SLURM task, ``torchrun``) the launchers' environment
says it; once it exists, the group does."""

from __future__ import annotations

import os
import sys

# set by torchrun and SLURM before the process group exists (global ranks)
GLOBAL_RANK_VARIABLES = ("RANK", "SLURM_PROCID")


def world_and_rank(trainer=None) -> tuple[int, int]:
    """``(world size, global rank)``: the trainer's when one is given, else the initialised process
    group's (e.g. a ``torchrun`` extraction), else ``(1, 0)`` for a single process."""
    if trainer is not None:
        return trainer.world_size, trainer.global_rank
    if (dist := process_group()) is not None:
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def process_group():
    """``torch.distributed`` when its process group exists, else None (without importing torch: a process
    that never imported it has no group)."""
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None


def process_rank() -> int:
    """This process's global rank: the process group's, else the launcher's environment (torchrun and SLURM
    give the global rank; Lightning's own launcher gives ``NODE_RANK`` and ``LOCAL_RANK``), else 0."""
    if (dist := process_group()) is not None:
        return dist.get_rank()
    for name in GLOBAL_RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    local = local_process_rank()
    node = int(os.environ.get("NODE_RANK") or os.environ.get("GROUP_RANK") or 0)
    return node * int(os.environ.get("LOCAL_WORLD_SIZE") or 1) + local


def local_process_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``, as torchrun and Lightning's launcher set it): which of
    the node's devices it uses."""
    return int(os.environ.get("LOCAL_RANK") or 0)


def is_rank_zero() -> bool:
    """Whether this process writes a run's files and prints its messages."""
    return process_rank() == 0
