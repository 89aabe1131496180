"""One figure per explained image: the image, then each backbone's map over it (and, for attention, each
head's), titled with the sample, its true and predicted class and the probability."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from ..task import Task
from .explainer import ExplainedBatch

COLUMNS = 4  # panels per row


def scaled_map(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An ``h x w`` map upsampled (bilinear) to the image's ``size`` and divided by its maximum: 1 is the
    strongest evidence or attention in this image, which says nothing about other images."""
    up = F.interpolate(raw[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    top = up.max()
    return up / top if top > 0 else up


def class_text(task: Task, index: int) -> str:
    return task.class_names[index]


def prediction_text(task: Task, probs: torch.Tensor, cls: int) -> str:
    """The explained class and its probability (binary: of that class, 1 - p for the negative one)."""
    p = float(probs) if task.kind == "binary" else float(probs[cls])
    if task.kind == "binary" and cls == 0:
        p = 1 - p
    return f"{class_text(task, cls)} (p={p:.2f})"


def explanation_figure(task: Task, image: torch.Tensor, explained: ExplainedBatch, row: int,
                       heading: str) -> Figure:
    """Figure of sample ``row`` of ``explained``; ``image`` is its uint8 ``3 x H x W`` image and ``heading``
    the line above the predicted class (its id, its true class)."""
    picture = image.detach().cpu().permute(1, 2, 0).numpy()
    size = tuple(image.shape[-2:])
    cls = int(explained.classes[row])
    panels: list[tuple[str, torch.Tensor | None]] = [("image", None)]
    for maps in explained.maps:
        if maps.method == "gradcam":
            title = f"Grad-CAM: {class_text(task, cls)}\n{maps.backbone} {maps.layer}"
            panels.append((title, maps.maps[row]))
        else:
            heads = maps.heads[row]
            panels.append((f"CLS attention, mean of {len(heads)} heads\n{maps.backbone} {maps.layer}",
                           maps.maps[row]))
            panels += [(f"head {h}", head) for h, head in enumerate(heads)]
    columns = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(2.6 * columns, 2.6 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, raw) in zip(axes.flat, panels, strict=False):
        ax.imshow(picture)
        if raw is not None:
            ax.imshow(scaled_map(raw.cpu(), size).numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    what = "label" if task.kind == "multilabel" else "predicted"
    prediction = prediction_text(task, explained.probabilities[row], cls)
    figure.suptitle(f"{heading}\n{what}: {prediction}", fontsize=9)
    return figure
