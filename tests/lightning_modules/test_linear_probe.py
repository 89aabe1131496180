"""LinearProbe: the exact solver against scikit-learn on the same stores, standardisation on both paths, label
fractions, slim checkpoints, bad training subsets, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from medtransfer.cli import main as medtransfer_main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.lightning_modules import LinearProbe, LinearSweep
from medtransfer.lightning_modules.frozen import FeatureCacheError
from medtransfer.lightning_modules.linear_probe import (
    SolverConvergenceWarning,
    TrainingSubsetError,
    check_training_labels,
    describe_subset,
)

from .sklearn_reference import sklearn_probe, store_arrays

REPO = Path(__file__).resolve().parents[2]
METRICS = {"test/auroc", "test/acc", "test/f1", "test/loss"}


def small_data(**kwargs) -> SyntheticMedical:
    options = {"num_train": 64, "num_val": 32, "num_test": 32, "native_size": 32, "image_size": 32,
               "batch_size": 16, "augmentation": "none"}
    return SyntheticMedical(**(options | kwargs))


def run(feature_cache: bool, features_dir: Path, data: SyntheticMedical, epochs: int = 3, **options):
    pl.seed_everything(0)
    model_class = options.pop("model_class", LinearProbe)
    options = {"lr": 0.05} | options if model_class is LinearProbe else options
    model = model_class(backbone="test_resnet", feature_cache=feature_cache, features_dir=str(features_dir),
                        task=data.task, **options)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    datamodule = model.attach_data(data)
    trainer.fit(model, datamodule=datamodule)
    (test,) = trainer.test(model, datamodule=datamodule, verbose=False)
    return model, test


# -- the exact solver against scikit-learn ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_the_solver_selects_and_scores_as_scikit_learn_does_on_the_same_stores(kind, tmp_path, one_thread):
    data = small_data(kind=kind, num_train=160, num_val=64, num_test=64)
    l2 = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    model, test = run(True, tmp_path, data, l2_penalties=l2)
    assert model.solver == "lbfgs" and model.trainer.current_epoch == 1  # one epoch: the solve
    summary = model.extra_results()["solver"]
    metric = data.task.primary_metric
    # scikit-learn solved to 1e-8: at its default tol (1e-4) its multiclass l2=1e-3 point is 0.007 kappa off
    reference = sklearn_probe(kind, *store_arrays(model.backbone, data, tmp_path).values(), l2, tol=1e-8,
                              max_iter=100_000)
    ours = [point[f"val/{metric}"] for point in summary["path"]]
    np.testing.assert_allclose(ours, reference["val"], atol=0.005)
    assert summary["selected_on"] == f"val/{metric}"
    assert abs(test[f"test/{metric}"] - reference["test"]) <= 0.005
    assert all(point["converged"] for point in summary["path"])


def test_the_sgd_sweep_on_standardised_features_is_near_the_exact_optimum(tmp_path, one_thread):
    data = small_data(num_train=320, num_val=128, num_test=256)
    l2 = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    probe, _ = run(True, tmp_path, data, l2_penalties=l2)
    reference = sklearn_probe("binary", *store_arrays(probe.backbone, data, tmp_path).values(), l2)
    _, sweep_test = run(True, tmp_path, data, epochs=60, model_class=LinearSweep,
                        lrs=[1e-3, 1e-2, 1e-1], weight_decays=[0.0, 1e-2, 1e-1], optimizer="sgd")
    assert abs(sweep_test["test/auroc"] - reference["test"]) <= 0.01


# -- standardisation: the same inputs on both paths, kept in checkpoints -------------------------------------
def test_cached_and_online_probes_agree_on_the_same_data(tmp_path):
    cached, cached_test = run(True, tmp_path, small_data(), solver="sgd")
    online, online_test = run(False, tmp_path / "unused", small_data())
    assert not (tmp_path / "unused").exists()
    assert set(cached_test) == set(online_test) >= METRICS
    for name in METRICS:
        assert abs(cached_test[name] - online_test[name]) < 0.01, name
    torch.testing.assert_close(cached.head.weight, online.head.weight, atol=2e-3, rtol=0)
    assert set(cached.epoch_metrics["train"]) == set(online.epoch_metrics["train"])


def test_online_and_cached_paths_standardise_alike(tmp_path):
    data = small_data()
    data.setup("fit")
    pl.seed_everything(0)
    cached = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task)
    pl.seed_everything(0)
    online = LinearProbe(backbone="test_resnet", feature_cache=False, task=data.task)
    cached.attach_data(data)
    cached.fit_standardization()  # from the training store
    online.attach_data(data)
    online.fit_standardization()  # from one pass of the backbone over the unaugmented training images
    for name in ("mean", "std", "constant"):
        torch.testing.assert_close(getattr(online.standardizers[0], name),
                                   getattr(cached.standardizers[0], name), rtol=2e-3, atol=1e-6)
    images = next(iter(data.eval_dataloader("val")))
    stored = next(iter(cached.cached_split("val")))
    rows = [stored["id"].index(i) for i in images["id"]]
    from_store = cached.embeddings(stored)[0][rows]
    from_images = online.embeddings(images)[0]
    assert torch.isfinite(from_images).all()
    # the store holds float16 features: standardised, their rounding is a few thousandths of a std
    torch.testing.assert_close(from_store, from_images, atol=0.05, rtol=0)
    assert (from_store - from_images).abs().mean() < 5e-3


def test_a_configured_augmentation_the_stores_cannot_apply_is_announced(tmp_path, recwarn):
    run(True, tmp_path, small_data(augmentation="histology"), epochs=1)
    assert any("'histology' is not applied" in str(w.message) for w in recwarn)
    recwarn.clear()
    run(True, tmp_path, small_data(), epochs=1)  # augmentation: none says the same explicitly
    run(False, tmp_path, small_data(augmentation="histology"), epochs=1)  # applied on images
    assert not any("is not applied" in str(w.message) for w in recwarn)


def test_label_fraction_selects_rows_of_the_whole_split_store(tmp_path):
    data = small_data(train_fraction=0.25)
    model, _ = run(True, tmp_path, data, epochs=1)
    loader = model.cached_split("train")
    assert sorted(loader.ids.tolist()) == sorted(data.split_source("train").ids)
    assert len(loader.ids) == len(data.train_indices()) < 64
    train_stores = list(tmp_path.glob("SyntheticMedical/test_resnet/train-*"))
    assert len(train_stores) == 1  # the store holds the whole split; another fraction reuses it
    other = small_data(train_fraction=0.5)
    run(True, tmp_path, other, epochs=1)
    assert list(tmp_path.glob("SyntheticMedical/test_resnet/train-*")) == train_stores


def test_checkpoints_leave_out_the_frozen_backbone_and_check_it_on_load(tmp_path):
    data = small_data()
    model, _ = run(True, tmp_path, data, epochs=1)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "probe.ckpt")
    saved = torch.load(tmp_path / "probe.ckpt", weights_only=True)
    assert not [k for k in saved["state_dict"] if k.startswith("backbone.")]
    assert saved["frozen_backbones"] == {"backbone": model.backbone.fingerprint}
    assert saved["solver"] == model.extra_results()["solver"]
    for seed, fits in ((0, True), (1, False)):  # a random-init backbone from another seed is other weights
        pl.seed_everything(seed)
        restored = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task)
        checkpoint = torch.load(tmp_path / "probe.ckpt", weights_only=True)
        if not fits:
            with pytest.raises(FeatureCacheError, match="weight fingerprints"):
                restored.on_load_checkpoint(checkpoint)
            continue
        restored.on_load_checkpoint(checkpoint)  # as the Trainer does, then a strict load
        restored.load_state_dict(checkpoint["state_dict"])
        torch.testing.assert_close(restored.head.weight, model.head.weight)
        for name in ("mean", "std", "constant", "fitted"):  # the standardisation came with the head
            restored_value = getattr(restored.standardizers[0], name)
            assert torch.equal(restored_value, getattr(model.standardizers[0], name))
        assert restored.extra_results() == model.extra_results()


def test_a_checkpoint_from_before_standardisation_loads_as_raw_features(tmp_path):
    data = small_data()
    model, _ = run(True, tmp_path, data, epochs=1)
    checkpoint = {"state_dict": {k: v for k, v in model.state_dict().items()
                                 if not k.startswith(("backbone.", "standardizers."))},
                  "frozen_backbones": {"backbone": model.backbone.fingerprint}}
    pl.seed_everything(0)
    restored = LinearProbe(backbone="test_resnet", features_dir=str(tmp_path), task=data.task)
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"])
    batch = {"features": [torch.randn(3, model.backbone.embed_dim)]}
    assert torch.equal(restored.embeddings(batch)[0], batch["features"][0])


# -- bad input ----------------------------------------------------------------------------------------------
def test_constant_feature_dimensions_give_no_nans(tmp_path):
    model, test = run(True, tmp_path, small_data(), epochs=1)
    assert model.standardizers[0].describe()["constant_dims"] > 0  # test_resnet has dead ReLU units
    assert torch.isfinite(model.head.weight).all()
    assert all(np.isfinite(v) for v in test.values())


def test_a_class_missing_from_the_training_subset_is_named_with_the_fraction(tmp_path):
    data = small_data(kind="multilabel", train_fraction=2)
    with pytest.raises(TrainingSubsetError, match=r"train_fraction=2, fraction_seed=0\) hold no positive "
                                                  r"example of \['ring', 'patch'\]"):
        run(True, tmp_path, data, epochs=1)


def test_an_empty_training_subset_is_an_error_naming_the_fraction():
    data = small_data()
    subset = describe_subset(data, 0)
    with pytest.raises(TrainingSubsetError, match=r"0 training samples used \(train_fraction=1.0, "
                                                  r"fraction_seed=0\): the training subset is empty"):
        check_training_labels(data.task, torch.zeros(0, dtype=torch.long), subset)


def test_a_solve_out_of_iterations_says_so_with_the_iterations_used(tmp_path):
    with pytest.warns(SolverConvergenceWarning, match=r"did not converge in 1 iterations"):
        model, _ = run(True, tmp_path, small_data(), epochs=1, max_iter=1, l2_penalties=[1e-4])
    assert model.extra_results()["solver"]["path"][0]["converged"] is False


def test_a_choice_at_the_end_of_the_grid_is_warned_and_recorded_and_only_then(tmp_path, recwarn):
    data = small_data()
    grid = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
    model, _ = run(True, tmp_path, data, epochs=1, l2_penalties=grid)
    summary = model.extra_results()["solver"]
    chosen = summary["selected"]["l2"]
    assert min(grid) < chosen < max(grid)  # inside the grid: nothing to say
    assert summary["grid_edge"] == []
    assert not any("extend the grid" in str(w.message) for w in recwarn)
    run(True, tmp_path, data, epochs=1, l2_penalties=[1.0])  # one value: nothing was searched
    assert not any("extend the grid" in str(w.message) for w in recwarn)

    for narrowed, edge in (([v for v in grid if v >= chosen], "lowest"), ([v for v in grid if v <= chosen],
                                                                          "highest")):
        recwarn.clear()
        model, _ = run(True, tmp_path, data, epochs=1, l2_penalties=narrowed)
        (note,) = model.extra_results()["solver"]["grid_edge"]
        assert (note["axis"], note["value"], note["edge"]) == ("l2_penalties", chosen, edge)
        assert any(f"extend the grid {'below' if edge == 'lowest' else 'above'}" in str(w.message)
                   for w in recwarn)


@pytest.mark.slow
def test_fit_with_a_linear_probe_config_uses_the_stores_extract_made(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = tiny_synthetic_probe(tmp_path, "--trainer.max_epochs", "2")
    monkeypatch.setattr(sys, "argv", ["medtransfer"])
    assert_exit_ok(lambda: medtransfer_main(["extract", *args]))
    out = capsys.readouterr().out
    assert out.count("features/SyntheticMedical/test_resnet/") == 3
    medtransfer_main(["fit", *args])
    results = json.loads(next((tmp_path / "runs").rglob("results.json")).read_text())
    assert results["model"]["name"] == "LinearProbe" and "auroc" in results["metrics"]["test"]
    assert len(list((tmp_path / "features/SyntheticMedical/test_resnet").iterdir())) == 3  # reused


@pytest.mark.slow
def test_extract_in_bf16_makes_the_stores_a_bf16_fit_reads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = tiny_synthetic_probe(tmp_path, "--trainer.precision", "bf16-mixed",
                                "--model.init_args.memory_format", "channels_last")
    monkeypatch.setattr(sys, "argv", ["medtransfer"])
    assert_exit_ok(lambda: medtransfer_main(["extract", *args]))
    stores = tmp_path / "features/SyntheticMedical/test_resnet"
    assert capsys.readouterr().out.count(f"{stores.relative_to(tmp_path)}/") == 3
    manifests = [json.loads(f.read_text()) for f in stores.rglob("store.json")]
    assert len(manifests) == 3 and all(m["fingerprint"]["autocast"] == "bfloat16" for m in manifests)
    medtransfer_main(["fit", *args])
    assert len(list(stores.iterdir())) == 3  # fit in bf16-mixed read the stores extract made


def tiny_synthetic_probe(tmp_path, *extra: str) -> list[str]:
    """The synthetic linear-probe experiment at 64/32/32 images on ``test_resnet``, logging under
    ``tmp_path``, with ``extra`` arguments."""
    return ["--config", str(REPO / "configs/experiments/synthetic_linear.yaml"),
            "--data.init_args.num_train", "64", "--data.init_args.num_val", "32",
            "--data.init_args.num_test", "32", "--model.init_args.backbone", "test_resnet", *extra,
            "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]


def assert_exit_ok(call) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call()
    assert exit_info.value.code == 0
