"""Sampler orders depend only on (seed, epoch, rank): the image path and the feature-store path share them."""

from __future__ import annotations

from medtransfer.datamodules.samplers import EpochSampler, UnpaddedSampler


def test_epoch_sampler_yields_its_indices_with_the_epoch_and_reshuffles_per_epoch():
    sampler = EpochSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=3)
    sampler.set_epoch(2)
    assert list(sampler) == [(index, 2) for index in sampler.indices()]
    assert sorted(sampler.indices()) == list(range(10))
    first = sampler.indices()
    sampler.set_epoch(3)
    assert sampler.indices() != first
    again = EpochSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=3)
    again.set_epoch(2)
    assert again.indices() == first


def test_unpadded_sampler_sees_every_index_once_over_the_ranks():
    shards = [UnpaddedSampler(range(11), num_replicas=3, rank=rank) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard.indices()) == list(range(11))
    assert [len(shard) for shard in shards] == [4, 4, 3]
    assert all(list(shard) == list(shard.indices()) for shard in shards)
