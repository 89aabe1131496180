"""Per-backbone importance: the ablation measure, the running reference means, and the split meter."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medtransfer.lightning_modules.importance import (
    EmbeddingMeans,
    ImportanceMeter,
    ablation_importance,
    importance_table,
)
from medtransfer.task import Task

BINARY = Task("binary", ("normal", "lesion"))


def test_ablation_importance_matches_a_hand_computed_example() -> None:
    """scores = [2 * x0 + y0, x1 - y1] with reference 0: replacing x moves the scores by |2 x0| + |x1|,
    replacing y by |y0| + |y1|."""
    def scores(e: list[torch.Tensor]) -> torch.Tensor:
        x, y = e
        return torch.stack([2 * x[:, 0] + y[:, 0], x[:, 1] - y[:, 1]], dim=1)

    x = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    y = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    importance = ablation_importance(scores, [x, y], [torch.zeros(2), torch.zeros(2)])
    torch.testing.assert_close(importance[0], torch.tensor([0.5, 0.5]))  # 3 and 3
    torch.testing.assert_close(importance[1], torch.tensor([0.5, 0.5]))  # nothing moves: uniform
    importance = ablation_importance(scores, [x, torch.zeros_like(y)], [torch.zeros(2), torch.zeros(2)])
    torch.testing.assert_close(importance[0], torch.tensor([1.0, 0.0]))


def test_a_source_the_scores_ignore_has_no_importance() -> None:
    def scores(e: list[torch.Tensor]) -> torch.Tensor:
        return e[0].sum(dim=1, keepdim=True) * 3.0

    embeddings = [torch.randn(5, 4), torch.randn(5, 7), torch.randn(5, 2)]
    importance = ablation_importance(scores, embeddings, [torch.zeros(4), torch.ones(7), torch.ones(2)])
    torch.testing.assert_close(importance, torch.tensor([[1.0, 0.0, 0.0]]).expand(5, 3))


def test_embedding_means_are_exact_then_follow_recent_batches() -> None:
    means = EmbeddingMeans([2, 3], window=3)
    assert not means.ready
    batches = [[torch.full((4, 2), float(v)), torch.full((2, 3), -float(v))] for v in (1, 2, 3)]
    for batch in batches:
        means.update(batch)
    assert means.ready
    torch.testing.assert_close(means.means()[0], torch.full((2,), 2.0))  # (1 + 2 + 3) / 3
    torch.testing.assert_close(means.means()[1], torch.full((3,), -2.0))
    means.update([torch.full((1, 2), 8.0), torch.full((1, 3), 0.0)])
    torch.testing.assert_close(means.means()[0], torch.full((2,), 2.0 + (8.0 - 2.0) / 3))


def test_meter_averages_overall_and_per_true_class() -> None:
    meter = ImportanceMeter(BINARY, num_sources=2)
    meter.update(torch.tensor([[0.8, 0.2], [0.6, 0.4]]), torch.tensor([1, 1]))
    meter.update(torch.tensor([[0.1, 0.9]]), torch.tensor([0]))
    overall, per_class = meter.compute()
    torch.testing.assert_close(overall, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(per_class, torch.tensor([[0.1, 0.9], [0.7, 0.3]]))
    table = importance_table(overall, per_class, ["simclr", "dino"], BINARY.class_names)
    assert table["overall"] == pytest.approx({"simclr": 0.5, "dino": 0.5})
    assert table["per_class"]["lesion"] == pytest.approx({"simclr": 0.7, "dino": 0.3})


def test_multilabel_meter_counts_a_sample_for_every_finding_it_has_and_skips_absent_classes() -> None:
    task = Task("multilabel", ("effusion", "nodule", "mass"))
    meter = ImportanceMeter(task, num_sources=2)
    meter.update(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    overall, per_class = meter.compute()
    torch.testing.assert_close(per_class[:2], torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert torch.isnan(per_class[2]).all()
    table = importance_table(overall, per_class, ["a", "b"], task.class_names)
    assert set(table["per_class"]) == {"effusion", "nodule"}  # no sample has a mass: not reported


def test_one_backbone_holds_all_the_importance() -> None:
    meter = ImportanceMeter(BINARY, num_sources=1)
    meter.update(torch.ones(3, 1), torch.tensor([0, 1, 1]))
    table = importance_table(*meter.compute(), ["dino"], BINARY.class_names)
    assert table == {"overall": {"dino": 1.0},
                     "per_class": {"normal": {"dino": 1.0}, "lesion": {"dino": 1.0}}}


def _shares(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    importance = torch.rand(n, 3, generator=torch.Generator().manual_seed(0))
    return importance / importance.sum(dim=1, keepdim=True), torch.arange(n) % 2


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        importance, labels = _shares(7)
        meter = ImportanceMeter(BINARY, num_sources=3)
        meter.update(importance[rank::world], labels[rank::world])  # unequal shards: 4 and 3 samples
        overall, per_class = meter.compute()
        if rank == 0:
            torch.save({"overall": overall, "per_class": per_class}, out)
    finally:
        dist.destroy_process_group()


def test_meter_under_ddp_counts_every_sample_of_the_split_once(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp.pt")
    mp.start_processes(_ddp_worker, args=(2, port, out), nprocs=2, join=True, start_method="fork")
    importance, labels = _shares(7)
    single = ImportanceMeter(BINARY, num_sources=3)
    single.update(importance, labels)
    overall, per_class = single.compute()
    ddp = torch.load(out, weights_only=True)
    torch.testing.assert_close(ddp["overall"], overall)
    torch.testing.assert_close(ddp["per_class"], per_class)
    torch.testing.assert_close(overall, importance.mean(dim=0))
