"""World size and rank: from the trainer, else the process group, else a single process."""

from __future__ import annotations

from types import SimpleNamespace

from medtransfer.runtime.ranks import world_and_rank


def test_the_trainer_says_first_and_a_lone_process_is_rank_zero_of_one():
    assert world_and_rank(SimpleNamespace(world_size=4, global_rank=3)) == (4, 3)
    assert world_and_rank(None) == (1, 0)
    assert world_and_rank() == (1, 0)



def test_an_initialised_process_group_says_when_there_is_no_trainer(monkeypatch):
    from medtransfer.runtime import ranks as distributed

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 4)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 2)
    assert world_and_rank() == (4, 2)
    assert world_and_rank(SimpleNamespace(world_size=2, global_rank=1)) == (2, 1)
