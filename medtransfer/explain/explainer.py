"""Explanation maps of a medtransfer model's decisions on uint8 images, one per backbone it holds.

The maps are Grad-CAM (CNNs, or a ViT when asked) or the last block's class-token attention (ViTs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ..backbones.backbone import Backbone
from ..lightning_modules.frozen import FrozenBackboneModule
from ..lightning_modules.metrics import probabilities
from ..task import Task
from .attention import cls_attention, recorded_attention
from .coarse import coarse_warning, drawn_layer, map_size
from .gradcam import channels_first, grad_cam, recorded_output, tokens_to_grid
from .targets import ExplanationError, Target, choose_target


@dataclass
class BackboneMaps:
    """One backbone's maps of a batch, at the resolution of the layer they come from (not normalised)."""

    backbone: str
    method: str  # "gradcam" or "attention"
    layer: str
    maps: torch.Tensor  # B x h x w: Grad-CAM, or the mean over heads of the class token's attention
    heads: torch.Tensor | None  # B x heads x h x w: attention per head (attention only)


@dataclass
class ExplainedBatch:
    """What ``Explainer.explain`` returns: the probabilities, the class each map explains, the maps."""

    probabilities: torch.Tensor  # as ``metrics.probabilities``: B (binary) or B x C
    classes: torch.Tensor  # B: the class (multilabel: the label) each Grad-CAM map explains
    maps: list[BackboneMaps]


class Explainer:
    """Makes maps for a ``TaskModule`` (Finetune, LinearProbe, DVME, ...) on a batch of uint8 images.

    Args:
        method: ``auto`` (attention for ViTs, Grad-CAM otherwise), ``gradcam`` or ``attention``.
        layer: the module to read, by its dotted name inside each backbone's timm model (e.g. ``layer3``,
            ``stages.2``, ``blocks.5.attn``); default: see ``targets.choose_target``, and for a CNN whose last
            stage's map would be under 4 x 4 at the image size, the latest earlier stage that is not
            (``coarse.py``: a warning says so).
    """

    def __init__(self, method: str = "auto", layer: str | None = None) -> None:
        self.method = method
        self.layer = layer
        self._warned: set[str] = set()

    def targets(self, model: nn.Module) -> list[tuple[Backbone, Target]]:
        backbones = backbones_of(model)
        if not backbones:
            raise ExplanationError(f"{type(model).__name__} holds no backbone whose maps could be drawn")
        return [(b, choose_target(b.model, self.method, self.layer)) for b in backbones]

    def explain(self, model: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None
                ) -> ExplainedBatch:
        """Maps of ``images`` for ``classes``, one set per backbone of ``model``.

        The model's train/eval modes and ``requires_grad`` flags are the same afterwards, no parameter's
        ``.grad`` changes, and BatchNorm statistics never move.

        Args:
            model: a ``TaskModule`` (Finetune, LinearProbe, DVME, ...).
            images: uint8 ``B x 3 x H x W``.
            classes: ``B`` classes to explain (default: the predicted class; multilabel: the most probable
                label).

        Returns:
            The model's probabilities, the class each map explains, and each backbone's maps.
        """
        task: Task = model.task
        targets = self.targets(model)
        device = next(model.parameters()).device
        with explanation_mode(model), ExitStack() as stack:
            inputs = images.to(device).clone().float().requires_grad_(True)
            records = [layer_records(stack, target) for _, target in targets]
            logits = image_logits(model, inputs)
            missing = [t.layer for (_, t), record in zip(targets, records, strict=True)
                       if not record[t.layer]]
            if missing:
                raise ExplanationError(f"the model's forward pass never ran the layers {missing}")
            probs = probabilities(task, logits.detach())
            # a clone: a tensor made under Lightning's inference mode cannot take part in autograd
            classes = predicted_classes(task, probs) if classes is None else classes.to(device).long().clone()
            drawn = [drawn_layer(t, record) for (_, t), record in zip(targets, records, strict=True)]
            read = [r[layer][-1] for (_, t), r, layer in zip(targets, records, drawn, strict=True)
                    if t.method == "gradcam"]
            gradients = iter(gradients_of(class_scores(task, logits, classes), read, model) if read else [])
            maps = [backbone_maps(backbone, target, layer, record[layer][-1], inputs.shape[-2:],
                                  None if target.method == "attention" else next(gradients))
                    for (backbone, target), record, layer in zip(targets, records, drawn, strict=True)]
        for (_, target), record, found in zip(targets, records, maps, strict=True):
            self._warn_if_coarse(target, record, found, tuple(images.shape[-2:]))
        return ExplainedBatch(probs, classes, maps)

    def _warn_if_coarse(self, target: Target, records: dict[str, list[torch.Tensor]], found: BackboneMaps,
                        image_size: tuple[int, int]) -> None:
        """Warns, once per message, where the target layer's map is coarser than ``MIN_MAP_SIDE``."""
        drawn_size = (int(found.maps.shape[-2]), int(found.maps.shape[-1]))
        own = drawn_size if found.layer == target.layer else map_size(target, records[target.layer][-1])
        message = coarse_warning(target, found.backbone, own, found.layer, drawn_size, image_size)
        if message is not None and message not in self._warned:
            self._warned.add(message)
            rank_zero_warn(message)


