"""Which layer of a backbone's timm model an explanation reads: chosen from the architecture, or named by the
user (``layer``, a dotted module name such as ``layer3`` or ``blocks.5.attn``)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import MedTransferError

METHODS = ("auto", "gradcam", "attention")
MIN_MAP_SIDE = 4  # a map with fewer cells on a side says next to nothing about where in the image it points


class ExplanationError(MedTransferError, ValueError):
    """An explanation that cannot be made as asked (unknown method or layer, a model without the layer)."""


@dataclass(frozen=True)
class Target:
    """An explanation method and the module it reads, by its dotted name inside the timm model."""

    method: str  # "gradcam" or "attention"
    layer: str
    module: nn.Module
    named: bool = False  # the user named the layer: it is kept even where its map is coarse
    channels_last: bool = False  # Grad-CAM layers output B x h x w x C (timm's output_fmt NHWC: Swin, ...)
    # a CNN's stages before its default layer, in model order: where the layer's map would be coarser than
    # MIN_MAP_SIDE, the map is drawn from the latest of them that is not
    earlier: tuple[tuple[str, nn.Module], ...] = ()

    def readable(self) -> tuple[tuple[str, nn.Module], ...]:
        """Every layer the map may be drawn from: the earlier stages, then the target's own."""
        return (*self.earlier, (self.layer, self.module))


def is_attention(module: nn.Module | None) -> bool:
    """A timm self-attention module whose weights can be recorded: it has a non-fused path that applies
    ``attn_drop`` to the softmaxed attention (``timm.layers.Attention`` and its relatives)."""
    return module is not None and all(hasattr(module, a) for a in ("fused_attn", "attn_drop", "num_heads"))


def choose_target(model: nn.Module, method: str = "auto", layer: str | None = None) -> Target:
    """The target in ``model`` (a timm model). ``auto``: the last block's attention for a ViT with a class
    token, Grad-CAM otherwise. Grad-CAM defaults to the last stage of a CNN (timm's ``feature_info``) and,
    for a ViT, to the input norm of its last block (the last block's own output reaches a class-token head
    only through the class token, so its patch tokens get no gradient). A default CNN target carries the
    stages before its layer, which the explainer falls back to where the map would be too coarse
    (``coarse.py``); a named layer is kept."""
    if method not in METHODS:
        raise ExplanationError(f"explanation method {method!r} is unknown: choose one of {list(METHODS)}")
    vit_attention = _last_block_attention(model)
    if method == "auto":
        class_token = getattr(model, "cls_token", None) is not None
        method = "attention" if vit_attention is not None and class_token and layer is None else "gradcam"
        if layer is not None and is_attention(_submodule(model, layer)):
            method = "attention"
    named = layer is not None
    if layer is None:
        layer = _default_layer(model, method, vit_attention)
    module = _submodule(model, layer)
    if method == "attention" and not is_attention(module):
        raise ExplanationError(
            f"attention maps need a timm attention module, but {layer!r} of {type(model).__name__} is a "
            f"{type(module).__name__}; name one such as 'blocks.<i>.attn', or use method 'gradcam'"
        )
    if method == "attention" and getattr(model, "cls_token", None) is None:
        raise ExplanationError(
            f"{type(model).__name__} has no class token, whose attention the maps show (windowed or pooled "
            "transformers such as Swin): use method 'gradcam' (with a layer that has a spatial output)"
        )
    earlier = () if named or method != "gradcam" else _stages_before(model, layer)
    channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
    return Target(method, layer, module, named, channels_last, earlier)


def _stages_before(model: nn.Module, layer: str) -> tuple[tuple[str, nn.Module], ...]:
    """The stages of timm's ``feature_info`` before ``layer`` (none when ``layer`` is not one of them)."""
    names = [entry.get("module") for entry in getattr(model, "feature_info", None) or []
             if isinstance(entry, dict)]
    if layer not in names:
        return ()
    return tuple((name, model.get_submodule(name)) for name in names[: names.index(layer)] if name)


def _last_block_attention(model: nn.Module) -> str | None:
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) and is_attention(
            getattr(blocks[-1], "attn", None)):
        return f"blocks.{len(blocks) - 1}.attn"
    return None


def _default_layer(model: nn.Module, method: str, vit_attention: str | None) -> str:
    if method == "attention":
        if vit_attention is None:
            raise ExplanationError(
                f"{type(model).__name__} has no transformer blocks with timm attention ('blocks.<i>.attn'): "
                "attention maps are for ViTs; use method 'gradcam', or name the attention module as layer"
            )
        return vit_attention
    if vit_attention is not None:
        return vit_attention.removesuffix(".attn") + ".norm1"
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1]
        name = last.get("module") if isinstance(last, dict) else None
        if name:
            return name
    convolutions = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ExplanationError(
            f"{type(model).__name__} has no convolution for Grad-CAM to read: name its layer (a module "
            "with a B x C x H x W output)"
        )
    return convolutions[-1]


def _submodule(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        children = [name for name, _ in model.named_children()]
        raise ExplanationError(
            f"{type(model).__name__} has no module {layer!r} to explain from; its top-level modules are "
            f"{children} (name a nested one with dots, e.g. 'layer4' or 'blocks.11.attn')"
        ) from None
