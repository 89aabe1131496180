"""Runs finished before the CLI showed its default callbacks, dropped LightningCLI's optimizer options, took
``--decision_rule``, Finetune's stem, normalisation and milestones or TaskCheckpoint's monitor keep their
fingerprints."""

from __future__ import annotations

import copy

from medtransfer.grid.fingerprint import group_fingerprint, run_fingerprint
from medtransfer.grid.plan import expand
from medtransfer.grid.resolve import ConfigResolver, resolve
from medtransfer.grid.spec import load_grid

from .bench_helpers import REPO, small_grid


def test_a_config_from_before_the_visible_default_callbacks_has_the_same_fingerprint():
    config = ConfigResolver().parse(["fit", "--config", str(REPO / "configs" / "quickstart.yaml")])
    assert "optimizer" not in config and len(config["trainer"]["callbacks"]) == 6
    before = copy.deepcopy(config)
    before.update(optimizer=None, lr_scheduler=None)
    before["trainer"]["callbacks"] = None
    assert run_fingerprint(config) == run_fingerprint(before)
    assert group_fingerprint(config) == group_fingerprint(before)

    config["trainer"]["callbacks"][0]["init_args"]["save_top_k"] = 3  # not the default: another run
    assert run_fingerprint(config) != run_fingerprint(before)


def test_a_planned_run_has_the_fingerprint_of_results_recorded_before_the_decision_rule(write_grid, resolver,
                                                                                        tmp_path):
    """``--decision_rule`` (results.json's thresholds) came after finished studies: their results.json configs
    lack it, and a grid planned now must still recognise them; nor does the rule change what a run trains."""
    (run, *_) = expand(load_grid(write_grid(small_grid())))
    resolve([run], tmp_path / "features", resolver)
    assert run.config["decision_rule"] == "youden"
    recorded_before = {key: value for key, value in run.config.items() if key != "decision_rule"}
    assert run_fingerprint(recorded_before) == run.fingerprint
    assert group_fingerprint(recorded_before) == run.group
    assert run_fingerprint(run.config | {"decision_rule": "f1"}) == run.fingerprint


def without_later_arguments(config: dict) -> dict:
    """``config`` as recorded before Finetune's stem, normalisation and milestones and TaskCheckpoint's
    monitor existed."""
    before = copy.deepcopy(config)
    for key in ("stem", "normalisation", "milestones"):
        del before["model"]["init_args"][key]
    callbacks = before["trainer"]["callbacks"]
    assert callbacks[0]["class_path"].endswith("TaskCheckpoint")
    del callbacks[0]["init_args"]["monitor"]
    return before


def test_a_finetune_run_recorded_before_the_stem_and_the_checkpoint_monitor_has_the_same_fingerprint():
    config = ConfigResolver().parse(
        ["fit", "--config", str(REPO / "configs" / "experiments" / "retinamnist_finetune.yaml")])
    assert config["model"]["init_args"]["stem"] is None
    assert config["trainer"]["callbacks"][0]["init_args"]["monitor"] is None
    before = without_later_arguments(config)
    assert run_fingerprint(before) == run_fingerprint(config)
    assert group_fingerprint(before) == group_fingerprint(config)
    for key, value in (("stem", "small"), ("milestones", [5])):  # set, they make another run
        changed = copy.deepcopy(config)
        changed["model"]["init_args"][key] = value
        assert run_fingerprint(changed) != run_fingerprint(config)
    config["trainer"]["callbacks"][0]["init_args"]["monitor"] = "val/auroc"
    assert run_fingerprint(config) != run_fingerprint(before)


def test_a_planned_run_keeps_the_fingerprint_recorded_before_the_checkpoint_monitor(write_grid, resolver,
                                                                                     tmp_path):
    (run, *_) = expand(load_grid(write_grid(small_grid())))
    resolve([run], tmp_path / "features", resolver)
    recorded_before = copy.deepcopy(run.config)
    del recorded_before["trainer"]["callbacks"][0]["init_args"]["monitor"]
    assert run_fingerprint(recorded_before) == run.fingerprint
    assert group_fingerprint(recorded_before) == run.group


def test_the_medmnist_v2_recipe_parses_for_any_flag_and_is_a_run_of_its_own():
    recipe = str(REPO / "configs" / "experiments" / "medmnist_v2_resnet18_28.yaml")
    config = ConfigResolver().parse(["fit", "--config", recipe, "--data.init_args.flag", "bloodmnist"])
    args = config["model"]["init_args"]
    assert (args["backbone"], args["stem"], args["scheduler"], args["milestones"]) == (
        "resnet18", "small", "multistep", [50, 75])
    assert args["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert config["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/auroc"
    assert config["data"]["init_args"]["augmentation"] == "none"
    retina = ConfigResolver().parse(["fit", "--config", recipe])
    assert run_fingerprint(retina) != run_fingerprint(config)
    assert run_fingerprint(retina) == run_fingerprint(ConfigResolver().parse(["fit", "--config", recipe]))
