"""The run's seed, shared by the data side (sample order, augmentation) and the feature-store batches."""

from __future__ import annotations

import os


def run_seed() -> int:
    """The seed ``seed_everything`` set for this run (LightningCLI's ``seed_everything`` key), 0 when unset.

    Read from the environment Lightning writes it to, never from the clock, so every process and every
    DataLoader worker of a run agrees on it."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))
