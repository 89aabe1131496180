"""timm's pretrained weights by name, as timm names them: a pretrained tag (``resnet50.a1_in1k``,
``timm.list_pretrained()``) or a timm-format model on the Hugging Face Hub (``hf-hub:org/name``, e.g. a
medical foundation model).

timm's pretrained config gives the architecture, the preprocessing the weights expect and where the file is
published; ``hub.py`` finds or fetches the file (or the user gives it as the checkpoint, like timm's
``pretrained_cfg_overlay=dict(file=...)``). The file is read safely (``reading.py``), converted by the model's
own timm checkpoint filter where it has one (as timm does when it loads), and loaded exactly: only the
classifier, which a backbone does not have, is dropped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from .errors import CheckpointFormatError, WeightsNotFoundError
from .hub import hub_file, url_file
from .layouts import Layout
from .loading import LoadReport, load_weights

HF_HUB_PREFIX = "hf-hub:"
HUB_WEIGHTS_FILE = "pytorch_model.bin"  # timm's default name on the Hub; a safetensors twin is preferred
StateFilter = Callable[[dict, nn.Module], dict]


@dataclass(frozen=True)
class TimmWeights:
    """One set of timm weights: what builds the model and where its file is published."""

    name: str
    arch: str  # what timm.create_model builds: the tag itself, or the Hub config's architecture
    pretrained_cfg: dict
    model_args: dict = field(default_factory=dict)  # architecture arguments from a Hub model's config

    @property
    def hub_id(self) -> str | None:
        return self.pretrained_cfg.get("hf_hub_id") or None

    @property
    def url(self) -> str | None:
        return self.pretrained_cfg.get("url") or None

    def weights_filenames(self) -> tuple[str, ...]:
        """The Hub file names to look for, preferred first: the safetensors twin of timm's file, then it."""
        name = self.pretrained_cfg.get("hf_hub_filename") or HUB_WEIGHTS_FILE
        if not name.endswith(".bin"):
            return (name,)
        return (name.replace("pytorch_model", "model")[: -len(".bin")] + ".safetensors", name)

    def create_kwargs(self) -> dict:
        """What timm.create_model needs besides the architecture: a Hub model's config is not in timm."""
        return {"pretrained_cfg": dict(self.pretrained_cfg)} if self.name.startswith(HF_HUB_PREFIX) else {}


def find_timm_weights(name: str) -> TimmWeights | None:
    """The timm weights called ``name``, or None when it is not a pretrained tag or an ``hf-hub:`` name.
    An ``hf-hub:`` name reads the model's config.json (from the cache, else the Hub)."""
    if name.startswith(HF_HUB_PREFIX):
        return hub_model(name)
    if name not in timm.list_pretrained():
        return None
    return TimmWeights(name, name, get_pretrained_cfg(name).to_dict())


def hub_model(name: str) -> TimmWeights:
    hub_id = name[len(HF_HUB_PREFIX):]
    path = hub_file(name, hub_id, ("config.json",), checkpoint_hint=False)
    try:
        config = json.loads(Path(path).read_text())
        arch = str(config["architecture"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointFormatError(
            f"{name}: {path} is not a timm model config ({type(err).__name__}: {err}); hf-hub: names load "
            "models published in timm's format (a config.json with 'architecture' and 'pretrained_cfg')"
        ) from None
    if arch not in timm.list_models():
        raise CheckpointFormatError(f"{name}: its architecture {arch!r} is not in timm {timm.__version__}; "
                                    "upgrade timm (pip install -U timm)")
    model_args = dict(config.get("model_args") or {})
    model_args.pop("num_classes", None)  # a backbone has no classifier
    pretrained_cfg = {**(config.get("pretrained_cfg") or {}), "hf_hub_id": hub_id, "architecture": arch}
    return TimmWeights(name, arch, pretrained_cfg, model_args)


def resolve_timm_file(weights: TimmWeights, checkpoint: str | Path | None) -> Path:
    """The file to load: ``checkpoint`` when given (it must exist), else timm's file from the Hugging Face
    or torch hub cache, else a download; offline and missing fails, naming where the file should go."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"checkpoint file {path} does not exist (the weights file of "
                                       f"{weights.name}: {published_file(weights)})")
        return path
    if weights.hub_id is not None:
        return hub_file(weights.name, weights.hub_id, weights.weights_filenames())
    if weights.url is not None:
        return url_file(weights.name, weights.url)
    raise WeightsNotFoundError(f"{weights.name}: timm names no file for these weights; pass one as the "
                               "checkpoint (model.init_args.checkpoint)")


def published_file(weights: TimmWeights) -> str:
    if weights.hub_id is not None:
        return f"{weights.weights_filenames()[0]} of https://huggingface.co/{weights.hub_id.split('@')[0]}"
    return weights.url or "not published"


def load_timm_weights(model: nn.Module, checkpoint: Mapping, path: str | Path) -> LoadReport:
    """Load timm's weights file ``checkpoint`` into ``model`` (built with ``num_classes=0``) exactly,
    after the model's timm checkpoint filter; the classifier's weight and bias are dropped and reported."""
    state = dict(next((checkpoint[key] for key in ("state_dict", "model")
                       if isinstance(checkpoint.get(key), Mapping)), checkpoint))
    convert = checkpoint_filter(model)
    if convert is not None:
        with torch.no_grad():
            state = dict(convert(state, model))
    classifiers = model.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    layout = Layout("timm", "timm pretrained weights (the published state dict, timm's checkpoint filter "
                    "applied; classifier dropped)",
                    drop=tuple(f"{name}.{part}" for name in classifiers for part in ("weight", "bias")))
    return load_weights(model, state, path, layout)


def checkpoint_filter(model: nn.Module) -> StateFilter | None:
    """The function timm converts this model's published files with before loading them.

    timm passes it to its model builder, not to users; its model modules name it ``checkpoint_filter_fn``
    (tests/backbones/test_timm_weights.py checks that a ViT's is found). Where a module has none, files
    load as published.
    """
    module = sys.modules.get(type(model).__module__)
    if module is None or not module.__name__.startswith("timm.models."):
        return None
    return getattr(module, "checkpoint_filter_fn", None)
