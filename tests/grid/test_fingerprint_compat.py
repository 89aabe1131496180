"""Runs finished before the CLI showed its default callbacks, dropped LightningCLI's optimizer options, or
took ``--decision_rule`` keep their fingerprints."""

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
