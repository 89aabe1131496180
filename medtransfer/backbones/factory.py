"""``create_backbone``: a name (registry weights or any timm architecture) and an optional checkpoint to a
Backbone whose weights were loaded exactly (``loading.py``) and fingerprinted before any training."""

from __future__ import annotations

import timm
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from .backbone import Backbone
from .download import resolve_weights_file
from .embedding import RECIPES
from .export import check_export_arch, check_export_fingerprint, export_kwargs, read_export
from .layouts import get_layout
from .loading import LoadReport, load_weights
from .preprocessing import Preprocessing
from .reading import read_checkpoint
from .registry import REGISTRY, WeightsEntry, get_entry


def create_backbone(
    name: str,
    checkpoint: str | None = None,
    embedding: str | None = None,
    resize_to: int | None = None,
    **timm_kwargs,
) -> Backbone:
    """A Backbone for ``name``.

    - a registry name (``resnet50.swav_in1k``, see ``medtransfer weights list``): its architecture,
      preprocessing and embedding recipe, with the weights from ``checkpoint`` if given, else the cache,
      else a download;
    - a timm architecture (``resnet50``): random initialisation, or the weights of ``checkpoint`` in any
      layout that ``format: auto`` recognises (``layouts.detect_layout``);
    - with a medtransfer backbone export as ``checkpoint`` (``export.py``, e.g. from self-supervised
      pretraining): the export's preprocessing, embedding recipe and timm arguments, its architecture checked
      against the name, and its weights checked against the fingerprint it recorded.

    Loading is exact or fails (``CheckpointMismatchError`` listing the keys). ``timm_kwargs`` go to
    ``timm.create_model`` (e.g. ``img_size``, ``dynamic_img_size``).
    """
    return build_backbone(name, checkpoint, embedding, resize_to, **timm_kwargs)[0]


def build_backbone(
    name: str,
    checkpoint: str | None = None,
    embedding: str | None = None,
    resize_to: int | None = None,
    **timm_kwargs,
) -> tuple[Backbone, LoadReport | None]:
    """``create_backbone`` plus the report of what was loaded and dropped (None for random initialisation)."""
    entry = get_entry(name)
    if entry is None:
        check_architecture(name)
    arch, kwargs = (name, timm_kwargs) if entry is None else (entry.arch, entry_kwargs(entry, timm_kwargs))
    path = resolve_weights_file(entry, checkpoint) if entry is not None or checkpoint is not None else None
    state = read_checkpoint(path) if path is not None else None  # a bad file fails before the model is built
    exported = read_export(state, path) if state is not None else None
    if exported is not None:  # a medtransfer backbone export: its own architecture check and recipe
        check_export_arch(exported, arch, path)
        kwargs = export_kwargs(exported, kwargs, path)
    model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    if exported is not None:
        preprocessing, default_embedding = exported.preprocessing, exported.embedding
        layout = get_layout("medtransfer")
    elif entry is not None:
        preprocessing, default_embedding = entry.preprocessing, entry.embedding
        layout = get_layout(entry.layout)
    else:
        preprocessing, default_embedding, layout = timm_preprocessing(model), "pre_logits", None
    recipe = embedding or default_embedding
    check_recipe(recipe, model, name)
    report = None
    if state is not None:
        report = load_weights(model, state, path, layout)
        rank_zero_info(f"{name}: {report.summary()}")
    backbone = Backbone(model, name, preprocessing, embedding=recipe, resize_to=resize_to, arch=arch,
                        timm_kwargs=kwargs)
    _ = backbone.fingerprint  # of the weights as loaded, before any training changes them
    if exported is not None:
        check_export_fingerprint(exported, backbone, path)
    return backbone, report


def entry_kwargs(entry: WeightsEntry, timm_kwargs: dict) -> dict:
    """The entry's timm arguments (which make the architecture match the checkpoint) plus the caller's; the
    caller may not contradict the entry's."""
    conflicts = {k: v for k, v in timm_kwargs.items() if k in entry.timm_kwargs and entry.timm_kwargs[k] != v}
    if conflicts:
        raise ValueError(
            f"{entry.name} needs {entry.timm_kwargs} to match its checkpoint; backbone_kwargs {conflicts} "
            "would build a different network. Remove them."
        )
    return {**entry.timm_kwargs, **timm_kwargs}


def check_architecture(name: str) -> None:
    if name in timm.list_models():
        return
    arch = name.split(".")[0]
    if arch in timm.list_models():
        raise ValueError(
            f"unknown backbone {name!r}: not in the weights registry (medtransfer weights list shows its "
            f"{len(REGISTRY)} entries). For other weights of {arch!r}, name the architecture {arch!r} and "
            "pass the file as the checkpoint (model.init_args.checkpoint)."
        )
    raise ValueError(
        f"unknown backbone {name!r}: neither a registry name (medtransfer weights list) nor a timm "
        "architecture (timm.list_models())"
    )


def check_recipe(recipe: str, model: nn.Module, name: str) -> None:
    if recipe not in RECIPES:
        raise ValueError(f"unknown embedding recipe {recipe!r} for {name}; choose one of {sorted(RECIPES)}")
    if recipe == "cls_last4" and not hasattr(model, "get_intermediate_layers"):
        raise ValueError(f"embedding 'cls_last4' needs a Vision Transformer; {name} is not one "
                         "(use pre_logits)")


def timm_preprocessing(model: nn.Module) -> Preprocessing:
    cfg = model.pretrained_cfg
    return Preprocessing(
        mean=tuple(cfg.get("mean", Preprocessing.mean)),
        std=tuple(cfg.get("std", Preprocessing.std)),
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        interpolation=cfg.get("interpolation", "bilinear"),
    )
