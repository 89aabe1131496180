"""Where a process stands among a run's processes: the trainer's view, the process group's, and the
launchers' environment before a group exists."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medtransfer.runtime import ranks
from medtransfer.runtime.ranks import is_rank_zero, process_rank, world_and_rank

LAUNCHER_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE")


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_world_and_rank_of_a_trainer_and_of_a_single_process():
    assert world_and_rank(SimpleNamespace(world_size=4, global_rank=3)) == (4, 3)
    assert world_and_rank(None) == (1, 0)
    assert world_and_rank() == (1, 0)


def test_world_and_rank_of_an_initialised_process_group(monkeypatch):
    group = SimpleNamespace(get_world_size=lambda: 4, get_rank=lambda: 2)
    monkeypatch.setattr(ranks, "process_group", lambda: group)
    assert world_and_rank() == (4, 2)
    assert world_and_rank(SimpleNamespace(world_size=2, global_rank=1)) == (2, 1)
    assert process_rank() == 2 and not is_rank_zero()


@pytest.mark.parametrize(("environment", "rank"), [
    ({}, 0),
    ({"RANK": "3"}, 3),
    ({"SLURM_PROCID": "5"}, 5),
    ({"LOCAL_RANK": "1"}, 1),  # Lightning's launcher, one node
    ({"NODE_RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4"}, 4),  # second node's first process
    ({"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0"}, 0),
])
def test_the_launchers_environment_gives_the_rank_before_a_group_exists(monkeypatch, environment, rank):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert process_rank() == rank
    assert is_rank_zero() == (rank == 0)
