"""Applying a model outside training (``medtransfer test``, ``validate``, ``predict``): refusing to evaluate
weights nobody trained, and scoring new images with a frozen head."""

from __future__ import annotations

from torch import nn

from ..datamodules.unlabelled_predict import NewImages, NewImagesError
from ..errors import MedTransferError
from ..lightning_modules.base import TaskModule
from ..lightning_modules.frozen import FrozenBackboneModule
from ..lightning_modules.knn import KNN

EVALUATING_VERBS = ("validate", "test", "predict")


class UntrainedModelError(MedTransferError, ValueError):
    """An evaluation of a model whose trainable weights were never trained (no ``--ckpt_path``)."""


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters ``fit`` would train: the head, and the backbone when it is finetuned."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_trained(model: nn.Module, verb: str, ckpt_path: str | None, allow_untrained: bool) -> None:
    """Stop ``validate``/``test``/``predict`` of a classifier with trainable weights but no checkpoint: its
    head would be the random initialisation, and its numbers would look like results. Models with nothing to
    train (kNN) need no checkpoint; ``--allow_untrained true`` runs anyway (e.g. to time a pipeline)."""
    if verb not in EVALUATING_VERBS or ckpt_path is not None or allow_untrained:
        return
    if not isinstance(model, TaskModule) or trainable_parameters(model) == 0:
        return
    raise UntrainedModelError(
        f"`medtransfer {verb}` without --ckpt_path would evaluate {type(model).__name__}'s untrained weights "
        f"({trainable_parameters(model):,} parameters at their random initialisation): give the checkpoint "
        "that `medtransfer fit` wrote (--ckpt_path runs/<name>/version_<n>/checkpoints/best-epoch=<e>.ckpt, "
        "or --ckpt_path last), or pass --allow_untrained true to run it untrained on purpose"
    )


def prepare_for_new_images(model: nn.Module, datamodule) -> None:
    """New images are scored by running a frozen head's backbones on each batch: no feature store is written
    for images scored once. kNN cannot score them: its memory bank is a labelled training split."""
    if not isinstance(datamodule, NewImages):
        return
    if isinstance(model, KNN):
        raise NewImagesError(
            "kNN votes with the labelled training split's embeddings, which NewImages has not: score new "
            "images with a trained head (LinearProbe, Finetune, DVME), or run kNN on a labelled datamodule"
        )
    if isinstance(model, FrozenBackboneModule):
        model.feature_cache = False
