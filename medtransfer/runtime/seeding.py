"""The run's seed, shared by the data side (sample order, augmentation) and the feature-store batches."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping

from ..errors import ConfigValueError

SEED_VARIABLE = "PL_GLOBAL_SEED"  # where Lightning's seed_everything records the seed
SEED_RANGE = 2**32  # numpy's seeds: 0 .. 2**32 - 1
log = logging.getLogger(__name__)


def drawn_seed(env: Mapping[str, str] = os.environ) -> int:
    """The seed of ``seed_everything: true``: drawn from the operating system's entropy (never the clock:
    runs started in the same second would share it), said, and recorded in results.json.

    Lightning's own ``seed_everything(None)`` gives 0 every time, so "a random seed" repeated a run three
    times over. Ranks started apart (torchrun, srun: ``WORLD_SIZE`` or ``SLURM_NTASKS`` above 1) would each
    draw their own (other initial weights, other shuffles of the shards): they take ``PL_GLOBAL_SEED`` when
    every rank is given it (the ranks Lightning starts for ``trainer.devices N`` inherit the first rank's
    draw that way), and are refused without it."""
    if _count(env.get("WORLD_SIZE")) > 1 or _count(env.get("SLURM_NTASKS")) > 1:
        given = env.get(SEED_VARIABLE)
        if given is None or not given.strip().isdigit():
            raise ConfigValueError(
                "seed_everything=true: the ranks of this multi-process run would each draw their own seed "
                "and not agree (initial weights, data shards); give one number (--seed_everything 7), the "
                "same on every rank")
        return int(given)
    seed = secrets.randbelow(SEED_RANGE)
    log.info("seed_everything=true: drew seed %d (results.json's seed; --seed_everything %d repeats it)",
             seed, seed)
    return seed


def _count(value: str | None) -> int:
    return int(value) if value is not None and value.strip().isdigit() else 1


def run_seed() -> int:
    """The seed ``seed_everything`` set for this run (LightningCLI's ``seed_everything`` key), 0 when unset.

    Read from the environment Lightning writes it to, never from the clock, so every process and every
    DataLoader worker of a run agrees on it."""
    return int(os.environ.get(SEED_VARIABLE, 0))


def recorded_seed() -> int | None:
    """The seed this process was seeded with (results.json's ``seed``), None when it never was."""
    value = os.environ.get(SEED_VARIABLE)
    return int(value) if value is not None else None
