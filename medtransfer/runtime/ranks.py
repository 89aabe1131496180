"""Where this process stands among the processes of a run."""

from __future__ import annotations

import torch.distributed as dist


def world_and_rank(trainer=None) -> tuple[int, int]:
    """``(world size, global rank)``: the trainer's when one is given, else the initialised process
    group's (e.g. a ``torchrun`` extraction), else ``(1, 0)`` for a single process."""
    if trainer is not None:
        return trainer.world_size, trainer.global_rank
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0
