"""``create_backbone``: a name and an optional checkpoint to a Backbone.

The name is registry weights, timm's pretrained weights or any timm architecture; the Backbone's weights were
loaded exactly (``loading.py``) and fingerprinted before any training.
"""

from __future__ import annotations

import difflib

import timm
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from .backbone import Backbone
from .download import resolve_weights_file
from .embedding import RECIPES
from .errors import UnknownBackboneError
from .export import check_export_arch, check_export_fingerprint, export_kwargs, export_stem, read_export
from .layouts import get_layout
from .loading import load_weights
from .preprocessing import from_timm_cfg, with_normalisation
from .reading import read_checkpoint
from .registry import REGISTRY, WeightsEntry, get_entry
from .stem import apply_stem, check_small_stem_weights
from .timm_weights import HF_HUB_PREFIX, find_timm_weights, load_timm_weights, resolve_timm_file


def create_backbone(
    name: str,
    checkpoint: str | None = None,
    embedding: str | None = None,
    resize_to: int | None = None,
    stem: str | None = None,
    normalisation: dict | None = None,
    **timm_kwargs,
) -> Backbone:
    """A Backbone for ``name``.

    - a registry name (``resnet50.swav_in1k``, see ``medtransfer weights list``): its architecture,
      preprocessing and embedding recipe, with the weights from ``checkpoint`` if given, else the cache,
      else a download;
    - timm's pretrained weights, as timm names them (``resnet50.a1_in1k``, ``hf-hub:org/name``): timm's
      preprocessing for them, and their file from ``checkpoint`` if given, else the Hugging Face (or torch
      hub) cache, else a download (``timm_weights.py``);
    - a timm architecture (``resnet50``): random initialisation, or the weights of ``checkpoint`` in any
      layout that ``format: auto`` recognises (``layouts.detect_layout``);
    - with a medtransfer backbone export as ``checkpoint`` (``export.py``, e.g. from self-supervised
      pretraining): the export's preprocessing, embedding recipe, stem and timm arguments, its architecture
      checked against the name, and its weights checked against the fingerprint it recorded.

    Loading is exact or fails (``CheckpointMismatchError`` listing the keys); the backbone's ``load_report``
    says what was loaded and dropped (None for random initialisation). ``timm_kwargs`` go to
    ``timm.create_model`` (e.g. ``img_size``, ``dynamic_img_size``).

    Args:
        name: a registry name, timm's pretrained weights or a timm architecture (see above).
        checkpoint: a weights file or a medtransfer backbone export, instead of the cache or a download.
        embedding: the embedding recipe; default: the registry entry's or the export's, else ``pre_logits``.
        resize_to: the side images are resized to on the device before the model, if given.
        stem: ``imagenet`` (timm's) or ``small`` (3x3 stride-1 conv1, no max-pool: ResNets from random
            initialisation or from an export trained so; ``stem.py``); default: the export's, else imagenet.
        normalisation: ``{mean: [...], std: [...]}`` replacing the weights' own (``Preprocessing``).
        **timm_kwargs: more arguments of ``timm.create_model``.

    Raises:
        UnknownBackboneError: ``name`` is none of the above (the message lists the closest names).
        CheckpointMismatchError: the checkpoint's weights do not fit the architecture exactly.
        StemError: ``stem`` small for pretrained weights or for a network that is not a ResNet.
    """
    entry = get_entry(name)
    tagged = find_timm_weights(name) if entry is None else None
    if entry is None and tagged is None:
        check_architecture(name)
    named_weights = entry is not None or tagged is not None
    check_small_stem_weights(stem, name, pretrained=checkpoint is None and named_weights)  # before a download
    if entry is not None:
        arch, kwargs = entry.arch, entry_kwargs(entry, timm_kwargs)
        path = resolve_weights_file(entry, checkpoint)
    elif tagged is not None:
        arch, kwargs = tagged.arch, {**tagged.model_args, **timm_kwargs}
        path = resolve_timm_file(tagged, checkpoint)
    else:
        arch, kwargs = name, timm_kwargs
        path = resolve_weights_file(None, checkpoint) if checkpoint is not None else None
    state = read_checkpoint(path) if path is not None else None  # a bad file fails before the model is built
    exported = read_export(state, path) if state is not None else None
    if exported is not None:  # a medtransfer backbone export: its own architecture check and recipe
        check_export_arch(exported, arch, path)
        kwargs = export_kwargs(exported, kwargs, path)
    stem = export_stem(exported, stem, path) if exported is not None else stem or "imagenet"
    check_small_stem_weights(stem, name, pretrained=state is not None and exported is None)
    config = tagged.create_kwargs() if tagged is not None else {}
    model = timm.create_model(arch, pretrained=False, num_classes=0, **config, **kwargs)
    apply_stem(model, stem, name)
    if exported is not None:
        preprocessing, default_embedding = exported.preprocessing, exported.embedding
        layout = get_layout("medtransfer")
    elif entry is not None:
        preprocessing, default_embedding = entry.preprocessing, entry.embedding
        layout = get_layout(entry.layout)
    else:
        preprocessing, default_embedding, layout = from_timm_cfg(model.pretrained_cfg), "pre_logits", None
    preprocessing = with_normalisation(preprocessing, normalisation)
    recipe = embedding or default_embedding
    check_recipe(recipe, model, name)
    report = None
    if state is not None:
        if tagged is not None and exported is None:
            report = load_timm_weights(model, state, path)
        else:
            report = load_weights(model, state, path, layout)
        rank_zero_info(f"{name}: {report.summary()}")
    backbone = Backbone(model, name, preprocessing, embedding=recipe, resize_to=resize_to, arch=arch,
                        timm_kwargs=kwargs, stem=stem)
    backbone.load_report = report
    _ = backbone.fingerprint  # of the weights as loaded, before any training changes them
    if exported is not None:
        check_export_fingerprint(exported, backbone, path)
    return backbone


