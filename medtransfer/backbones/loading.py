"""Exact loading: remap a checkpoint by its layout, then load it with ``strict=True`` or fail listing keys.

Every key of the model must come from the file (BatchNorm ``num_batches_tracked`` counters, which some
converted checkpoints lack and which never change a forward pass, are filled with zero and reported);
every key of the file must either load or be dropped by the layout's rules (and is then reported); every
shape must match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointMismatchError
from .layouts import Layout, describe_detected, detect_layout

MAX_LISTED = 20

Remapped = tuple[dict[str, torch.Tensor], list[str], list[str]]


@dataclass
class LoadReport:
    """What happened to each key of a checkpoint."""

    file: str
    layout: str
    layout_description: str
    container: str | None
    prefix: str
    loaded: int
    dropped: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"loaded {self.loaded} tensors from {self.file} (layout {self.layout}"
                f"{f', prefix {self.prefix!r}' if self.prefix else ''})")
        if self.dropped:
            text += f"; dropped {len(self.dropped)} non-backbone keys: {group_keys(self.dropped)}"
        if self.filled:
            text += f"; filled {len(self.filled)} missing BatchNorm num_batches_tracked counters with 0"
        return text


def load_weights(model: nn.Module, checkpoint: Mapping, path: str | Path, layout: Layout | None
                 ) -> LoadReport:
    """Load ``checkpoint`` (read from ``path`` by ``reading.read_checkpoint``) into ``model`` exactly.
    ``layout=None`` detects it (``format: auto``)."""
    if layout is None:
        try:
            layout = detect_layout(checkpoint, model)
        except CheckpointMismatchError as err:
            raise CheckpointMismatchError(f"{path}: {err}") from None
    selected = select_state_dict(checkpoint, layout, path)
    if selected is None:
        raise CheckpointMismatchError(
            f"{path}: expected the weights under {' or '.join(repr(c) for c in layout.containers)} "
            f"({layout.description}); the file's top-level keys are "
            f"{sorted(map(str, checkpoint))[:MAX_LISTED]}."
            f"\n  format auto-detection reads this file as: {describe_detected(checkpoint, model)}"
        )
    container, state = selected
    prefix = next((p for p in layout.prefixes if any(k.startswith(p) for k in state)), "")
    remapped, dropped, unexpected = remap(state, layout, prefix)
    model_state = model.state_dict()
    unexpected += [prefix + k for k in remapped if k not in model_state]
    missing = [k for k in model_state if k not in remapped]
    filled = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in filled]
    misshapen = [f"{k}: file {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
                 for k, v in remapped.items() if k in model_state and v.shape != model_state[k].shape]
    if missing or unexpected or misshapen:
        raise CheckpointMismatchError(
            mismatch_message(path, layout, prefix, missing, unexpected, misshapen, checkpoint, model)
        )
    if layout.check is not None:
        layout.check(checkpoint, model)
    for key in filled:
        remapped[key] = torch.zeros_like(model_state[key])
    model.load_state_dict(remapped, strict=True)
    loaded = len(remapped) - len(filled)
    return LoadReport(str(path), layout.name, layout.description, container, prefix, loaded, dropped, filled)


def select_state_dict(checkpoint: Mapping, layout: Layout, path: str | Path
                      ) -> tuple[str | None, Mapping] | None:
    """The layout's container of the backbone weights inside the file (None: not there)."""
    for container in layout.containers:
        if container is not None and isinstance(checkpoint.get(container), Mapping):
            return container, checkpoint[container]
    for key, reason in layout.refused.items():
        if key in checkpoint:
            raise CheckpointMismatchError(f"{path}: {reason}.")
    return (None, checkpoint) if None in layout.containers else None


def remap(state: Mapping, layout: Layout, prefix: str) -> Remapped:
    """Strip the LEADING prefix; split keys into loaded (renamed), dropped and unexpected."""
    remapped: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unexpected: list[str] = []
    for key, value in state.items():
        key = str(key)
        if layout.is_dropped(key) or (layout.drop_outside_prefix and not key.startswith(prefix)):
            dropped.append(key)
        elif key.startswith(prefix) and isinstance(value, torch.Tensor):
            remapped[key[len(prefix):]] = value
        else:
            unexpected.append(key)
    return remapped, dropped, unexpected


def mismatch_message(path, layout: Layout, prefix: str, missing: list[str], unexpected: list[str],
                     misshapen: list[str], checkpoint: Mapping, model: nn.Module) -> str:
    lines = [f"{path} does not fit the model exactly (layout {layout.name}: {layout.description}; "
             f"prefix stripped: {prefix!r}):"]
    for title, keys in (("missing from the file", missing), ("unexpected in the file", unexpected),
                        ("shape mismatch", misshapen)):
        if keys:
            listed = ", ".join(keys[:MAX_LISTED]) + (f", ... and {len(keys) - MAX_LISTED} more"
                                                     if len(keys) > MAX_LISTED else "")
            lines.append(f"  {len(keys)} {title}: {listed}")
    if layout.name != "auto":
        lines.append(f"  format auto-detection reads this file as: {describe_detected(checkpoint, model)}")
    lines.append("  Check that the file and the backbone name belong together (medtransfer weights list); "
                 "nothing was loaded.")
    return "\n".join(lines)


def group_keys(keys: list[str]) -> str:
    """``projection_head.* (6), prototypes.weight`` - dropped keys grouped by their first two components."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        group = ".".join(parts[:2]) + ".*" if len(parts) > 2 else key
        groups[group] = groups.get(group, 0) + 1
    return ", ".join(f"{g} ({n})" if n > 1 else g for g, n in groups.items())
