"""Checkpoint layouts: where a published checkpoint keeps the backbone's weights and what else it holds.

A layout says which top-level entry holds the state dict (``state_dict``, DINO's ``teacher``), which LEADING
prefix the backbone's keys carry (``module.``, ``module.encoder_q.``; only ever stripped from the start of a
key), and which other keys are known not to be backbone weights (projection heads, momentum encoders,
classifiers): those are dropped and reported. medtransfer's own backbone exports (``export.py``) are
recognised by their ``format`` key. Anything else that does not fit the model is an error
(``loading.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from torch import nn

from .errors import CheckpointMismatchError

EXPORT_FORMAT = "medtransfer.backbone/1"  # export.py writes it; kept here so layouts stay import-light

Check = Callable[[Mapping, nn.Module], None]


@dataclass(frozen=True)
class Layout:
    """How one kind of checkpoint file holds a backbone.

    Args:
        name: the layout's name (registry entries refer to it).
        description: one line for reports and errors.
        containers: top-level keys that may hold the state dict, tried in order; ``None`` means the file's
            dict is itself the state dict.
        refused: top-level keys that mean the wrong weights (DINO's ``student``), with the reason.
        prefixes: candidate leading prefixes of the backbone keys; the first that some key starts with is
            used.
        drop: ``fnmatch`` patterns of full key names (before stripping) known not to be backbone weights.
        drop_outside_prefix: keys outside the prefix are other modules of a training wrapper (a
            LightningModule's heads) and are dropped rather than unexpected.
        check: extra validation against the raw checkpoint and the model (e.g. MoCo v3 ViT attention heads).
    """

    name: str
    description: str
    containers: tuple[str | None, ...] = (None,)
    refused: Mapping[str, str] = field(default_factory=dict)
    prefixes: tuple[str, ...] = ("",)
    drop: tuple[str, ...] = ()
    drop_outside_prefix: bool = False
    check: Check | None = None

    def is_dropped(self, key: str) -> bool:
        return any(fnmatchcase(key, pattern) for pattern in self.drop)


def check_mocov3_heads(checkpoint: Mapping, model: nn.Module) -> None:
    """MoCo v3 ViTs use 12 attention heads at every size (timm's ViT-S has 6). Heads do not change any
    weight's shape, so a strict load would not notice: check the model that receives the weights."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not len(blocks):
        return
    heads = blocks[0].attn.num_heads
    if heads != MOCOV3_VIT_HEADS:
        arch = checkpoint.get("arch", "a MoCo v3 ViT")
        raise CheckpointMismatchError(
            f"this MoCo v3 checkpoint ({arch}) was trained with {MOCOV3_VIT_HEADS} attention heads, but the "
            f"model has {heads}: timm's vit_small builds 6, and the weights would load with the same shapes "
            "yet compute something else. Use the registry name vit_small_patch16_224.mocov3, or pass the "
            f"timm argument num_heads={MOCOV3_VIT_HEADS} (model.init_args.backbone_kwargs: "
            f"{{num_heads: {MOCOV3_VIT_HEADS}}})."
        )


MOCOV3_VIT_HEADS = 12

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("torchvision", "torchvision state dict (classifier fc.* dropped)", drop=("fc.*",)),
        Layout("simclr_converted", "SimCLR v1 converted to PyTorch: {'state_dict': ...} (fc.* dropped)",
               containers=("state_dict",), drop=("fc.*",)),
        Layout("bolts_simclr", "Lightning Bolts SimCLR checkpoint: state_dict, backbone under encoder.",
               containers=("state_dict",), prefixes=("encoder.",),
               drop=("encoder.fc.*", "projection.*", "*evaluator*")),
        Layout("swav", "SwAV: flat state dict under module. (projection_head, prototypes dropped)",
               prefixes=("module.",), drop=("module.projection_head.*", "module.prototypes.*")),
        Layout("dino", "DINO: released backbone state dict, or a training checkpoint.pth (teacher only)",
               containers=("teacher", None),
               refused={"student": "DINO evaluates the TEACHER network; this checkpoint has a 'student' "
                                   "but no 'teacher' entry, and the student's weights are not the published "
                                   "ones"},
               prefixes=("module.backbone.", "backbone."), drop=("head.*", "module.head.*", "fc.*")),
        Layout("mocov2", "MoCo v1/v2 checkpoint: state_dict, backbone under module.encoder_q.",
               containers=("state_dict",), prefixes=("module.encoder_q.",),
               drop=("module.encoder_q.fc.*", "module.encoder_k.*", "module.queue", "module.queue_ptr")),
        Layout("mocov3", "MoCo v3 checkpoint: state_dict, backbone under module.base_encoder.",
               containers=("state_dict",), prefixes=("module.base_encoder.",),
               drop=("module.base_encoder.fc.*", "module.base_encoder.head.*", "module.momentum_encoder.*",
                     "module.predictor.*"),
               check=check_mocov3_heads),
        Layout("byol_converted", "BYOL converted to PyTorch: flat state dict (fc.* dropped)", drop=("fc.*",)),
        Layout("barlowtwins", "Barlow Twins: flat backbone state dict", drop=("fc.*",)),
        Layout("medtransfer", "medtransfer backbone export (self-supervised pretraining): the backbone's "
               "state dict alone, with its architecture and preprocessing", containers=("state_dict",)),
    )
}


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {name!r}; known layouts: {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def detect_layout(checkpoint: Mapping, model: nn.Module) -> Layout:
    """``format: auto``: recognise a published layout by its signature keys, else find the leading prefix that
    maps the most keys onto ``model`` (DDP ``module.``, lightly ``backbone.`` / ``backbone.vit.``, any
    LightningModule attribute, ``torch.compile``'s ``_orig_mod.``)."""
    if checkpoint.get("format") == EXPORT_FORMAT:
        return LAYOUTS["medtransfer"]
    if "teacher" in checkpoint or "student" in checkpoint:
        return LAYOUTS["dino"]
    state, container = _find_state_dict(checkpoint)
    keys = [str(k) for k in state]
    if container == "state_dict":
        if any(k.startswith("module.encoder_q.") for k in keys):
            return LAYOUTS["mocov2"]
        if any(k.startswith("module.base_encoder.") for k in keys):
            return LAYOUTS["mocov3"]
    swav_heads = ("module.prototypes.", "module.projection_head.")
    if container is None and any(k.startswith(swav_heads) for k in keys):
        return LAYOUTS["swav"]
    prefix = best_prefix(keys, set(model.state_dict()))
    lightning = "pytorch-lightning_version" in checkpoint
    classifiers = _classifier_names(model)
    return Layout(
        "auto",
        f"{'Lightning checkpoint' if lightning else 'state dict'}"
        f"{f' under {container!r}' if container else ''}, backbone keys under {prefix or 'no prefix'!r}",
        containers=(container,),
        prefixes=(prefix,),
        drop=tuple(f"{prefix}{name}.*" for name in classifiers),
        drop_outside_prefix=lightning,
    )


def describe_detected(checkpoint: Mapping, model: nn.Module) -> str:
    """What ``format: auto`` makes of a file, for hints in error messages."""
    try:
        layout = detect_layout(checkpoint, model)
    except CheckpointMismatchError as err:
        return str(err)
    return f"{layout.name}: {layout.description}"


def _find_state_dict(checkpoint: Mapping) -> tuple[Mapping, str | None]:
    for key in ("state_dict", "model"):
        value = checkpoint.get(key)
        if isinstance(value, Mapping) and value:
            return value, key
    return checkpoint, None


def best_prefix(keys: list[str], model_keys: set[str]) -> str:
    """The leading prefix (whole dotted components) whose stripping maps the most keys onto ``model_keys``."""
    counts: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i]) + ("." if i else "")
            if key[len(prefix):] in model_keys:
                counts[prefix] = counts.get(prefix, 0) + 1
    if not counts:
        raise CheckpointMismatchError(
            "no key of this checkpoint names a weight of the model, under any leading prefix; first keys: "
            f"{keys[:5]}, model keys start with {sorted(model_keys)[:5]}. Is it a checkpoint of this "
            "architecture?"
        )
    return max(counts, key=lambda p: (counts[p], -len(p)))


def _classifier_names(model: nn.Module) -> tuple[str, ...]:
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)
