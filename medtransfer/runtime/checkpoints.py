"""Checkpoint files written whole or not at all, and read with errors that say what is wrong with them.

Lightning's ``TorchCheckpointIO`` writes a checkpoint to a temporary file in the system's temporary folder
and then moves it into place. When that folder is on another file system than the run (node-local ``/tmp``,
runs on NFS or Lustre: the usual cluster layout) the move is a copy, and a job killed during the copy leaves a
truncated ``last.ckpt`` that the next ``--ckpt_path last`` cannot read; a checkpoint larger than the free
space of ``/tmp`` cannot be written at all. ``AtomicCheckpointIO`` writes beside the target and renames
(``medtransfer.utils.atomic``). ``TaskCheckpoint`` installs it on trainers that use Lightning's default.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO

from .. import __version__
from ..errors import MedTransferError, first_line
from ..utils.atomic import torch_save_atomic

PICKLE_PROTO = pickle.PROTO  # the first byte of a pickle of protocol 2 or later

# what medtransfer adds to every checkpoint it writes (``callbacks.TaskCheckpoint``, ``MedTransferModule``)
VERSION_KEY = "medtransfer_version"  # the version that wrote it
CHECKPOINT_DATA_KEY = "medtransfer_data"  # how the model's images were prepared (``data_preparation``)
CHECKPOINT_MODEL_KEY = "medtransfer_model_class"  # the model's class path, also when trained in Python
CHECKPOINT_TRAINING_KEY = "medtransfer_training_data"  # what the fit trained and chose on (``training_data``)


def stamp_version(checkpoint: dict[str, Any]) -> None:
    """Record which medtransfer wrote ``checkpoint``, for the errors of a later version that cannot use it."""
    checkpoint[VERSION_KEY] = __version__


class CheckpointFileError(MedTransferError, ValueError):
    """A checkpoint file that is missing, truncated, or not a weights-only file."""


class CheckpointMismatchError(MedTransferError, RuntimeError):
    """Checkpoint weights that do not fit the model (other keys or shapes)."""


def weights_mismatch(
    model: dict[str, torch.Tensor], checkpoint: dict[str, torch.Tensor], shown: int = 3
) -> str:
    """What differs between a model's state dict and a checkpoint's: keys only one has, and shapes."""
    missing = [k for k in model if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in model]
    reshaped = [
        f"{k} {tuple(checkpoint[k].shape)} in the checkpoint, {tuple(model[k].shape)} in the model"
        for k in model
        if k in checkpoint and hasattr(checkpoint[k], "shape") and checkpoint[k].shape != model[k].shape
    ]
    parts = [
        f"{len(names)} {what} (e.g. {', '.join(names[:shown])})"
        for names, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if names
    ]
    return "; ".join(parts) or "the weights differ"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` on the CPU, read weights-only (tensors and plain values: never arbitrary
    pickled objects), or a ``CheckpointFileError`` that says why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointFileError(
            f"checkpoint {path}: no such file (give a .ckpt written by `medtransfer fit`)"
        )
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        if not written_by_torch_save(path):  # a results.json or a config handed over as the checkpoint
            raise not_a_checkpoint(path, "neither the zip archive torch.save writes nor a pickle") from None
        raise CheckpointFileError(
            f"checkpoint {path} holds pickled Python objects, not only weights, and medtransfer never "
            f"unpickles a file (it could run code): {first_line(err)}. Save the model's state dict "
            "(torch.save(model.state_dict(), path)) or a checkpoint written by `medtransfer fit`"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise not_a_checkpoint(path, first_line(err)) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointFileError(
            f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dictionary"
        )
    return checkpoint


def written_by_torch_save(path: Path) -> bool:
    """Whether the file is what ``torch.save`` writes: a zip archive, or (before PyTorch 1.6) a pickle, whose
    first byte is the PROTO opcode."""
    with open(path, "rb") as handle:
        return handle.read(1) == PICKLE_PROTO or zipfile.is_zipfile(path)


def not_a_checkpoint(path: Path, why: str) -> CheckpointFileError:
    """The error for a file that is no checkpoint, or only part of one."""
    return CheckpointFileError(
        f"checkpoint {path} ({path.stat().st_size} bytes) is truncated or not a PyTorch checkpoint ({why}); "
        "use another checkpoint of the run (best-*.ckpt or last.ckpt)"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go through a temporary file beside the target and a rename, and
    whose local loads are weights-only with named errors (``read_checkpoint``). Remote paths (``s3://``...)
    keep Lightning's behaviour."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        torch_save_atomic(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only)
        return read_checkpoint(path)


def install_atomic_io(strategy) -> None:
    """Give ``strategy`` an ``AtomicCheckpointIO`` when it uses Lightning's plain default (a checkpoint IO a
    user configured is left alone)."""
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


def _is_local(path) -> bool:
    return type(get_filesystem(str(path))).__name__ == "LocalFileSystem"
