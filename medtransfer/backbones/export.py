"""Backbone-only checkpoints: the weights of one Backbone and what rebuilds it exactly (timm architecture and
arguments, the preprocessing it was trained with, its embedding recipe, a fingerprint of the weights).

Self-supervised pretraining writes one; ``create_backbone(arch, checkpoint=path)`` (and so
``model.init_args.checkpoint`` of every model, and ``medtransfer weights check``) recognises it by its
``format`` key, loads it strictly with the ``medtransfer`` layout, applies its preprocessing, and checks that
the loaded weights hash to the recorded fingerprint. The file holds only tensors, strings and numbers, so it
reads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..utils.atomic import torch_save_atomic
from .backbone import Backbone, state_dict_fingerprint
from .errors import CheckpointFormatError, CheckpointMismatchError
from .layouts import EXPORT_FORMAT
from .preprocessing import Preprocessing

FORMAT_FAMILY = "medtransfer.backbone/"


@dataclass(frozen=True)
class ExportedBackbone:
    """What an export says about its backbone, besides the weights."""

    arch: str
    timm_kwargs: dict
    embedding: str
    preprocessing: Preprocessing
    fingerprint: str
    trained_with: dict
    stem: str = "imagenet"  # exports written before stems existed had timm's


def save_backbone(backbone: Backbone, path: str | Path, trained_with: dict | None = None,
                  input_size: int | None = None) -> dict:
    """Write ``backbone``'s weights (its timm model only: no heads, no momentum copies) atomically to
    ``path``; ``input_size`` records the side it was trained at. Returns ``{"path", "fingerprint"}``."""
    state = {key: value.detach().cpu().clone() for key, value in backbone.model.state_dict().items()}
    fingerprint = state_dict_fingerprint(state)
    preprocessing = backbone.preprocessing
    if input_size is not None:
        preprocessing = replace(preprocessing, input_size=int(input_size))
    document = {
        "format": EXPORT_FORMAT,
        "arch": backbone.arch,
        "timm_kwargs": dict(backbone.timm_kwargs),
        "embedding": backbone.embedding,
        "stem": backbone.stem,
        "preprocessing": preprocessing.to_dict(),
        "fingerprint": fingerprint,
        "trained_with": dict(trained_with or {}),
        "state_dict": state,
    }
    path = Path(path)
    torch_save_atomic(document, path)
    return {"path": str(path.resolve()), "fingerprint": fingerprint}


def read_export(checkpoint: Mapping, path: str | Path) -> ExportedBackbone | None:
    """The description of a backbone export, or None when ``checkpoint`` is another kind of file."""
    form = checkpoint.get("format")
    if not isinstance(form, str) or not form.startswith(FORMAT_FAMILY):
        return None
    if form != EXPORT_FORMAT:
        raise CheckpointFormatError(f"{path}: a backbone export of format {form!r}, which this medtransfer "
                                    f"does not read (it reads {EXPORT_FORMAT!r}); update medtransfer")
    try:
        preprocessing = checkpoint["preprocessing"]
        exported = ExportedBackbone(
            arch=str(checkpoint["arch"]),
            timm_kwargs=dict(checkpoint.get("timm_kwargs") or {}),
            embedding=str(checkpoint["embedding"]),
            preprocessing=Preprocessing(
                tuple(preprocessing["mean"]), tuple(preprocessing["std"]), int(preprocessing["input_size"]),
                str(preprocessing["interpolation"])),
            fingerprint=str(checkpoint["fingerprint"]),
            trained_with=dict(checkpoint.get("trained_with") or {}),
            stem=str(checkpoint.get("stem", "imagenet")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointFormatError(f"{path}: a damaged backbone export ({type(err).__name__}: {err}); "
                                    "export it again") from None
    if not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointFormatError(f"{path}: a backbone export without its 'state_dict'; export it again")
    return exported


def check_export_arch(exported: ExportedBackbone, arch: str, path: str | Path) -> None:
    if exported.arch != arch:
        raise CheckpointMismatchError(
            f"{path} holds a {exported.arch} backbone, but the model asks for {arch}: set "
            f"model.init_args.backbone: {exported.arch} (or the registry name it was continued from)"
        )


def export_kwargs(exported: ExportedBackbone, kwargs: dict, path: str | Path) -> dict:
    """The export's timm arguments plus the caller's, which may not contradict them."""
    trained = exported.timm_kwargs
    conflicts = {k: v for k, v in kwargs.items() if k in trained and trained[k] != v}
    if conflicts:
        raise CheckpointMismatchError(
            f"{path} was trained with timm arguments {trained}; backbone_kwargs {conflicts} would build "
            "another network. Remove them."
        )
    return {**exported.timm_kwargs, **kwargs}


def export_stem(exported: ExportedBackbone, stem: str | None, path: str | Path) -> str:
    """The export's stem (``stem.py``); the caller's, when given, may not contradict it."""
    if stem is not None and stem != exported.stem:
        raise CheckpointMismatchError(
            f"{path} was trained with stem {exported.stem!r}; model.init_args.stem={stem!r} would build "
            f"another network: set it to {exported.stem!r} or leave it null"
        )
    return exported.stem


def check_export_fingerprint(exported: ExportedBackbone, backbone: Backbone, path: str | Path) -> None:
    """The weights as loaded must hash to the fingerprint recorded when the file was written."""
    if backbone.fingerprint != exported.fingerprint:
        raise CheckpointMismatchError(
            f"{path}: its weights hash to {backbone.fingerprint}, not to the fingerprint "
            f"{exported.fingerprint} recorded when it was exported: the file was changed or damaged since. "
            "Export it again."
        )
