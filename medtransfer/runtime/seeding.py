"""The run's seed, shared by the data side (sample order, augmentation) and the feature-store batches."""

from __future__ import annotations

import os

SEED_VARIABLE = "PL_GLOBAL_SEED"  # where Lightning's seed_everything records the seed


def run_seed() -> int:
    """The seed ``seed_everything`` set for this run (LightningCLI's ``seed_everything`` key), 0 when unset.

    Read from the environment Lightning writes it to, never from the clock, so every process and every
    DataLoader worker of a run agrees on it."""
    return int(os.environ.get(SEED_VARIABLE, 0))


def recorded_seed() -> int | None:
    """The seed this process was seeded with (results.json's ``seed``), None when it never was."""
    value = os.environ.get(SEED_VARIABLE)
    return int(value) if value is not None else None
