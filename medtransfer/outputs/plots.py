"""Matplotlib figures for TensorBoard and the log directory: training images, ROC curves, confusion matrices,
reliability diagrams.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend), so they work in
headless jobs and under DDP.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..task import Task


def label_text(task: Task, label: torch.Tensor) -> str:
    """A sample's label as class names (``none`` for a multilabel sample without findings)."""
    if task.kind == "multilabel":
        names = [name for name, on in zip(task.class_names, label.round().long().tolist(), strict=True) if on]
        return "+".join(names) or "none"
    return task.class_names[int(label)]


def image_grid_figure(images: torch.Tensor, titles: list[str], max_images: int = 16) -> Figure:
    """Up to ``max_images`` uint8 ``3 x H x W`` images in a square grid, each titled (e.g. with its label)."""
    count = min(len(images), max_images)
    side = math.ceil(math.sqrt(count))
    figure = Figure(figsize=(2 * side, 2 * side), layout="constrained")
    axes = figure.subplots(side, side, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < count:
            ax.imshow(images[i].detach().cpu().permute(1, 2, 0).numpy())
            ax.set_title(titles[i], fontsize=8)
    return figure


def roc_figure(task: Task, fpr, tpr) -> Figure:
    """ROC curves from torchmetrics' ROC output: one curve for binary, one per class (one-vs-rest)
    otherwise."""
    curves = [(task.class_names[1], fpr, tpr)] if task.kind == "binary" else list(
        zip(task.class_names, fpr, tpr, strict=True))
    figure = Figure(figsize=(6, 6), layout="constrained")
    ax = figure.subplots()
    for name, x, y in curves:
        x, y = x.detach().cpu().float(), y.detach().cpu().float()
        area = float(torch.trapezoid(y, x)) if len(x) > 1 else float("nan")
        ax.plot(x.numpy(), y.numpy(), label=f"{name} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC (test)")
    ax.legend(loc="lower right", fontsize=8)
    return figure


def confusion_figure(task: Task, matrix: torch.Tensor) -> Figure:
    """One confusion matrix (rows: true class, columns: predicted), or one 2 x 2 matrix per class for
    multilabel."""
    matrix = matrix.detach().cpu().long()
    if task.kind == "multilabel":
        side = math.ceil(math.sqrt(task.num_classes))
        figure = Figure(figsize=(3 * side, 3 * side), layout="constrained")
        axes = figure.subplots(side, side, squeeze=False)
        for i, ax in enumerate(axes.flat):
            if i < task.num_classes:
                _draw_matrix(ax, matrix[i].numpy(), ["absent", "present"], task.class_names[i])
            else:
                ax.axis("off")
        return figure
    size = max(4.0, 0.8 * task.num_classes + 2)
    figure = Figure(figsize=(size, size), layout="constrained")
    _draw_matrix(figure.subplots(), matrix.numpy(), list(task.class_names), "confusion matrix (test)")
    return figure


def reliability_figure(task: Task, panels: list[tuple[str, object]]) -> Figure:
    """Reliability diagrams: per confidence bin, how often the prediction was right against the mean
    confidence (the diagonal is perfect calibration), with the share of predictions per bin below; one panel
    per ``(title, stats.calibration.Reliability)``, one per label for multilabel."""
    side = math.ceil(math.sqrt(len(panels)))
    figure = Figure(figsize=(3.6 * side, 3.6 * side), layout="constrained")
    axes = figure.subplots(side, side, squeeze=False)
    for ax, panel in zip(axes.flat, panels + [None] * (side * side - len(panels)), strict=True):
        if panel is None:
            ax.axis("off")
            continue
        name, bins = panel
        counts = bins.counts.copy()
        counts[-2] += counts[-1]  # a confidence of exactly 1 is drawn in the last bin
        filled = bins.counts > 0
        centres = (bins.edges[:-1] + bins.edges[1:]) / 2
        width = bins.edges[1] - bins.edges[0]
        ax.bar(centres, counts[:-1] / max(1.0, counts.sum()), width=width, color="lightgrey",
               label="share of predictions")
        ax.plot(bins.mean_confidence[filled], bins.frequency[filled], marker="o", label="observed")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name}: ECE {bins.ece:.3f}")
        ax.set_xlabel("confidence" if task.kind == "multiclass" else "predicted probability", fontsize=8)
        ax.set_ylabel("accuracy" if task.kind == "multiclass" else "observed frequency", fontsize=8)
        ax.legend(loc="best", fontsize=7)
    figure.suptitle("reliability (test)")
    return figure


def _draw_matrix(ax, matrix: np.ndarray, names: list[str], title: str) -> None:
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
