"""A training step's randomness: seeded from (run seed, epoch, batch, rank), and contained in the step."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from medtransfer.lightning_modules.base import MedTransferModule
from medtransfer.lightning_modules.step_seeding import enter_step, leave_step, step_seed


def test_a_step_draws_what_its_seed_says_and_the_outside_stream_goes_on_untouched(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    torch.manual_seed(123)
    expected_outside = torch.rand(3, generator=torch.Generator().manual_seed(123))
    states = enter_step(epoch=2, batch_idx=5, rank=1)
    inside = torch.rand(4)
    leave_step(states)
    torch.testing.assert_close(torch.rand(3), expected_outside)  # as if no step had run
    seeded = torch.Generator().manual_seed(step_seed(2, 5, 1))
    torch.testing.assert_close(inside, torch.rand(4, generator=seeded))
    again = enter_step(2, 5, 1)
    torch.testing.assert_close(torch.rand(4), inside)  # the same step, the same numbers (a resumed run)
    leave_step(again)


def test_the_seed_depends_on_run_epoch_batch_and_rank(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    seeds = {step_seed(e, b, r) for e in range(3) for b in range(3) for r in range(2)}
    assert len(seeds) == 18
    first = step_seed(0, 0, 0)
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")
    assert step_seed(0, 0, 0) != first


class Noisy(MedTransferModule):
    """Dropout on a constant input: what a step draws shows in its output."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.5)
        self.masks: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        mask = self.dropout(torch.ones(1, 16))
        self.masks.append(mask)
        return self.layer(batch[0]).sum() + 0 * mask.sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_masks(seed: int, outside_draws: int = 0) -> list[torch.Tensor]:
    pl.seed_everything(seed)
    torch.rand(outside_draws)  # code before training that draws from the global generator
    model = Noisy()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(6, 4)), batch_size=2)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, loader)
    return model.masks


def test_every_training_step_draws_from_its_own_seed():
    masks = fit_masks(0)
    assert len(masks) == 6 and len({tuple(m.flatten().tolist()) for m in masks}) == 6
    assert all(torch.equal(a, b) for a, b in zip(masks, fit_masks(0, outside_draws=5), strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(masks, fit_masks(1), strict=True))


def test_a_step_gives_torch_its_state_back_and_leaves_python_and_numpy_alone():
    model = Noisy()
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    python, numpy, cpu = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    model.on_train_batch_start(None, 0)
    torch.rand(8)  # what the step draws
    model.on_train_batch_end(None, None, 0)
    model.on_train_batch_end(None, None, 1)  # nothing entered: nothing to give back
    assert torch.equal(torch.get_rng_state(), cpu)
    assert random.getstate() == python and np.array_equal(np.random.get_state()[1], numpy)
