"""The randomness of a training step, seeded and contained.

Dropout, stochastic depth and the random shuffles of some self-supervised methods draw from torch's global
generators, which no layer lets a caller replace by one of its own. So each training step runs with those
generators seeded from (run seed, epoch, batch, rank): a resumed run repeats the steps of an uninterrupted
one, even though Lightning draws random numbers at other moments when it resumes. When the step ends, the
generators get back the states they had before it, so code around training (loaders, callbacks, the user's
own) draws the numbers it would have drawn without it. Python's and numpy's global generators are left
alone: code in a step that needs their kind of randomness takes an explicit generator
(``numpy.random.default_rng(seed)``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..runtime.seeding import run_seed


class GeneratorStates(NamedTuple):
    """torch's global generator states: the CPU one, and the CUDA ones when CUDA is in use."""

    cpu: torch.Tensor
    cuda: list[torch.Tensor] | None


def step_seed(epoch: int, batch_idx: int, rank: int = 0) -> int:
    """The seed of one training step of this run (a function of the run seed, epoch, batch and rank only)."""
    words = [run_seed(), epoch, batch_idx, rank]
    return int(np.random.SeedSequence(words).generate_state(1)[0]) % (2**31)


def enter_step(epoch: int, batch_idx: int, rank: int = 0) -> GeneratorStates:
    """Seed torch's global generators for a step; returns their states from before, for ``leave_step``."""
    # not torch.manual_seed, nor torch.cuda.is_available: they query the driver, which costs up to
    # milliseconds per call; a run on a GPU has initialised CUDA before its first step
    cuda = torch.cuda.is_initialized()
    states = GeneratorStates(torch.default_generator.get_state(),
                             torch.cuda.get_rng_state_all() if cuda else None)
    seed = step_seed(epoch, batch_idx, rank)
    torch.default_generator.manual_seed(seed)
    if cuda:
        torch.cuda.manual_seed_all(seed)
    return states


def leave_step(states: GeneratorStates) -> None:
    """Put back the generator states ``enter_step`` returned."""
    torch.default_generator.set_state(states.cpu)
    if states.cuda is not None:
        torch.cuda.set_rng_state_all(states.cuda)