def entry_kwargs(entry: WeightsEntry, timm_kwargs: dict) -> dict:
    """The entry's timm arguments (which make the architecture match the checkpoint) plus the caller's.

    The caller may not contradict the entry's.
    """
    conflicts = {k: v for k, v in timm_kwargs.items() if k in entry.timm_kwargs and entry.timm_kwargs[k] != v}
    if conflicts:
        raise ValueError(
            f"{entry.name} needs {entry.timm_kwargs} to match its checkpoint; backbone_kwargs {conflicts} "
            "would build a different network. Remove them."
        )
    return {**entry.timm_kwargs, **timm_kwargs}


def check_backbone_name(name: str) -> None:
    """Refuse ``name`` as ``create_backbone`` would, without building anything or reading a file.

    For checks before a run (a benchmark's ``--dry_run``). An ``hf-hub:`` name passes: only the Hub can say.

    Raises:
        UnknownBackboneError: ``name`` is no registry name, timm pretrained tag or timm architecture (the
            message lists the closest names).
    """
    if names_weights(name):
        return
    check_architecture(name)


def names_weights(name: str) -> bool:
    """Whether ``name`` names weights: a registry name, a timm pretrained tag or an ``hf-hub:`` name.

    Anything else is a bare architecture that starts from a random initialisation. Reads no file.
    """
    return name.startswith(HF_HUB_PREFIX) or get_entry(name) is not None or name in timm.list_pretrained()


def check_architecture(name: str) -> None:
    """A plain timm architecture passes; anything else is unknown: one line with the closest names."""
    if name in timm.list_models():
        return
    close = closest_names(name)
    raise UnknownBackboneError(
        f"unknown backbone {name!r}: not a registry name, a timm pretrained tag (arch.tag), an hf-hub: name "
        f"or a timm architecture; closest: {', '.join(close) if close else 'none'} (all names: medtransfer "
        "weights list, and medtransfer weights list --timm for timm's tags)"
    )


def closest_names(name: str, count: int = 3) -> list[str]:
    """The most similar names; for an unknown tag of a known architecture, that architecture's weights."""
    arch, dot, _ = name.partition(".")
    same_arch = {n for n in (*REGISTRY, *timm.list_pretrained(f"{arch}.*")) if n.startswith(f"{arch}.")}
    if dot and same_arch:
        return difflib.get_close_matches(name, sorted(same_arch), n=count, cutoff=0.0)
    names = {*REGISTRY, *timm.list_pretrained(), *timm.list_models()}
    return difflib.get_close_matches(name, sorted(names), n=count, cutoff=0.5)


def check_recipe(recipe: str, model: nn.Module, name: str) -> None:
    """Refuse an unknown embedding recipe, or ``cls_last4`` on a model that is not a Vision Transformer."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown embedding recipe {recipe!r} for {name}; choose one of {sorted(RECIPES)}")
    if recipe == "cls_last4" and not hasattr(model, "get_intermediate_layers"):
        raise ValueError(f"embedding 'cls_last4' needs a Vision Transformer; {name} is not one "
                         "(use pre_logits)")
