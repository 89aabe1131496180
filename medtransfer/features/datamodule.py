"""A datamodule that serves a frozen backbone's feature stores in place of another datamodule's images.

The data side knows no model and the heads know no loader: a frozen head with ``feature_cache`` on is handed
an ``EmbeddingsDataModule`` around the user's datamodule, holding the head's frozen backbones
(``FrozenBackboneModule.attach_data``, which ``medtransfer.run`` calls). Each split is embedded once per
backbone into a feature store (reused while its fingerprint matches) the first time it is asked for, held in
memory (on the training device when it fits) and served as batches whose ``features`` replace ``image``.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from ..backbones.backbone import Backbone
from ..runtime.memory import check_fits
from ..runtime.ranks import world_and_rank
from ..runtime.seeding import run_seed
from ..runtime.threads import all_threads
from .extract import DEFAULT_ROOT, store_for
from .loader import FeatureBatches
from .store import check_aligned

DEVICE_CACHE_BYTES = 4 * 2**30  # stores up to this size sit on the training device, larger ones in host RAM
MIN_EVAL_BATCH = 1024  # evaluation on cached features: few large batches (metrics do not depend on the size)


class EmbeddingsDataModule(pl.LightningDataModule):
    """The splits of ``source`` as batches ``{"features": [B x D per backbone], "label", "id"}``.

    The training split is the label fraction ``source`` selects; batch sizes, sample order (the same samplers
    and seed as the image path) and DDP sharding follow ``source``. Everything else (``task``, ``describe``,
    ``split_source``, ...) is the source's, so results and checks read the same as for the images.

    Args:
        source: the user's datamodule (a ``MedicalDataModule``: sources, fractions, eval transform).
        backbones: the frozen backbones to embed with, in the order of ``batch["features"]``.
        features_dir: where stores live (``medtransfer.features.DEFAULT_ROOT`` by default).
        precision: the precision to extract in outside a trainer (``bf16-mixed``: bfloat16 autocast; see
            ``store_for``); under a trainer, the trainer's ``precision``.
    """

    def __init__(self, source: pl.LightningDataModule, backbones: list[Backbone],
                 features_dir: str = DEFAULT_ROOT, precision: str | None = None) -> None:
        super().__init__()
        self.source = source
        self.backbones = list(backbones)
        self.features_dir = features_dir
        self.precision = precision
        self._batches: dict[str, FeatureBatches] = {}

    def __getattr__(self, name: str):
        """The source's attributes (``task``, ``batch_size``, ``describe``, ...) read through the wrapper."""
        if name.startswith("__") or name == "source":  # not set yet: no source to read through
            raise AttributeError(name)
        return getattr(self.source, name)

    @property
    def name(self) -> str:
        return self.source.name

    # -- Lightning's datamodule hooks, passed on to the source -----------------------------------------------
    def prepare_data(self) -> None:
        self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.source.trainer = self.trainer
        self.source.setup(stage)

    def teardown(self, stage: str | None = None) -> None:
        self.source.teardown(stage)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        return self.source.transfer_batch_to_device(batch, device, dataloader_idx)

    def state_dict(self) -> dict:
        return self.source.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.source.load_state_dict(state_dict)

    # -- loaders ---------------------------------------------------------------------------------------------
    def train_dataloader(self) -> FeatureBatches:
        warn_augmentation_unused(self.source)
        return self.split_batches("train")

    def val_dataloader(self) -> FeatureBatches:
        return self.split_batches("val")

    def test_dataloader(self) -> FeatureBatches:
        return self.split_batches("test")

    def predict_dataloader(self) -> FeatureBatches:
        return self.split_batches("test")

    def split_batches(self, split: str) -> FeatureBatches:
        """The cached features of ``split`` (the label fraction's rows for ``train``).

        They are extracted first when no store matches. Every DDP rank asks together the first time
        (extraction is collective).
        """
        if split not in self._batches:
            self._batches[split] = self._load(split)
        return self._batches[split]

    def _load(self, split: str) -> FeatureBatches:
        precision = self.trainer.precision if self.trainer is not None else self.precision
        with all_threads():  # extraction: every CPU thread, whatever the head's steps use
            stores = [store_for(b, self.source, split, self.features_dir, precision) for b in self.backbones]
        check_aligned(stores)
        rows = stores[0].rows_of(self.source.split_source(split).ids)
        on_device = sum(s.nbytes for s in stores) <= DEVICE_CACHE_BYTES
        device = self._device() if on_device else torch.device("cpu")
        check_fits(sum(len(rows) * s.dim * 2 for s in stores),
                   f"the {split} split's feature stores ({len(rows)} rows of {[s.dim for s in stores]} "
                   "float16 values), read into memory", "a frozen head holds its splits' stores in memory: "
                   "use a smaller data.init_args.train_fraction (training split), or a machine with more "
                   "memory")
        features = [torch.from_numpy(rows_in_memory(s.features, rows)).to(device) for s in stores]
        labels = np.asarray(stores[0].labels[rows])
        task = self.source.task
        labels = torch.from_numpy(labels.astype(np.float32 if task.kind == "multilabel" else np.int64))
        world, rank = world_and_rank(self.trainer)
        train = split == "train"
        batch_size = self.source.batch_size if train else max(self.source.eval_batch_size, MIN_EVAL_BATCH)
        return FeatureBatches(features, labels.to(device), stores[0].ids[rows], batch_size, shuffle=train,
                              seed=run_seed(), num_replicas=world, rank=rank)

    def _device(self) -> torch.device:
        """Where the training runs: the trainer's device, or the backbones' outside a trainer."""
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return next(self.backbones[0].parameters()).device


def rows_in_memory(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``features[rows]`` of a memory-mapped store, read into one float16 array (the only copy held).

    The whole split (every row, in order) is read sequentially rather than gathered row by row.
    """
    if len(rows) == len(features) and np.array_equal(rows, np.arange(len(features))):
        return np.array(features, dtype=features.dtype, order="C")
    return np.ascontiguousarray(features[rows])


def warn_augmentation_unused(datamodule) -> None:
    """Warn that the train-time augmentation the config asked for is not applied on feature stores.

    Stores hold the eval transform's embeddings: a train-time augmentation the config asked for is not
    applied, and the user should know rather than read it in results.json's data section and assume it was.
    A dataset's default preset is no request (a linear probe on stores is the usual protocol).
    """
    augmentation = getattr(datamodule, "augmentation_asked", None)
    if augmentation not in (None, "none"):
        rank_zero_warn(
            f"training on feature stores of the eval transform, so data.augmentation {augmentation!r} is not "
            "applied: set model.init_args.feature_cache: false to train on augmented images (the backbone "
            "then runs on every batch), or data.init_args.augmentation: none to say so"
        )
