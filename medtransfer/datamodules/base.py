"""The datamodule base every dataset builds on: splits as sources, label fractions, transforms, samplers."""

from __future__ import annotations

import hashlib
import logging
import os
from abc import abstractmethod
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..runtime import settings
from ..runtime.ranks import world_and_rank
from ..runtime.seeding import run_seed
from ..runtime.threads import usable_cpus
from ..task import SPLITS, Task
from ..views import ViewSpec
from .class_sets import check_training_classes, class_counts, warn_findings_left_out
from .config_values import check_choice, check_flag, check_integer
from .copies import check_copies
from .dataset import TransformedDataset, collate_skipping
from .errors import DatasetTooSmallError
from .fractions import check_train_fraction, select_fraction
from .patient_splits import check_patients_in_one_split
from .samplers import EpochSampler, UnpaddedSampler
from .sources import Source
from .splits import write_split_file
from .transforms import PRESETS, Preset, build_transform
from .views import MultiViewDataset, build_view_transform

log = logging.getLogger(__name__)


def source_digest(source: Source) -> str:
    """A short hash of a source's sample ids and labels: equal digests mean the same samples."""
    digest = hashlib.sha256("\n".join(source.ids).encode())
    digest.update(np.ascontiguousarray(source.labels, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


class MedicalDataModule(pl.LightningDataModule):
    """Base datamodule. Subclasses set ``task`` in ``__init__`` and implement ``build_sources``.

    Args:
        batch_size: training batch size per process.
        eval_batch_size: batch size for validation/test/extraction (default: ``batch_size``).
        num_workers: DataLoader worker processes per training process; ``None`` (default): the
            ``MEDTRANSFER_NUM_WORKERS`` environment variable if set, else this machine's CPUs divided by the
            processes a node runs (DDP), at most 16 (``loader_settings``).
        image_size: side of the square images fed to the model.
        train_fraction: a float in (0, 1] or a sample count of the TRAINING split to use
            (docs/architecture.md).
        fraction_seed: seed of the label-fraction subset (nested across fractions for one seed).
        augmentation: modality preset for training images (``none``, ``natural``, ``histology``, ``fundus``,
            ``chest_xray``); ``None`` takes the dataset's default.
        pin_memory: page-locked batches for faster copies to the GPU; ``None`` (default): when the trainer
            runs on a CUDA device.
        persistent_workers: keep worker processes between epochs (no start-up cost per epoch).
        prefetch_factor: batches each worker prepares ahead.
    """

    default_augmentation = "natural"
    task: Task | None  # None: images without labels (self-supervised pretraining only)

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        image_size: int = 224,
        train_fraction: float = 1.0,
        fraction_seed: int = 0,
        augmentation: Preset | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 4,
    ) -> None:
        super().__init__()
        check_batch_settings(batch_size, eval_batch_size, num_workers, prefetch_factor)
        check_image_settings(image_size, train_fraction, fraction_seed, augmentation)
        check_flag("pin_memory", pin_memory, optional=True)
        check_flag("persistent_workers", persistent_workers)
        self.batch_size = batch_size
        self.eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.train_fraction = train_fraction
        self.fraction_seed = fraction_seed
        self.augmentation = augmentation or self.default_augmentation
        self.augmentation_asked = augmentation  # None: the dataset's default, not the user's request
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self._sources: dict[str, Source] | None = None
        self._train_indices: np.ndarray | None = None
        self.views: ViewSpec | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    @abstractmethod
    def build_sources(self) -> dict[str, Source]:
        """Read the dataset's native layout: one source per split in ``SPLITS``."""

    # -- the class set (datamodules.class_sets, docs/datasets.md "Classes") --------------------------------
    # what to do about a class without training images, for datasets whose classes are read off the labels
    class_set_fix = ""

    def classes_declared_by(self) -> str | None:
        """Who declared the class set, or None when it was read off the labels found.

        A declared class without training images is kept with a warning; an inferred one is refused
        (``class_set_fix`` says what to do). A published dataset declares its own classes.
        """
        return "the dataset's published class list"

    def check_class_set(self, sources: dict[str, Source]) -> None:
        """Every class has training images, once the splits are built (``class_sets``)."""
        if self.task is not None:
            check_training_classes(self.name, self.task, sources, self.classes_declared_by(),
                                   self.class_set_fix)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Samples per class name (positive samples per finding for multilabel) in each split.

        For a pre-flight check before training: ``train`` is the label fraction used, ``train_full`` the whole
        training split (only when the fraction leaves samples out), then ``val`` and ``test``. Reads labels
        only (no image is decoded) and changes nothing a run computes; {} for images without labels.
        """
        if self.task is None:
            return {}
        sources = self.sources()
        counts = {"train": class_counts(self.task, self.split_source("train").labels)}
        if len(self.train_indices()) < len(sources["train"]):
            counts["train_full"] = class_counts(self.task, sources["train"].labels)
        return counts | {split: class_counts(self.task, sources[split].labels) for split in ("val", "test")}

    def data_fingerprint(self) -> dict:
        """What identifies this dataset's samples and splits (for feature stores and results.json).

        The dataset, where its pixels are read from (``root``, resolved, for datamodules that read files: the
        same ids and labels under another folder may be other pixels, e.g. another preprocessing) and a digest
        of every split's ids and labels.
        """
        fingerprint = {"dataset": self.name, "splits": self.split_digests()}
        root = getattr(self, "root", None)
        if root is not None:
            fingerprint["root"] = str(Path(root).expanduser().resolve())
        return fingerprint

    def split_digests(self) -> dict[str, str]:
        """A short hash of each split's sample ids and labels: equal digests mean the same samples."""
        return {split: source_digest(source) for split, source in self.sources().items()}

    def training_data(self) -> dict:
        """What a fit trains and chooses its checkpoint on, as its checkpoints record it.

        A fit continuing a checkpoint must use the same: digests of the training subset (the label fraction)
        and of the validation split, and the label fraction's settings, for messages.
        """
        return {"train": source_digest(self.split_source("train")),
                "val": source_digest(self.sources()["val"]),
                "train_fraction": self.train_fraction, "fraction_seed": self.fraction_seed}

    def write_splits(self, path: str | Path) -> Path:
        """Write ``id,split,label,patient`` for every sample (official and carved splits) to a CSV.

        This publishes the exact splits a result used; the label fraction is reproducible from
        ``fraction_seed``.

        Args:
            path: the CSV file to write.

        Returns:
            The path written.
        """
        return write_split_file(path, self.sources())

    # -- splits ---------------------------------------------------------------------------------------------
    # what to do about a patient in two splits, for datasets whose splits the user made
    split_fix = ""

    def splits_declared_by(self) -> str | None:
        """Who made the splits, or None when the user did.

        A patient, or an image with a byte-identical copy, in two splits the user made is refused
        (``patient_splits``, ``copies``); a published dataset's official splits are kept as published, with a
        warning.
        """
        return "the dataset's official splits"

    def sources(self) -> dict[str, Source]:
        if self._sources is None:
            sources = self.build_sources()
            missing = [s for s in SPLITS if s not in sources]
            if missing:
                raise RuntimeError(f"{self.name}.build_sources returned no {missing} split")
            self.check_class_set(sources)
            check_patients_in_one_split(self.name, sources, self.splits_declared_by(), self.split_fix)
            check_copies(self.name, sources, self.splits_declared_by(),
                         self.task.class_names if self.task is not None else ())
            self._sources = sources
        return self._sources

    def train_indices(self) -> np.ndarray:
        """Rows of the training source in the label fraction (all rows for ``train_fraction=1``)."""
        if self._train_indices is None:
            train = self.sources()["train"]
            self._train_indices = select_fraction(
                train.labels, self.train_fraction, self.fraction_seed, train.groups
            )
            if len(self._train_indices) < len(train):
                log.info("%s: train_fraction=%s keeps %d of %d training samples (fraction_seed=%d)",
                         self.name, self.train_fraction, len(self._train_indices), len(train),
                         self.fraction_seed)
                subset = f"train_fraction={self.train_fraction} (fraction_seed={self.fraction_seed})"
                warn_findings_left_out(self.name, self.task, train.labels, self._train_indices, subset)
        return self._train_indices

    def split_source(self, split: str) -> Source:
        """The source a stage uses: the label-fraction subset for ``train``, the whole split otherwise."""
        if split == "train":
            return self.sources()["train"].subset(self.train_indices())
        return self.sources()[split]

    def setup(self, stage: str | None = None) -> None:
        self.sources()
        self.train_indices()

    # -- loaders --------------------------------------------------------------------------------------------
    @property
    def multilabel(self) -> bool:
        return self.task is not None and self.task.kind == "multilabel"

    def transform(self, train: bool):
        """The training (augmenting) or evaluation pipeline of this dataset's images."""
        return build_transform(self.augmentation, self.image_size, train)

    def dataset(self, split: str, train_transform: bool) -> TransformedDataset:
        transform = self.transform(train_transform)
        return TransformedDataset(self.split_source(split), transform, seed=run_seed(),
                                  multilabel=self.multilabel)

    def view_dataset(self, spec: ViewSpec) -> MultiViewDataset:
        """The training split (its label fraction) as multi-view items for self-supervised pretraining.

        The views (``medtransfer.views``) are augmented for this dataset's modality; labels come along unused.
        """
        transform = build_view_transform(spec, self.augmentation, self.image_size)
        return MultiViewDataset(self.split_source("train"), transform, seed=run_seed(),
                                multilabel=self.multilabel)

    def _world(self) -> tuple[int, int]:
        return world_and_rank(getattr(self, "trainer", None))

    def serve_views(self, spec: ViewSpec | None) -> None:
        """Serve ``spec``'s views of each training image instead of single augmented images.

        For self-supervised pretraining; the ``medtransfer`` CLI sets this from the model's ``view_spec``.
        """
        self.views = spec

    def train_dataloader(self) -> DataLoader:
        if self.views is not None:
            return self._view_loader(self.views)
        dataset = self.dataset("train", train_transform=True)
        world, rank = self._world()
        sampler = EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=run_seed(),
                               drop_last=False)
        return self._loader(dataset, sampler, self.batch_size)

    def _view_loader(self, spec: ViewSpec) -> DataLoader:
        """Multi-view batches of the training split.

        Incomplete last batches are dropped: contrastive and clustering losses and BatchNorm need full
        batches.
        """
        dataset = self.view_dataset(spec)
        world, rank = self._world()
        if len(dataset) < self.batch_size * world:
            raise DatasetTooSmallError(
                f"{self.name}: {len(dataset)} training images cannot fill one batch of {self.batch_size} "
                f"images on each of {world} process(es); lower data.init_args.batch_size"
            )
        sampler = EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=run_seed(),
                               drop_last=True)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=collate_skipping,
                          drop_last=True, **self.loader_settings())

    def eval_dataloader(self, split: str) -> DataLoader:
        """Deterministic, unaugmented, unpadded loader over a whole split (``train``: its label fraction)."""
        dataset = self.dataset(split, train_transform=False)
        world, rank = self._world()
        return self._loader(dataset, UnpaddedSampler(dataset, world, rank), self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    # -- feature stores (medtransfer.features) ---------------------------------------------------------------
    def eval_transform(self):
        """Deterministic transform of evaluation and feature extraction (part of a store's fingerprint)."""
        return self.transform(train=False)

    def extraction_dataloader(self, split: str, num_replicas: int = 1, rank: int = 0) -> DataLoader:
        """Unaugmented loader over the WHOLE split, label fraction ignored, as rank ``rank``'s unpadded shard.

        A feature store holds the whole split and fractions select its rows by ``train_indices()``.
        """
        dataset = TransformedDataset(self.sources()[split], self.eval_transform(), seed=run_seed(),
                                     multilabel=self.multilabel)
        return self._loader(dataset, UnpaddedSampler(dataset, num_replicas, rank), self.eval_batch_size)

    def _loader(self, dataset, sampler, batch_size: int) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_skipping,
                          **self.loader_settings())

    def loader_settings(self) -> dict:
        """DataLoader arguments that fit the machine.

        ``num_workers`` (see the class), workers kept between epochs and each preparing ``prefetch_factor``
        batches ahead, pinned memory when training on a CUDA device.
        """
        workers = self.num_workers
        if workers is None:
            workers = default_num_workers(self._local_world())
        pin = self.pin_memory
        if pin is None:
            trainer = getattr(self, "trainer", None)
            device = trainer.strategy.root_device.type if trainer is not None else None
            pin = device == "cuda" if device is not None else torch.cuda.is_available()
        settings = {"num_workers": workers, "pin_memory": pin}
        if workers > 0:
            settings["persistent_workers"] = self.persistent_workers
            settings["prefetch_factor"] = self.prefetch_factor
        return settings

    def _local_world(self) -> int:
        """Training processes on this node: the trainer's devices, else torchrun's ``LOCAL_WORLD_SIZE``."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return max(1, trainer.num_devices)
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Move a batch's tensors (``image`` or ``features``, ``label``) and leave ``id`` as it is.

        Lightning's generic transfer walks every id string, which costs more than a linear head's whole step
        on cached features.
        """
        if not isinstance(batch, dict):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        return {key: _to_device(value, device) for key, value in batch.items()}

    def describe(self) -> dict:
        """The data part of results.json."""
        sizes = {}
        if self._sources is not None:
            sizes = {split: len(self.split_source(split)) for split in SPLITS}
        return {"name": self.name, "train_fraction": self.train_fraction, "fraction_seed": self.fraction_seed,
                "image_size": self.image_size, "augmentation": self.augmentation, "num_samples": sizes,
                **self.data_fingerprint()}


