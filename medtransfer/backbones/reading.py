"""Reading checkpoint files safely: ``torch.load(weights_only=True)`` or safetensors, never plain pickle."""

from __future__ import annotations

import argparse
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import first_line
from .errors import CheckpointFormatError

# Classes a published checkpoint may pickle besides tensors and containers, allowed through torch's
# safe-globals mechanism and nothing else: DINO's checkpoint.pth stores its training arguments as an
# argparse.Namespace.
SAFE_GLOBALS = (argparse.Namespace,)


def read_checkpoint(path: str | Path) -> Mapping:
    """The file's top-level dict (a state dict, or a training checkpoint holding one)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointFormatError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointFormatError(
            f"{path}: torch.load(weights_only=True) refused it ({_refusal(err)}). medtransfer never "
            "unpickles arbitrary objects (only tensors, containers and "
            f"{', '.join(c.__name__ for c in SAFE_GLOBALS)}). If you trust the file, extract its state dict "
            "with the code that wrote it, save the state dict alone (torch.save(state_dict, 'weights.pth')) "
            "and pass that file."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointFormatError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {first_line(err)}). A "
            "truncated download? Delete it and fetch it again (medtransfer weights download NAME)."
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(
            f"{path}: holds a {type(checkpoint).__name__}, not a state dict or a checkpoint dict. Save the "
            "model's state_dict() instead of the module object."
        )
    return checkpoint


def _refusal(err: Exception) -> str:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    if found:
        return f"it pickles {found.group(1)}"
    return (str(err).strip().splitlines() or [type(err).__name__])[-1]
