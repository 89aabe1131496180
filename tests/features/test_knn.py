"""kNN against a hand-computed example, and the KNN module's metric names."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from medtransfer.features.knn import knn_vote
from medtransfer.lightning_modules import KNN


def test_weighted_vote_matches_a_hand_computed_example():
    bank = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    query = torch.tensor([[2.0, 0.0]])
    # cosine similarities to the bank: 1, 0, 1/sqrt(2), -1
    # k=3 keeps rows 0 (class 0), 2 (class 1) and 1 (class 1)
    t = 0.5
    w0, w2, w1 = math.exp(1 / t), math.exp(1 / math.sqrt(2) / t), math.exp(0 / t)
    expected = torch.tensor([[w0, w2 + w1, 0.0]]) / (w0 + w2 + w1)
    scores = knn_vote(query, bank, labels, num_classes=3, k=3, temperature=t)
    torch.testing.assert_close(scores, expected)


def test_multilabel_vote_is_the_weighted_share_of_neighbours_with_each_finding():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    scores = knn_vote(torch.tensor([[1.0, 1.0]]), bank, labels, num_classes=2, k=2, temperature=0.1)
    torch.testing.assert_close(scores, torch.tensor([[1.0, 0.5]]))  # equal similarity: equal weights


def test_knn_test_reports_the_usual_metrics_under_the_knn_prefix(tmp_path, data):
    model = KNN(backbone="test_resnet", k=5, features_dir=str(tmp_path), task=data.task)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    (metrics,) = trainer.test(model, datamodule=model.attach_data(data), verbose=False)
    assert set(metrics) >= {"knn/test/auroc", "knn/test/acc", "knn/test/f1", "knn/test/loss"}
    assert model.extra_results()["knn"]["k"] == 5
    with pytest.raises(RuntimeError, match="nothing to train"):
        pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, accelerator="cpu").fit(model, data)


def test_standardised_knn_votes_on_the_banks_standardised_features(tmp_path, data):
    model = KNN(backbone="test_resnet", k=5, features_dir=str(tmp_path), task=data.task)
    assert model.standardize  # the default: centring helped cosine kNN on every store measured
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu")
    trainer.test(model, datamodule=model.attach_data(data), verbose=False)
    bank, labels = model._bank
    mean, std = bank.float().mean(0), bank.float().std(0, correction=0)
    constant = model.standardizers[0].constant
    std = torch.where(constant, torch.ones_like(std), std)
    batch = next(iter(model.cached_split("test")))
    queries = (batch["features"][0].float() - mean) / std
    expected = knn_vote(queries, (bank.float() - mean) / std, labels, data.task.num_classes, 5, 0.07)
    probs = torch.sigmoid(model.logits(batch).reshape(-1))
    torch.testing.assert_close(probs, expected[:, 1].clamp(1e-6, 1 - 1e-6), atol=1e-4, rtol=0)
