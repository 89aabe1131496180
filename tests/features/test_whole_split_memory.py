"""Heads that hold a whole split (the exact solver, kNN's bank) at PCam size: the split is held once per form
it is needed in (float16 as stored, float32 standardised: one copy, computed in place), and a split that
cannot fit is refused up front with the memory it needs and the option that fits."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from medtransfer.features import datamodule as datamodule_module
from medtransfer.features.knn import knn_vote, unit_rows
from medtransfer.features.store import _all_finite
from medtransfer.lightning_modules import KNN, LinearProbe
from medtransfer.lightning_modules.standardize import FeatureStandardizer, Moments
from medtransfer.runtime import memory


def standardizer_of(x: torch.Tensor) -> FeatureStandardizer:
    standardizer = FeatureStandardizer(x.shape[1])
    standardizer.set_statistics(Moments(x.shape[1]).update(x))
    return standardizer


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_standardisation_is_one_float32_copy_and_leaves_its_input_alone(dtype):
    x = (torch.randn(1000, 7, dtype=torch.float64) * 3 + 1).to(dtype)
    before = x.clone()
    standardizer = standardizer_of(x)
    out = standardizer(x)
    assert out.dtype == torch.float32 and out.data_ptr() != x.data_ptr()
    assert torch.equal(x, before)  # a float32 input is copied, not standardised in place
    expected = (x.double() - standardizer.mean.double()) / standardizer.std.double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_a_prepared_unit_bank_votes_as_the_bank_itself():
    generator = torch.Generator().manual_seed(0)
    bank = (torch.randn(300, 16, generator=generator) + 0.5).half()
    labels = torch.randint(0, 3, (300,), generator=generator)
    queries = torch.randn(20, 16, generator=generator)
    standardizer = standardizer_of(bank)
    expected = knn_vote(queries, standardizer(bank), labels, 3, k=7)
    prepared = unit_rows(bank, standardizer, chunk=64)
    torch.testing.assert_close(prepared.norm(dim=1), torch.ones(300))
    torch.testing.assert_close(knn_vote(queries, prepared, labels, 3, k=7, unit_bank=True), expected)


def test_the_whole_split_is_read_in_order_and_a_fraction_by_its_rows():
    stored = np.arange(40, dtype=np.float16).reshape(10, 4)
    whole = datamodule_module.rows_in_memory(stored, np.arange(10))
    assert np.array_equal(whole, stored) and whole.flags.c_contiguous and whole is not stored
    assert np.array_equal(datamodule_module.rows_in_memory(stored, np.array([7, 2])), stored[[7, 2]])


def test_the_finiteness_check_looks_at_every_block():
    features = np.zeros((10, 3), np.float16)
    assert _all_finite(features, rows=3)
    features[9, 2] = np.inf
    assert not _all_finite(features, rows=3)


def test_check_fits_names_the_need_the_memory_free_and_the_fix(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 3 * memory.GIB)
    memory.check_fits(2 * memory.GIB, "a thing", "a smaller one")
    with pytest.raises(memory.InsufficientMemoryError, match=r"a thing needs 4.0 GiB of memory and 3.0 GiB "
                       r"are available: a smaller one"):
        memory.check_fits(4 * memory.GIB, "a thing", "a smaller one")
    monkeypatch.undo()  # the real one answers on Linux (None elsewhere)
    available = memory.available_bytes()
    assert available is None or available > 0


def trainer() -> pl.Trainer:
    return pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, accelerator="cpu")


def test_the_exact_solver_refuses_up_front_a_split_that_cannot_fit(tmp_path, data, monkeypatch):
    model = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task)
    datamodule = model.attach_data(data)
    train = model.cached_split("train")  # the stores themselves fit
    rows, dim = train.features[0].shape
    monkeypatch.setattr(memory, "available_bytes", lambda: rows * dim * 4)  # less than train + validation
    with pytest.raises(memory.InsufficientMemoryError, match=rf"exact solver on {rows} x {dim} training "
                       r"features .* needs .*solver: sgd"):
        trainer().fit(model, datamodule=datamodule)


def test_knn_refuses_up_front_a_bank_that_cannot_fit(tmp_path, data, monkeypatch):
    model = KNN(backbone="test_resnet", k=5, features_dir=str(tmp_path), task=data.task)
    datamodule = model.attach_data(data)
    rows, dim = model.cached_split("train").features[0].shape
    monkeypatch.setattr(memory, "available_bytes", lambda: rows * dim * 4 - 1)
    with pytest.raises(memory.InsufficientMemoryError, match=rf"kNN's memory bank \({rows} x {dim}.*"
                       "train_fraction"):
        trainer().test(model, datamodule=datamodule, verbose=False)
