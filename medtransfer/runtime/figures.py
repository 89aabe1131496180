"""Figures to every logger that takes images: TensorBoard (``add_figure``), W&B (``log_image``), MLflow
(``log_figure``, an artifact ``figures/<tag>.png`` of the run). Loggers without images (CSV) get none; the
callbacks save each figure as a PNG in the run's folder as well (``medtransfer.runtime.folder``), whatever the
logger."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from pytorch_lightning.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

IMAGE_LOGGERS = (TensorBoardLogger, WandbLogger, MLFlowLogger)


def takes_images(logger: Logger) -> bool:
    return isinstance(logger, IMAGE_LOGGERS)


def send_figure(logger: Logger, tag: str, figure: Figure, step: int) -> None:
    """``figure`` to ``logger`` under ``tag`` at ``step``; nothing for a logger that takes no images. On
    rank zero only (the loggers' experiments exist there)."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_figure(tag, figure, global_step=step, close=False)
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[figure_pixels(figure)], step=step)
    elif isinstance(logger, MLFlowLogger):
        logger.experiment.log_figure(logger.run_id, figure, f"figures/{tag}.png")


def figure_pixels(figure: Figure, dpi: int = 100) -> np.ndarray:
    """The figure rendered as an RGB uint8 array (height x width x 3)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))
