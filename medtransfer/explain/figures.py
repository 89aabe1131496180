"""One picture per explained image: the image, then each backbone's map over it (and, for attention, each
head's), under a heading with the sample, its true class and the explained class with its probability.

Pictures are composed as pixel arrays (numpy, and Pillow for the text): about a hundred times faster than a
matplotlib layout, which matters when ``predict --explain`` draws one per image of a large folder."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ..task import Task
from .explainer import ExplainedBatch

PANEL = 224  # side of each panel, pixels (images are scaled to it, keeping their aspect ratio)
COLUMNS = 4  # panels per row
ALPHA = 0.45  # opacity of a map over its image
TITLE_LINES, HEADING_LINES = 2, 2  # text rows above each panel, and above the whole picture
LINE = 16  # pixels per text row
MARGIN = 6


def scaled_map(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An ``h x w`` map upsampled (bilinear) to ``size`` and scaled to [0, 1] within this image (0 the
    weakest, 1 the strongest evidence or attention here; nothing about other images). A constant map is 0."""
    up = F.interpolate(raw[None, None].float().cpu(), size=size, mode="bilinear", align_corners=False)[0, 0]
    low, span = up.min(), up.max() - up.min()
    return (up - low) / span if span > 0 else torch.zeros_like(up)


def prediction_text(task: Task, probs: torch.Tensor, cls: int) -> str:
    """The explained class and the model's probability of it (binary: 1 - p for the negative class)."""
    p = float(probs) if task.kind == "binary" else float(probs[cls])
    if task.kind == "binary" and cls == 0:
        p = 1 - p
    return f"{task.class_names[cls]} (p={p:.2f})"


def explanation_pixels(task: Task, image: torch.Tensor, explained: ExplainedBatch, row: int,
                       heading: str, heads: bool = True) -> np.ndarray:
    """``H x W x 3`` uint8 picture of sample ``row`` of ``explained``; ``image`` is its uint8 ``3 x H x W``
    image and ``heading`` the line above the explained class (its id, its true class). ``heads``: a panel
    per attention head after the mean over heads."""
    size = _panel_size(tuple(image.shape[-2:]))
    base = F.interpolate(image[None].float().cpu(), size=size, mode="bilinear", align_corners=False)[0]
    base = base.clamp(0, 255).permute(1, 2, 0).numpy() / 255
    cls = int(explained.classes[row])
    panels: list[tuple[str, torch.Tensor | None]] = [("image", None)]
    for maps in explained.maps:
        if maps.method == "gradcam":
            title = f"Grad-CAM: {task.class_names[cls]}\n{maps.backbone} {maps.layer}"
            panels.append((title, maps.maps[row]))
        else:
            per_head = maps.heads[row]
            panels.append((f"CLS attention, mean of {len(per_head)} heads\n{maps.backbone} {maps.layer}",
                           maps.maps[row]))
            if heads:
                panels += [(f"head {h}", head) for h, head in enumerate(per_head)]
    columns = min(COLUMNS, len(panels))
    cell_h, cell_w = size[0] + TITLE_LINES * LINE + MARGIN, size[1] + MARGIN
    top = HEADING_LINES * LINE + MARGIN
    canvas = Image.new("RGB", (columns * cell_w + MARGIN, top + math.ceil(len(panels) / columns) * cell_h),
                       "white")
    draw = ImageDraw.Draw(canvas)
    what = "label" if task.kind == "multilabel" else "predicted"
    prediction = prediction_text(task, explained.probabilities[row], cls)
    draw.multiline_text((MARGIN, MARGIN // 2), f"{heading}\n{what}: {prediction}", fill="black",
                        font=_font(13), spacing=2)
    for index, (title, raw) in enumerate(panels):
        x = MARGIN + (index % columns) * cell_w
        y = top + (index // columns) * cell_h
        draw.multiline_text((x, y), title, fill="black", font=_font(12), spacing=2)
        canvas.paste(Image.fromarray(_overlay(base, raw, size)), (x, y + TITLE_LINES * LINE))
    return np.asarray(canvas)


def pixels_figure(pixels: np.ndarray, dpi: int = 100) -> Figure:
    """A matplotlib figure showing ``pixels`` at their size, for the loggers that take figures."""
    figure = Figure(figsize=(pixels.shape[1] / dpi, pixels.shape[0] / dpi), dpi=dpi)
    figure.figimage(pixels, 0, 0)
    return figure


def save_png(pixels: np.ndarray, path) -> None:
    Image.fromarray(pixels).save(path)


def _overlay(base: np.ndarray, raw: torch.Tensor | None, size: tuple[int, int]) -> np.ndarray:
    if raw is None:
        return (base * 255).astype(np.uint8)
    heat = colormaps["jet"](scaled_map(raw, size).numpy())[..., :3]
    return (((1 - ALPHA) * base + ALPHA * heat) * 255).astype(np.uint8)


def _panel_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = PANEL / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()
