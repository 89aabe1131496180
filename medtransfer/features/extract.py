"""Extraction: one forward pass of a frozen backbone over a whole split, written as a feature store.

Under DDP (``torch.distributed`` initialised, as inside a Lightning DDP run or under ``torchrun``) every rank
embeds its unpadded shard (``UnpaddedSampler``: rank ``r`` holds rows ``r, r + world, ...``), writes it next
to the store, and rank 0 assembles the shards once, checking that every sample id of the split is there
exactly once.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..backbones.backbone import Backbone
from ..runtime.progress import progress
from ..runtime.ranks import world_and_rank
from .fingerprint import store_fingerprint, store_path
from .store import TMP_PREFIX, FeatureStore, StoreMismatchError, is_store

DEFAULT_ROOT = "features"

log = logging.getLogger(__name__)


def store_for(backbone: Backbone, datamodule, split: str, root: str | Path = DEFAULT_ROOT) -> FeatureStore:
    """The feature store of (``backbone``, ``datamodule``, ``split``) under ``root``: reused when one with the
    same fingerprint exists (and said so), extracted on the backbone's device otherwise. Every DDP rank must
    call this together; all of them get the same store."""
    fingerprint = store_fingerprint(backbone, datamodule, split)
    path = store_path(root, fingerprint)
    world, rank = world_and_rank()
    if _agree(is_store(path), world):
        store = FeatureStore.open(path, expected_fingerprint=fingerprint)
        if rank == 0:
            log.info("reusing %s store %s (%d x %d, %s)", split, path, len(store), store.dim, backbone.name)
        return store
    started = time.perf_counter()
    features, ids = embed_split(backbone, datamodule, split, world, rank)
    if world == 1:
        store = _write(path, datamodule, split, [(features, ids)], fingerprint)
    else:
        shard_dir = path.parent / f"{TMP_PREFIX}shards-{path.name}"
        shard_dir.mkdir(parents=True, exist_ok=True)
        np.savez(shard_dir / f"rank{rank:04d}.npz", features=features, ids=np.asarray(ids, dtype=str))
        dist.barrier()
        failure = None
        if rank == 0:
            try:
                shards = [_load_shard(shard_dir / f"rank{r:04d}.npz") for r in range(world)]
                _write(path, datamodule, split, shards, fingerprint)
            except Exception as error:  # told to every rank below, so none waits forever
                failure = f"{type(error).__name__}: {error}"
            finally:
                shutil.rmtree(shard_dir, ignore_errors=True)
        if (failure := _from_rank_zero(failure)) is not None:
            raise StoreMismatchError(f"assembling the {split} store {path} failed on rank 0: {failure}")
        store = FeatureStore.open(path, expected_fingerprint=fingerprint, verify=False)
    if rank == 0:
        seconds = time.perf_counter() - started
        log.info("extracted %s store %s (%d x %d, %s, %.1fs on %s, %d process(es))", split, path,
                 len(store), store.dim, backbone.name, seconds, _device_of(backbone), world)
    return store


@torch.no_grad()
def embed_split(
    backbone: Backbone, datamodule, split: str, world: int = 1, rank: int = 0
) -> tuple[np.ndarray, list[str]]:
    """This rank's shard of ``split`` embedded by ``backbone`` (eval mode, no gradients): float16 rows,
    ids."""
    device = _device_of(backbone)
    was_training = backbone.training
    backbone.eval()
    chunks, ids = [], []
    try:
        loader = datamodule.extraction_dataloader(split, world, rank)
        for batch in progress(loader, desc=f"extract {backbone.name} {split}", total=_batches(loader),
                              unit="batch"):
            chunks.append(backbone(batch["image"].to(device, non_blocking=True)).float().cpu())
            ids.extend(str(i) for i in batch["id"])
    finally:
        backbone.train(was_training)
    if not chunks:
        return np.zeros((0, backbone.embed_dim), np.float16), ids
    return torch.cat(chunks).to(torch.float16).numpy(), ids


def _batches(loader) -> int | None:
    """The loader's number of batches when it knows it (an iterable dataset may not)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _write(
    path: Path, datamodule, split: str, shards: list[tuple[np.ndarray, list[str]]], fingerprint: dict
) -> FeatureStore:
    """Assemble shards in the split's source order and write the store; every id exactly once or an error."""
    source = datamodule.sources()[split]
    position = {sample_id: row for row, sample_id in enumerate(source.ids)}
    rows = (
        np.concatenate([_rows(position, ids, path) for _, ids in shards]) if shards else np.zeros(0, np.int64)
    )
    if len(np.unique(rows)) != len(rows):
        raise StoreMismatchError(f"extraction of {path} produced some sample ids twice: the shards overlap")
    order = np.argsort(rows)
    features = np.concatenate([f for f, _ in shards])[order]
    rows = rows[order]
    skipped = len(source) - len(rows)
    if skipped:
        log.warning("%d unreadable sample(s) of %s were skipped and are not in the store %s", skipped, split,
                    path)
    labels = np.asarray(source.labels)[rows]
    skipped_ids = sorted(set(source.ids) - {source.ids[r] for r in rows})
    return FeatureStore.write(path, features, [source.ids[r] for r in rows], labels, fingerprint, skipped_ids)


def _rows(position: dict[str, int], ids: list[str], path: Path) -> np.ndarray:
    unknown = [i for i in ids if i not in position]
    if unknown:
        raise StoreMismatchError(
            f"extraction of {path} returned ids {unknown[:5]} that the split does not hold"
        )
    return np.asarray([position[i] for i in ids], dtype=np.int64)


def _load_shard(file: Path) -> tuple[np.ndarray, list[str]]:
    if not file.is_file():
        raise StoreMismatchError(f"shard {file} is missing: a rank did not finish its part of the extraction")
    with np.load(file, allow_pickle=False) as shard:
        return shard["features"], shard["ids"].tolist()


def _agree(value: bool, world: int) -> bool:
    """Rank 0's answer on every rank, so that all ranks take the same branch (and meet at the same
    barriers)."""
    return value if world == 1 else bool(_from_rank_zero(value))


def _from_rank_zero(value):
    """Rank 0's ``value`` on every rank (a collective: every rank must call it)."""
    answer = [value]
    dist.broadcast_object_list(answer, src=0)
    return answer[0]


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
