"""Extraction: one forward pass of a frozen backbone over a whole split, written as a feature store.

Under DDP (``torch.distributed`` initialised, as inside a Lightning DDP run or under ``torchrun``) every rank
embeds its unpadded shard (``UnpaddedSampler``: rank ``r`` holds rows ``r, r + world, ...``), writes it next
to the store, and rank 0 assembles the shards once, checking that every sample id of the split is there
exactly once.

Precision: under a half-precision ``trainer.precision`` (``bf16-mixed``, ``16-mixed``, their ``-true`` forms)
the backbone embeds under autocast in that dtype (``extraction_autocast``), the path the training steps take,
and the embeddings are stored as every store is (float16). Autocast changes the stored numbers beyond float16
rounding, so the store's fingerprint records it (``autocast``) and a bfloat16 store is never read for a
float32 one or the other way round. The memory layout (channels-last) changes them by float rounding only
and is not recorded: stores are shared across layouts, as across devices.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import nullcontext
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
# Lightning's precision names (as ``Trainer.precision`` spells them) under which extraction autocasts
_HALF_PRECISIONS = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "bf16": torch.bfloat16,
                    "16-mixed": torch.float16, "16-true": torch.float16, "16": torch.float16}

log = logging.getLogger(__name__)


def store_for(backbone: Backbone, datamodule, split: str, root: str | Path = DEFAULT_ROOT,
              precision: str | int | None = None) -> FeatureStore:
    """The feature store of (``backbone``, ``datamodule``, ``split``) under ``root``: reused when one with the
    same fingerprint exists (and said so), extracted on the backbone's device otherwise. ``precision`` is the
    trainer's (``bf16-mixed``: extraction under bfloat16 autocast, recorded in the fingerprint; None or
    ``32-true``: float32). Every DDP rank must call this together; all of them get the same store."""
    autocast = extraction_autocast(precision, _device_of(backbone))
    world, rank = world_and_rank()
    fingerprint = store_fingerprint(backbone, datamodule, split, autocast)
    if world > 1:  # one store for all ranks, also where nodes hold copies of the data with other file times
        fingerprint = _from_rank_zero(fingerprint)
    path = store_path(root, fingerprint)
    if _agree(is_store(path), world):
        store = FeatureStore.open(path, expected_fingerprint=fingerprint)
        if rank == 0:
            log.info("reusing %s store %s (%d x %d, %s)", split, path, len(store), store.dim, backbone.name)
        return store
    started = time.perf_counter()
    features, ids = embed_split(backbone, datamodule, split, world, rank, autocast=autocast)
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
        log.info("extracted %s store %s (%d x %d, %s, %.1fs on %s in %s, %d process(es))", split, path,
                 len(store), store.dim, backbone.name, seconds, _device_of(backbone),
                 f"{str(autocast).removeprefix('torch.')} autocast" if autocast else "float32", world)
    return store


def extraction_autocast(precision: str | int | None, device: torch.device) -> torch.dtype | None:
    """The dtype extraction autocasts to under the trainer's ``precision``, or None for float32.

    bfloat16 for ``bf16-mixed`` and ``bf16-true``; float16 for ``16-mixed`` on a GPU (on a CPU Lightning runs
    ``16-mixed`` as ``bf16-mixed``, and so does extraction) and for ``16-true``; None for ``32-true``,
    ``64-true`` and anything else.
    """
    dtype = _HALF_PRECISIONS.get(str(precision)) if precision is not None else None
    if dtype is torch.float16 and device.type == "cpu" and str(precision) != "16-true":
        return torch.bfloat16
    return dtype


@torch.no_grad()
def embed_split(
    backbone: Backbone, datamodule, split: str, world: int = 1, rank: int = 0,
    autocast: torch.dtype | None = None,
) -> tuple[np.ndarray, list[str]]:
    """This rank's shard of ``split`` embedded by ``backbone`` (eval mode, no gradients; under ``autocast`` to
    that dtype when given): float16 rows, ids.

    Each batch is stored as float16 when it arrives, into one array sized for the shard: the split's
    embeddings are held once, at 2 bytes a value (262,144 x 2,048 PCam rows: 1 GiB), with no float32 copy
    and no second one to concatenate (the rows of batches that skipped unreadable samples are cut off at the
    end)."""
    device = _device_of(backbone)
    was_training = backbone.training
    backbone.eval()
    ids: list[str] = []
    features = np.zeros((0, backbone.embed_dim), np.float16)
    precision = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    try:
        loader = datamodule.extraction_dataloader(split, world, rank)
        features = np.empty((_shard_rows(loader), backbone.embed_dim), np.float16)
        for batch in progress(loader, desc=f"extract {backbone.name} {split}", total=_batches(loader),
                              unit="batch"):
            with precision:
                embedded = backbone(batch["image"].to(device, non_blocking=True))
            rows = embedded.to(torch.float16).cpu().numpy()
            if len(ids) + len(rows) > len(features):  # a loader that yields more rows than it said
                features = np.concatenate([features[: len(ids)], rows])
            else:
                features[len(ids) : len(ids) + len(rows)] = rows
            ids.extend(str(i) for i in batch["id"])
    finally:
        backbone.train(was_training)
    return features[: len(ids)], ids


def _shard_rows(loader) -> int:
    """The samples this rank's loader will yield, as its sampler says (0 when it cannot say)."""
    try:
        return len(loader.sampler)
    except (AttributeError, TypeError):
        return 0


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
    order = np.argsort(rows, kind="stable")
    if len(shards) == 1 and np.array_equal(order, np.arange(len(rows))):
        features = shards[0][0]  # one shard in source order (a single process): no copy of the split
    else:
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
