"""The deployed network: a trained classifier from its checkpoint, wrapped for the deployment contract.

It takes the deployment contract's uint8 ``B x 3 x H x W`` RGB images (normalisation inside, as in training)
and returns ``B x C`` probabilities (or logits).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ..errors import MedTransferError
from ..lightning_modules.base import TaskModule
from ..lightning_modules.frozen import FrozenBackboneModule
from ..lightning_modules.knn import KNN
from ..runtime.checkpoints import CHECKPOINT_MODEL_KEY
from ..task import Task

OUTPUTS = ("probabilities", "logits")


class ExportError(MedTransferError, ValueError):
    """A checkpoint that cannot be exported as asked."""


def load_trained_model(ckpt_path: str | Path, seed: int = 0) -> tuple[TaskModule, dict]:
    """The classifier a ``medtransfer fit`` checkpoint holds, and the checkpoint itself.

    The classifier is rebuilt from its hyperparameters and loaded strictly, in eval mode on the CPU. Frozen
    backbones, which checkpoints leave out, are rebuilt from their weights and checked against the
    fingerprints the checkpoint recorded.

    Args:
        ckpt_path: a checkpoint written by ``medtransfer fit``.
        seed: rebuilds a randomly initialised frozen backbone (the run's ``seed_everything``, 0 by default).

    Returns:
        The model, in eval mode on the CPU, and the checkpoint dict.

    Raises:
        ExportError: no such file, no medtransfer classifier in it, or a model that is no network to export
            (kNN, self-supervised pretraining).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise ExportError(f"--ckpt_path: no checkpoint file at {str(path)!r} (give a .ckpt written by "
                          "`medtransfer fit`)")
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None) or checkpoint.get(CHECKPOINT_MODEL_KEY)
    hparams.pop("_instantiator", None)
    if class_path is None or "task" not in hparams:
        raise ExportError(f"{path} holds no medtransfer classifier (no model class or task in its "
                          "hyper_parameters): export a checkpoint written by `medtransfer fit`")
    module, _, name = class_path.rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    refuse_unexportable(model_class, path)
    if hparams.get("compile"):
        hparams["compile"] = False  # how training ran, not part of the network (and tracers refuse it)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(**hparams)
    model.on_load_checkpoint(checkpoint)  # frozen backbones: their weights back into the state, checked
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    return model.eval(), checkpoint


def refuse_unexportable(model_class: type, path: Path) -> None:
    """Refuse a model that is no classifier network: a kNN evaluation or self-supervised pretraining."""
    if issubclass(model_class, KNN):
        raise ExportError(f"{path} is a kNN evaluation: its predictions are votes of a labelled training "
                          "split kept in a feature store, not a network; export a linear probe or finetuned "
                          "model")
    if not issubclass(model_class, TaskModule):
        raise ExportError(f"{path} holds a {model_class.__name__}, not a classifier; a self-supervised "
                          "backbone is exported by pretraining itself (backbone.pt), for `model.init_args."
                          "checkpoint`")


class DeployedModel(nn.Module):
    """A trained classifier on uint8 images, as ``medtransfer export`` writes it (ONNX or TorchScript).

    ``model`` on uint8 images: ``forward(images)`` -> ``B x C`` probabilities in the task's class order
    (binary: both classes; multilabel: independent sigmoids), or the raw logits (binary: ``B x 1``).

    Args:
        model: the trained classifier (``load_trained_model``).
        output: ``probabilities`` or ``logits``.
    """

    def __init__(self, model: TaskModule, output: str = "probabilities") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ExportError(f"--output_kind must be one of {list(OUTPUTS)}, got {output!r}")
        if isinstance(model, FrozenBackboneModule):
            model.feature_cache = False  # the deployed network runs its backbones on the images
        self.model = model.eval()
        self.task: Task = model.task
        self.output = output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model.logits({"image": images}).float()  # every head's path from images
        if self.output == "logits":
            return logits
        if self.task.kind == "binary":
            positive = torch.sigmoid(logits.reshape(-1, 1))
            return torch.cat([1 - positive, positive], dim=1)
        if self.task.kind == "multiclass":
            return logits.softmax(dim=1)
        return torch.sigmoid(logits)

    def output_names(self) -> list[str]:
        """What each output column is."""
        if self.output == "logits" and self.task.kind == "binary":
            return [f"logit of {self.task.class_names[1]}"]
        return list(self.task.class_names)
