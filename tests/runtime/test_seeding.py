"""``seed_everything: true`` draws a seed of its own for each run (Lightning's gave 0 every time) and never
lets the ranks of one run disagree on it (``runtime.seeding``)."""

from __future__ import annotations

import json

import pytest

from medtransfer.cli import main
from medtransfer.errors import ConfigValueError
from medtransfer.runtime.seeding import SEED_RANGE, drawn_seed


def test_each_draw_is_its_own_seed_in_numpy_s_range():
    seeds = [drawn_seed({}) for _ in range(20)]
    assert len(set(seeds)) == 20 and all(0 <= s < SEED_RANGE for s in seeds)


@pytest.mark.parametrize("launcher", [{"WORLD_SIZE": "2"}, {"SLURM_NTASKS": "4"}], ids=["torchrun", "srun"])
def test_ranks_started_apart_take_the_seed_they_are_all_given(launcher):
    assert drawn_seed(launcher | {"PL_GLOBAL_SEED": "1234"}) == 1234
    with pytest.raises(ConfigValueError, match="each draw their own seed and not agree"):
        drawn_seed(launcher)


def test_one_process_ignores_a_seed_left_in_the_environment():
    """A PL_GLOBAL_SEED left by an earlier run in the same process (the Python API) is no draw."""
    assert len({drawn_seed({"PL_GLOBAL_SEED": "7", "WORLD_SIZE": "1"}) for _ in range(5)}) == 5


def test_two_runs_with_a_random_seed_record_different_seeds_and_train_differently(tiny_cli, tmp_path):
    runs = tmp_path / "runs"
    for _ in range(2):
        main(["fit", *tiny_cli(runs), "--seed_everything", "true"])
    results = [json.loads(p.read_text()) for p in sorted((runs / "tiny").glob("version_*/results.json"))]
    assert results[0]["seed"] != results[1]["seed"]
    assert results[0]["config"]["seed_everything"] == results[0]["seed"]
    assert results[0]["metrics"]["test"] != results[1]["metrics"]["test"]
