"""Applying a model outside training (``medtransfer test``, ``validate``, ``predict``): refusing to evaluate
weights nobody trained or on images prepared otherwise than for its training, and scoring new images with a
frozen head."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..datamodules.unlabelled_predict import NewImages, NewImagesError, data_preparation
from ..errors import MedTransferError
from ..lightning_modules.base import TaskModule
from ..lightning_modules.frozen import FrozenBackboneModule
from ..lightning_modules.knn import KNN
from ..runtime.checkpoints import CHECKPOINT_DATA_KEY, CHECKPOINT_TRAINING_KEY, read_checkpoint
from ..task import Task

EVALUATING_VERBS = ("validate", "test", "predict")


class UntrainedModelError(MedTransferError, ValueError):
    """An evaluation of a model whose trainable weights were never trained (no ``--ckpt_path``)."""


class OtherImagesError(MedTransferError, ValueError):
    """A checkpoint's model given images prepared otherwise than those it was trained on."""


def check_images_as_trained(recorded: Mapping | None, data, ckpt_path: str | None) -> None:
    """Refuse to score (or continue training) a checkpoint's model on images prepared otherwise than it was
    trained on: another size, grey for colour, or the fundus preset's retina crop on one side only. The
    model accepts them all, and its scores drop without a word (a 32 px model tested at 64 px: AUROC 0.48 to
    0.30). ``recorded``: what the checkpoint holds (``data_preparation`` at training), None for none."""
    now = data_preparation(data)
    if not recorded or not now or ckpt_path is None:
        return
    differ = []
    if recorded.get("image_size") not in (None, now["image_size"]):
        trained = recorded["image_size"]
        differ.append(f"data.init_args.image_size {now['image_size']} (trained at {trained} px)")
    if recorded.get("grey") is not None and bool(recorded["grey"]) != now["grey"]:
        trained = "grey" if recorded["grey"] else "colour"
        differ.append(f"data.init_args.grey {str(now['grey']).lower()} (trained on {trained} images)")
    before, after = recorded.get("augmentation"), now["augmentation"]
    if before is not None and (before == "fundus") != (after == "fundus"):
        differ.append(f"data.init_args.augmentation {after} (trained with {before}; only fundus crops each "
                      "photo to the retina before resizing, also when scoring)")
    if differ:
        raise OtherImagesError(
            f"--ckpt_path {ckpt_path}: the model would see images prepared otherwise than it was trained on: "
            f"{'; '.join(differ)}; give the training's values (its run folder's config.yaml)")


@dataclass(frozen=True)
class CheckpointRecord:
    """What a checkpoint records of the fit that wrote it, checked before the checkpoint is used: its task,
    how its images were prepared (``data_preparation``) and what it trained and chose on (``training_data``);
    ``{}`` or None where a checkpoint of an older version records nothing."""

    path: str
    task: Task | None
    images: dict
    training: dict


def recorded_by_checkpoint(checkpoint: Mapping, path: str) -> CheckpointRecord:
    saved = dict(checkpoint.get("hyper_parameters") or {}).get("task")
    return CheckpointRecord(path, Task.from_dict(saved) if saved is not None else None,
                            dict(checkpoint.get(CHECKPOINT_DATA_KEY) or {}),
                            dict(checkpoint.get(CHECKPOINT_TRAINING_KEY) or {}))


def read_checkpoint_record(ckpt_path: str | None) -> CheckpointRecord | None:
    """``recorded_by_checkpoint`` of the checkpoint file ``ckpt_path``, for a run built in Python (a config's
    run reads it when it is parsed); None when ``ckpt_path`` names no file (none, or Lightning's ``last``,
    ``best``)."""
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return None
    return recorded_by_checkpoint(read_checkpoint(ckpt_path), str(ckpt_path))


class OtherTrainingDataError(MedTransferError, ValueError):
    """A fit continuing a checkpoint on another training subset or validation split than it trained on."""


def check_same_training_data(recorded: Mapping | None, data, ckpt_path: str | None) -> None:
    """Refuse a fit that continues a checkpoint on another training subset (another label fraction, fraction
    seed or training split) or another validation split: the run would be one model trained on two subsets,
    or chosen on two validation splits, recorded as the second. ``recorded``: the checkpoint's
    ``training_data``, {} or None for none (then nothing is checked)."""
    training_data = getattr(data, "training_data", None)
    if not recorded or ckpt_path is None or not callable(training_data):
        return
    now = training_data()
    differ = []
    if recorded.get("train") not in (None, now["train"]):
        differ.append(f"the training subset (trained with train_fraction {recorded.get('train_fraction')}, "
                      f"fraction_seed {recorded.get('fraction_seed')}; now {now['train_fraction']}, "
                      f"{now['fraction_seed']}, or other training images)")
    if recorded.get("val") not in (None, now["val"]):
        differ.append("the validation split the checkpoint was chosen on")
    if differ:
        raise OtherTrainingDataError(
            f"--ckpt_path {ckpt_path}: fit would continue training on other data than the checkpoint's: "
            f"{'; '.join(differ)}; give the training's data settings (its run folder's config.yaml), or "
            "leave out --ckpt_path to start a new run")


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
