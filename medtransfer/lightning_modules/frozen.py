"""The base of every head on frozen backbones: trains on feature stores instead of images when it can."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch
from torch import nn

from ..backbones import create_backbone
from ..backbones.backbone import Backbone
from ..errors import MedTransferError
from ..features import DEFAULT_ROOT, EmbeddingsDataModule, FeatureBatches
from ..runtime import settings
from ..task import Task
from .base import Optimizer, Schedule, TaskModule, check_memory_format
from .standardize import FeatureStandardizer, Moments

# values of a cached split converted to float64 at once for its statistics: 128 MiB (8,192 rows of 2,048
# dimensions), where 65,536 rows of them had taken 1 GiB, and var_mean's temporaries as much again
MOMENTS_CHUNK_VALUES = 1 << 24


class FeatureCacheError(MedTransferError, RuntimeError):
    """A checkpoint or a configuration that does not fit the frozen backbones of this model."""


class FrozenBackboneModule(TaskModule):
    """Base for LinearProbe, LinearSweep, KNN and frozen DVME.

    The head is handed its data (``attach_data(datamodule)``; ``medtransfer.run`` does this for every model):
    with ``feature_cache`` on it trains on a ``medtransfer.features.EmbeddingsDataModule`` around the user's
    datamodule, whose splits are embedded once per backbone into feature stores under ``features_dir`` (reused
    while their fingerprint matches), held in memory, and served as batches whose ``features`` replace
    ``image``; with it off, on the images. The head keeps what it was handed for what it reads whole (the
    training split's statistics, the exact solver's splits, kNN's bank) and never asks the trainer for data.
    Subclasses read embeddings with ``embeddings(batch)``, which runs the frozen backbones on images when
    there are no features, so one ``logits`` serves both paths and the metric names are the same.

    With ``standardize`` on (default), every embedding dimension is standardised with the mean and std of the
    training split (the label fraction used; see ``standardize.py`` for why), computed once before the first
    step from the stores or, without them, from one pass of the frozen backbones over the unaugmented
    training images; the statistics are buffers, saved in checkpoints.

    Checkpoints leave the frozen backbones out (they never change): they record the weights' fingerprints, and
    loading rebuilds the backbones from the config and checks the fingerprints.

    Extraction runs in the trainer's precision: under ``bf16-mixed`` (``16-mixed``) the backbones embed under
    autocast, and the stores record it in their fingerprint (``features.extract``), so stores of another
    precision are never mixed in.

    Args:
        feature_cache: train and evaluate on feature stores (default) instead of running the backbone per
            batch.
        features_dir: where stores live (default ``$MEDTRANSFER_FEATURES`` or ``./features``).
        standardize: standardise the embeddings with training-split statistics before the head.
        memory_format: ``channels_last`` lays out the weights of every convolutional backbone and each batch
            NHWC (``Backbone.use_channels_last``), as ``Finetune``'s option does; a ViT's is left as it is.
            Null (the default) or ``contiguous``: the default layout. Embeddings and stores equal the default
            layout's to float rounding, so stores are shared across layouts.
        task, lr, weight_decay, optimizer, scheduler, warmup_epochs: see ``TaskModule``.
    """

    def __init__(
        self,
        task: Task | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adamw",
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        feature_cache: bool = True,
        features_dir: str | None = None,
        standardize: bool = True,
        memory_format: Literal["contiguous", "channels_last"] | None = None,
    ) -> None:
        super().__init__(task, lr, weight_decay, optimizer, scheduler, warmup_epochs)
        check_memory_format(memory_format)
        self.memory_format = memory_format
        self.feature_cache = feature_cache
        self.features_dir = features_dir or settings.features_dir() or DEFAULT_ROOT
        self.standardize = standardize
        self.standardizers = nn.ModuleList()
        self.data = None  # what ``attach_data`` handed the head: stores or images

    def feature_backbones(self) -> list[Backbone]:
        """The frozen backbones whose embeddings this head consumes, in the order of ``batch["features"]``."""
        raise NotImplementedError

    def embeddings(self, batch: dict) -> list[torch.Tensor]:
        """``B x D`` float embeddings per backbone.

        The cached features, or the frozen backbones on the images; standardised when ``standardize`` is on.
        """
        if "features" in batch:
            raw = list(batch["features"])  # float16 rows of a store: converted by the standardiser below
        else:
            with torch.no_grad():
                raw = [backbone(batch["image"]).float() for backbone in self.feature_backbones()]
        if not self.standardize:
            return [f.float() for f in raw]
        if not all(bool(s.fitted) for s in self.standardizers):
            raise FeatureCacheError(
                f"{type(self).__name__}: the standardisation statistics were never computed; they come from "
                "the training split when fit, validate, test or predict starts through a MedicalDataModule "
                "(or set model.init_args.standardize: false)"
            )
        return [standardizer(e) for standardizer, e in zip(self.standardizers, raw, strict=True)]

    # -- standardisation -------------------------------------------------------------------------------------
    def init_standardizers(self) -> None:
        """One standardiser per frozen backbone; subclasses call this once their backbones exist."""
        self.standardizers = nn.ModuleList(FeatureStandardizer(b.embed_dim) for b in self.feature_backbones())

    def fit_standardization(self) -> None:
        """Compute the training split's statistics from the data the head was handed, unless they are known.

        They are known when fitted before, or restored from a checkpoint. Every DDP rank calls this together
        and ends with the same numbers.
        """
        if not self.standardize or all(bool(s.fitted) for s in self.standardizers):
            return
        data = self.attached_data()
        if self.feature_cache:
            train = data.split_batches("train")
            moments = [_moments_of(features) for features in train.features]
        else:
            moments = self._online_moments(data)
        for standardizer, moment in zip(self.standardizers, moments, strict=True):
            standardizer.set_statistics(moment)

    def _online_moments(self, datamodule) -> list[Moments]:
        """Statistics of the frozen backbones' embeddings of the unaugmented training images.

        Each rank computes them on its shard; they are merged over the DDP ranks.
        """
        backbones = self.feature_backbones()
        moments = [Moments(b.embed_dim) for b in backbones]
        trainer = self.attached_trainer
        precision = trainer.precision_plugin.forward_context() if trainer is not None else nullcontext()
        with torch.no_grad(), precision:  # as the steps embed the images (autocast under bf16-mixed)
            for batch in datamodule.eval_dataloader("train"):
                images = batch["image"].to(self.device)
                for moment, backbone in zip(moments, backbones, strict=True):
                    moment.update(backbone(images))
        if self.attached_trainer is None or self.trainer.world_size == 1:
            return moments
        merged = []
        for moment in moments:
            parts = self.all_gather(moment.as_tensor().to(self.device))  # world x 3 x D
            merged.append(Moments.from_tensors(list(parts)))
        return merged

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.fit_standardization()

    # -- the data the head was handed ------------------------------------------------------------------------
    def attach_data(self, datamodule):
        """What this head trains and evaluates on, made from the user's datamodule and kept by the head.

        Its feature stores while ``feature_cache`` is on (an ``EmbeddingsDataModule``), else the images. Pass
        the result to the Trainer (``medtransfer.run`` does).

        Args:
            datamodule: the user's datamodule, whose task must be the head's.

        Returns:
            The datamodule to train and evaluate on.

        Raises:
            TaskMismatchError: the datamodule's task is not the head's.
        """
        datamodule = super().attach_data(datamodule)
        if self.feature_cache:
            datamodule = EmbeddingsDataModule(datamodule, self.feature_backbones(), self.features_dir)
        self.data = datamodule
        return datamodule

    def attached_data(self):
        """The data ``attach_data`` made, or an error saying how to hand it over."""
        if self.data is None:
            raise FeatureCacheError(
                f"{type(self).__name__} reads whole splits of its data (statistics, stores, a memory bank) "
                "and was handed none: train it with medtransfer.run.fit(model=..., data=...), or pass "
                "datamodule=model.attach_data(datamodule) to the Trainer"
            )
        return self.data

    def cached_split(self, split: str) -> FeatureBatches:
        """The cached features of ``split``. Every DDP rank calls this together (extraction is collective)."""
        data = self.attached_data()
        if not isinstance(data, EmbeddingsDataModule):
            raise FeatureCacheError(f"{type(self).__name__} reads feature stores: set model.init_args."
                                    "feature_cache: true")
        return data.split_batches(split)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.attached_data()  # fail before any step when the head was handed no data

    def describe(self) -> dict:
        """As for every model, plus whether it used feature stores and standardised embeddings.

        On feature stores it trained without train-time augmentation, whatever ``data.augmentation`` says.
        """
        described = super().describe() | {"feature_cache": self.feature_cache,
                                           "standardize": self.standardize}
        if self.standardize and all(bool(s.fitted) for s in self.standardizers):
            described["standardization"] = [s.describe() for s in self.standardizers]
        return described

    def on_validation_start(self) -> None:
        self.fit_standardization()

    def on_test_start(self) -> None:
        self.fit_standardization()

    def on_predict_start(self) -> None:
        self.fit_standardization()

    # -- checkpoints without the frozen weights --------------------------------------------------------------
    def _frozen_modules(self) -> dict[str, Backbone]:
        frozen = {id(b) for b in self.feature_backbones()}
        return {name: module for name, module in self.named_modules() if id(module) in frozen}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        modules = self._frozen_modules()
        for name in modules:
            for key in [k for k in state if k.startswith(f"{name}.")]:
                del state[key]
        checkpoint["frozen_backbones"] = {name: m.fingerprint for name, m in modules.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("frozen_backbones")
        if saved is None:
            return  # a checkpoint that holds the backbone weights itself
        modules = self._frozen_modules()
        current = {name: m.fingerprint for name, m in modules.items()}
        if saved != current:
            raise FeatureCacheError(
                f"the checkpoint was trained on frozen backbones with weight fingerprints {saved}, "
                "but this model "
                f"built {current} from its config: load it with the same backbone, checkpoint and seed"
            )
        state = checkpoint["state_dict"]
        for name, module in modules.items():
            state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        if self.standardizers and not any(k.startswith("standardizers.") for k in state):
            # written before standardisation existed: it trained on raw embeddings, which identity
            # statistics reproduce exactly
            for index, standardizer in enumerate(self.standardizers):
                standardizer.set_identity()
                state.update({f"standardizers.{index}.{k}": v for k, v in standardizer.state_dict().items()})


class SingleBackboneModule(FrozenBackboneModule):
    """A head on one frozen backbone (LinearProbe, LinearSweep, KNN).

    It builds the backbone from the model arguments they share and reports it as their only feature backbone.
    """

    def build_frozen_backbone(
        self, name: str, checkpoint: str | None, backbone_kwargs: dict | None, embedding: str | None,
        resize_to: int | None,
    ) -> None:
        self.backbone = lay_out(create_backbone(name, checkpoint=checkpoint, embedding=embedding,
                                                resize_to=resize_to, **(backbone_kwargs or {})).freeze(),
                                self.memory_format)
        self.init_standardizers()

    def feature_backbones(self) -> list[Backbone]:
        return [self.backbone]

    def backbone_descriptions(self) -> list[dict]:
        return [self.backbone.describe()]



def lay_out(backbone: Backbone, memory_format: str | None) -> Backbone:
    """``backbone`` laid out as ``memory_format`` asks, where that pays.

    Channels-last applies only where the backbone convolves (``Backbone.convolutional``); otherwise the
    backbone is returned as it is.
    """
    if memory_format == "channels_last" and backbone.convolutional:
        backbone.use_channels_last()
    return backbone


def _moments_of(features: torch.Tensor) -> Moments:
    """Statistics of a cached split's rows, converted to float64 a block of rows at a time."""
    moments = Moments(features.shape[1])
    rows = max(1, MOMENTS_CHUNK_VALUES // max(1, features.shape[1]))
    for start in range(0, len(features), rows):
        moments.update(features[start : start + rows])
    return moments
