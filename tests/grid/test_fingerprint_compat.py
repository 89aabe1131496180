"""Runs finished before the CLI showed its default callbacks and dropped LightningCLI's optimizer options
keep their fingerprints."""

from __future__ import annotations

import copy

from medtransfer.grid.fingerprint import group_fingerprint, run_fingerprint
from medtransfer.grid.resolve import ConfigResolver

from .bench_helpers import REPO


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
