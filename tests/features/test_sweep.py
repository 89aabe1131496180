"""The LR sweep: heads trained together, selection on validation only, the selected head tested."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torchmetrics.functional.classification import binary_auroc

from medtransfer.datamodules.sources import ArraySource
from medtransfer.lightning_modules import LinearSweep

from .feature_fixtures import tiny_data


class FlippedTestLabels(type(tiny_data())):
    """The test split's labels inverted: the head best on validation is then about the worst on test, so
    selecting on test would pick another head."""

    def build_sources(self):
        sources = super().build_sources()
        test = sources["test"]
        sources["test"] = ArraySource(test.images, 1 - test.labels, test.ids, test.groups)
        return sources


def head_auroc(model, batch_features, labels, head) -> float:
    with torch.no_grad():
        inputs = model.embeddings({"features": [batch_features]})[0]  # standardised as in training
        logits = model.heads.head(head, inputs).reshape(-1)
    return float(binary_auroc(torch.sigmoid(logits), labels))


def test_sweep_selects_on_validation_and_reports_the_selected_heads_test_metrics(tmp_path):
    pl.seed_everything(0)
    data = FlippedTestLabels(num_train=96, num_val=48, num_test=48, native_size=32, image_size=32,
                             batch_size=32, augmentation="none")
    lrs = [1e-5, 1e-3, 1e-1]
    model = LinearSweep(backbone="test_resnet", lrs=lrs, weight_decays=[0.0, 0.1], features_dir=str(tmp_path),
                        task=data.task)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    cached = model.attach_data(data)
    trainer.fit(model, datamodule=cached)
    (test,) = trainer.test(model, datamodule=cached, verbose=False)

    val_batch = next(iter(cached.val_dataloader()))
    test_batch = next(iter(cached.test_dataloader()))
    val_aurocs = [head_auroc(model, val_batch["features"][0], val_batch["label"], h) for h in range(6)]
    test_aurocs = [head_auroc(model, test_batch["features"][0], test_batch["label"], h) for h in range(6)]
    chosen = int(model.selected)
    assert chosen == int(np.argmax(val_aurocs))
    assert abs(test["test/auroc"] - test_aurocs[chosen]) < 1e-6
    assert model.head_results[chosen]["auroc"] == max(r["auroc"] for r in model.head_results)
    sweep = model.extra_results()["sweep"]
    assert sweep["selected"] == dict(zip(("lr", "weight_decay"), model.grid[chosen], strict=True))
    assert len(sweep["heads"]) == 6 and sweep["selected_on"] == "val"
    lr, wd = model.grid[chosen]
    expected = [axis for axis, value, grid in (("lrs", lr, lrs), ("weight_decays", wd, [0.0, 0.1]))
                if value in (min(grid), max(grid))]
    assert [note["axis"] for note in sweep["grid_edge"]] == expected


def test_heads_train_independently_at_their_own_rates(tmp_path):
    pl.seed_everything(0)
    data = tiny_data()
    model = LinearSweep(backbone="test_resnet", lrs=[0.0, 1e-2], weight_decays=[0.0],
                        features_dir=str(tmp_path), task=data.task)
    before = model.heads.weight.detach().clone()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(model, datamodule=model.attach_data(data))
    assert torch.equal(model.heads.weight[0], before[0])  # lr 0: unchanged
    assert not torch.equal(model.heads.weight[1], before[1])


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_sweep_selects_on_the_tasks_primary_metric(kind, tmp_path):
    # ordinal multiclass selects on quadratic kappa, multilabel on the mean AUROC over findings
    pl.seed_everything(0)
    data = tiny_data(kind=kind, num_train=64, num_val=32)
    model = LinearSweep(backbone="test_resnet", lrs=[1e-4, 1e-2, 1e-1], weight_decays=[0.0],
                        features_dir=str(tmp_path), task=data.task)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=model.attach_data(data))
    primary = data.task.primary_metric
    results = model.head_results
    scores = [r[primary] for r in results]
    assert len(results) == 3 and all(set(r) >= {"auroc", "acc", "f1", "loss"} for r in results)
    assert scores[int(model.selected)] == max(s for s in scores if s == s)  # NaN (undefined) never wins
    assert model.epoch_metrics["val"] == pytest.approx(results[int(model.selected)])


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_a_head_with_non_finite_logits_scores_nan_so_selection_ranks_it_last(kind):
    from medtransfer.task import Task

    task = Task(kind, ("a", "b") if kind == "binary" else ("a", "b", "c"))
    sweep = LinearSweep(backbone="test_resnet", lrs=[1e-3, 1e-2, 1e-1], weight_decays=[0.0], task=task,
                        standardize=False)
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % task.num_classes
    logits = torch.randn(3, 40, 1 if kind == "binary" else 3, generator=generator)
    logits[1, 5] = float("nan")  # one diverged prediction is enough
    scores = sweep._primary_scores(logits, labels)
    assert np.isnan(scores[1]) and np.isfinite(scores[0]) and np.isfinite(scores[2])