def check_batch_settings(batch_size, eval_batch_size, num_workers, prefetch_factor) -> None:
    """Batch sizes and DataLoader workers a DataLoader can use (``ConfigValueError`` otherwise)."""
    check_integer("batch_size", batch_size, 1, "images per training batch on each process, e.g. 64")
    check_integer("eval_batch_size", eval_batch_size, 1, "images per evaluation batch; unset: batch_size",
                  optional=True)
    check_integer("num_workers", num_workers, 0, "DataLoader worker processes, 0 to load in the training "
                  "process; unset: one per CPU", optional=True)
    check_integer("prefetch_factor", prefetch_factor, 1, "batches each worker prepares ahead, e.g. 4")


def check_image_settings(image_size, train_fraction, fraction_seed, augmentation) -> None:
    """Check the image side, label fraction, its seed and the augmentation preset.

    Raises:
        ConfigValueError: one of them is out of range or unknown.
    """
    check_integer("image_size", image_size, 1, "the side in pixels of the square images fed to the model, "
                  "e.g. 224")
    check_train_fraction(train_fraction)
    check_integer("fraction_seed", fraction_seed, 0, "the seed of the label-fraction subset, e.g. 0")
    check_choice("augmentation", augmentation, PRESETS, optional=True, what="augmentation preset")


WORKERS_ENV = "MEDTRANSFER_NUM_WORKERS"  # read through runtime.settings
MAX_AUTO_WORKERS = 16


def default_num_workers(local_world: int = 1) -> int:
    """DataLoader workers per training process: ``MEDTRANSFER_NUM_WORKERS`` if set, else a share of the CPUs.

    The share is of the CPUs this process may use, among the ``local_world`` training processes of the node
    (at most 16 each, at least 1).
    """
    forced = settings.num_workers()
    if forced is not None:
        return forced
    return max(1, min(usable_cpus() // max(1, local_world), MAX_AUTO_WORKERS))


def _to_device(value, device: torch.device):
    """A tensor or a list of tensors (one per backbone) on ``device``; anything else (ids) unchanged."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
        return [v.to(device, non_blocking=True) for v in value]
    return value

