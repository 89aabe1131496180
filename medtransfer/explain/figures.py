"""One picture per explained image: the image, then each backbone's map over it (and, for attention, each
head's), under a heading with the sample, its true class and the explained class with its probability.

Pictures are composed as pixel arrays (numpy, and Pillow for the text): about a hundred times faster than a
matplotlib layout, which matters when ``predict --explain`` draws one per image of a large folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ..task import Task
from ..utils.atomic import atomic_path
from .explainer import ExplainedBatch

PANEL = 224  # side of each panel, pixels (images are scaled to it, keeping their aspect ratio)
COLUMNS = 4  # panels per row
ALPHA = 0.45  # opacity of a map over its image
TITLE_LINES, HEADING_LINES = 2, 2  # text rows above each panel, and above the whole picture
LINE = 16  # pixels per text row
MARGIN = 6
# A map whose spread is at most this fraction of its peak is drawn flat. Noise sits far below it: bilinear
# upsampling of a constant varies by a few float32 ulps (measured: <= 4e-7 of the value), and Grad-CAM's sum
# over C channels rounds by at most about C * 1.2e-7 (2.5e-4 for 2048 channels). Real structure this faint
# cannot be drawn honestly: on a colour scale from 0 to the peak it is under a quarter of one of the colour
# map's 256 levels.
FLAT_SPREAD = 1e-3


def scaled_map(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An ``h x w`` map upsampled (bilinear) to ``size`` and scaled to [0, 1] within this image (0 the
    weakest, 1 the strongest evidence or attention here; nothing about other images). A flat map is all 0:
    stretching its rounding noise to the full colour range would draw structure that is not there."""
    up = F.interpolate(raw[None, None].float().cpu(), size=size, mode="bilinear", align_corners=False)[0, 0]
    if is_flat(up):
        return torch.zeros_like(up)
    low = up.min()
    return (up - low) / (up.max() - low)


def is_flat(values: torch.Tensor) -> bool:
    """Whether a map is constant up to float rounding, judged on its own values before any scaling: its
    spread (max - min) is at most ``FLAT_SPREAD`` of its largest magnitude (an all-zero map is flat)."""
    low, high = float(values.min()), float(values.max())
    return high - low <= FLAT_SPREAD * max(abs(low), abs(high))


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
        heat = None if raw is None else scaled_map(raw, size)
        flat = heat is not None and not bool(heat.any())
        draw.multiline_text((x, y), _flat_title(title) if flat else title, fill="black", font=_font(12),
                            spacing=2)
        canvas.paste(Image.fromarray(_overlay(base, heat)), (x, y + TITLE_LINES * LINE))
    return np.asarray(canvas)


def pixels_figure(pixels: np.ndarray, dpi: int = 100) -> Figure:
    """A matplotlib figure showing ``pixels`` at their size, for the loggers that take figures."""
    figure = Figure(figsize=(pixels.shape[1] / dpi, pixels.shape[0] / dpi), dpi=dpi)
    figure.figimage(pixels, 0, 0)
    return figure


def save_png(pixels: np.ndarray, path: Path) -> None:
    """The picture as a PNG at ``path`` (its folder made if missing), whole or not at all; a write the file
    system refuses is an ``OutputWriteError`` naming the file."""
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _overlay(base: np.ndarray, heat: torch.Tensor | None) -> np.ndarray:
    """The image with a [0, 1] map (``scaled_map``) over it in colour; the image alone without one."""
    if heat is None:
        return (base * 255).astype(np.uint8)
    colours = colormaps["jet"](heat.numpy())[..., :3]
    return (((1 - ALPHA) * base + ALPHA * colours) * 255).astype(np.uint8)


def _flat_title(title: str) -> str:
    """A panel's title marked flat on its first line: the all-blue map means "nowhere in particular", not
    "no evidence"."""
    first, _, rest = title.partition("\n")
    return f"{first} (flat)" + (f"\n{rest}" if rest else "")


def _panel_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = PANEL / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()
