"""A picture of the views pretraining trains on: one row per image, one column per view."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure


def views_figure(views: list[torch.Tensor], global_views: int, max_images: int = 8) -> Figure:
    """uint8 views (``B x 3 x S x S`` each) of the first ``max_images`` images, titled by view."""
    count = min(len(views[0]), max_images)
    figure = Figure(figsize=(1.6 * len(views), 1.6 * count), layout="constrained")
    axes = figure.subplots(count, len(views), squeeze=False)
    for column, view in enumerate(views):
        title = f"global {column + 1}" if column < global_views else f"local {column - global_views + 1}"
        for row in range(count):
            ax = axes[row, column]
            ax.imshow(view[row].detach().cpu().permute(1, 2, 0).numpy())
            ax.axis("off")
            if row == 0:
                ax.set_title(f"{title} ({view.shape[-1]} px)", fontsize=8)
    return figure