def layer_records(stack: ExitStack, target: Target) -> dict[str, list[torch.Tensor]]:
    """What each layer a map may be drawn from records in the forward pass.

    The attention weights of an attention target, or the outputs of a Grad-CAM target's layer and of the
    earlier stages it may fall back to.
    """
    if target.method == "attention":
        return {target.layer: stack.enter_context(recorded_attention(target.module))}
    return {name: stack.enter_context(recorded_output(module)) for name, module in target.readable()}


def gradients_of(scores: torch.Tensor, activations: list[torch.Tensor], model: nn.Module) -> tuple:
    """The summed scores' gradient with respect to each activation (None where one does not reach them)."""
    if not scores.requires_grad:
        raise ExplanationError(
            f"Grad-CAM needs class scores that depend differentiably on the image, but "
            f"{type(model).__name__} computes them without gradients (kNN votes): use a ViT backbone, whose "
            "attention maps need none"
        )
    try:
        return torch.autograd.grad(scores.sum(), activations, allow_unused=True)
    except RuntimeError as error:
        if "Inference tensors" not in str(error):
            raise
        raise ExplanationError(
            f"Grad-CAM needs gradients through {type(model).__name__}, but part of it was built under "
            "Lightning's inference mode: run with --trainer.inference_mode false (or use method 'attention' "
            "for a ViT, which needs no gradients)"
        ) from error


def backbone_maps(backbone: Backbone, target: Target, layer: str, recorded: torch.Tensor, size: torch.Size,
                  gradient: torch.Tensor | None) -> BackboneMaps:
    """One backbone's maps from what ``layer`` recorded.

    ``layer`` is the target's, or the earlier stage it fell back to; it recorded attention weights, or the
    layer's output and the scores' gradient with respect to it.
    """
    grid = patch_grid(backbone, size)
    if target.method == "attention":
        heads = cls_attention(recorded.detach().float(), prefix_tokens(backbone), grid)
        return BackboneMaps(backbone.name, "attention", layer, heads.mean(dim=1), heads)
    if gradient is None:  # the layer does not reach the score: no evidence anywhere
        gradient = torch.zeros_like(recorded)
    if recorded.dim() == 3:  # a ViT's tokens
        recorded = tokens_to_grid(recorded, prefix_tokens(backbone), grid)
        gradient = tokens_to_grid(gradient, prefix_tokens(backbone), grid)
    else:
        recorded = channels_first(recorded, target.channels_last)
        gradient = channels_first(gradient, target.channels_last)
    cam = grad_cam(recorded.detach().float(), gradient.float())
    return BackboneMaps(backbone.name, "gradcam", layer, cam, None)


def backbones_of(model: nn.Module) -> list[Backbone]:
    """Every backbone the model holds, in module order (one for most models, several for DVME)."""
    return [m for m in model.modules() if isinstance(m, Backbone)]


@contextmanager
def explanation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and gradients on (also inside Lightning's inference mode) for the duration.

    Afterwards every module has the train/eval mode it had before.
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for module, training in modes.items():
            module.training = training


def image_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's logits of float images with the graph through its backbones kept.

    A frozen head is given its backbones' embeddings as ``features`` (its own image path runs them without
    gradients).
    """
    frozen = model.feature_backbones() if isinstance(model, FrozenBackboneModule) else []
    if frozen:
        return model.logits({"image": images, "features": [b(images) for b in frozen]})
    return model.logits({"image": images})


def predicted_classes(task: Task, probs: torch.Tensor) -> torch.Tensor:
    """The predicted class per sample; for multilabel the most probable label."""
    if task.kind == "binary":
        return (probs >= 0.5).long()
    return probs.argmax(dim=1)


def class_scores(task: Task, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``B`` scores whose gradients Grad-CAM reads: the logit of each sample's class.

    Binary: the logit for the positive class, its negative for the negative class.
    """
    if task.kind == "binary":
        logit = logits.reshape(len(logits), -1)[:, 0]
        return torch.where(classes == 1, logit, -logit)
    return logits.gather(1, classes.view(-1, 1)).squeeze(1)


def prefix_tokens(backbone: Backbone) -> int:
    """Class and register tokens ahead of a ViT's patch tokens."""
    return int(getattr(backbone.model, "num_prefix_tokens", 1))


def patch_grid(backbone: Backbone, size: torch.Size) -> tuple[int, int]:
    """A ViT's patch grid for images of ``size`` (after the backbone's resize); unused for CNNs."""
    embed = getattr(backbone.model, "patch_embed", None)
    if embed is None:
        return (0, 0)
    if backbone.resize_to is not None:
        size = (backbone.resize_to, backbone.resize_to)
    if hasattr(embed, "dynamic_feat_size"):
        return tuple(int(s) for s in embed.dynamic_feat_size(tuple(int(s) for s in size)))
    return tuple(int(s) for s in embed.grid_size)
