"""Callbacks that draw explanation maps.

For a few test images per class after each test (``ExplanationMaps``), and for every image that
``medtransfer predict --explain`` scores (``PredictionExplanations``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn

from ..callbacks import log_figure
from ..outputs.plots import label_text
from ..runtime.folder import run_directory
from ..task import Task
from .explainer import Explainer
from .figures import explanation_pixels, pixels_figure, save_png
from .targets import ExplanationError

EXPLANATIONS_DIR = "explanations"
CHUNK = 16  # images explained at once: one forward and backward pass each
LONGEST_NAME = 100  # characters of an id or class name in a picture's file name (two fit in 255 bytes)


class ExplanationMaps(Callback):
    """Explanation maps of the first test images of each class, after each test.

    After each test (also the test after ``fit``), the first ``images_per_class`` test images of each class
    (multilabel: of each label present), in split order, so successive runs show the same images. Each map
    explains the predicted class (multilabel: the label the image was chosen for). Written as PNGs
    (``explanations/test_<class>_<k>_<id>.png`` in the run's folder) and to every logger that takes images
    (``test/explanations/<class>/<k>``). Opt in with
    ``--trainer.callbacks+=medtransfer.explain.ExplanationMaps`` or ``--explain true``.

    Args:
        images_per_class: test images drawn per class.
        method: ``auto`` (attention for ViTs, Grad-CAM otherwise), ``gradcam`` or ``attention``.
        layer: the module of each backbone's timm model to read (default: see docs/explanations.md).
        heads: attention maps: a panel per head after the mean over heads.
    """

    def __init__(self, images_per_class: int = 2, method: str = "auto", layer: str | None = None,
                 heads: bool = True) -> None:
        if images_per_class < 1:
            raise ExplanationError(
                f"ExplanationMaps: images_per_class must be 1 or more, got {images_per_class}")
        self.images_per_class = images_per_class
        self.heads = heads
        self.explainer = Explainer(method, layer)
        self.paths: list[Path] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """A method or layer that does not fit the model fails here, before any training."""
        self.explainer.targets(pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log_dir = Path(run_directory(trainer))  # a broadcast under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        try:
            self._draw(trainer, pl_module, log_dir)
        except ExplanationError as error:  # the test's metrics and results stand without the pictures
            rank_zero_warn(f"ExplanationMaps: no explanation maps for this run: {error}")

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, log_dir: Path) -> None:
        task: Task = pl_module.task
        dataset = split_images(trainer.datamodule, "test")
        picks = first_per_class(task, np.asarray(dataset.source.labels), self.images_per_class)
        items = [(cls, k, item) for cls, k, row in picks if (item := dataset[row]) is not None]
        self.paths = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            images = torch.stack([item["image"] for _, _, item in chunk])
            chosen = torch.tensor([cls for cls, _, _ in chunk]) if task.kind == "multilabel" else None
            explained = self.explainer.explain(pl_module, images, chosen)
            for row, (cls, k, item) in enumerate(chunk):
                heading = f"{item['id']}, true: {label_text(task, item['label'])}"
                name = task.class_names[cls]
                path = log_dir / EXPLANATIONS_DIR / f"test_{safe_name(name)}_{k}_{safe_name(item['id'])}.png"
                pixels = explanation_pixels(task, images[row], explained, row, heading, self.heads)
                log_figure(trainer, f"test/explanations/{name}/{k}", pixels_figure(pixels))
                save_png(pixels, path)
                self.paths.append(path)


class PredictionExplanations(Callback):
    """A map of every predicted image, for ``medtransfer predict --explain``.

    Each map is written next to the predictions file (``explanations/<id>[.png]`` in the run's folder), its
    path relative to that folder added to the batch's predictions as ``explanation`` (the CSV's
    ``explanation`` column). Each DDP rank draws its own images.

    Args:
        method, layer: as for ``ExplanationMaps``.
        heads: attention maps: a panel per head too (off: a picture per image of a large folder is then
            about half the size).
    """

    def __init__(self, method: str = "auto", layer: str | None = None, heads: bool = False) -> None:
        self.explainer = Explainer(method, layer)
        self.heads = heads
        self._log_dir = Path(".")
        self._dataset = None
        self._rows: dict[str, int] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """A method or layer that does not fit the model fails here, before any image is scored."""
        self.explainer.targets(pl_module)

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_dir = Path(run_directory(trainer))  # a broadcast under DDP: every rank asks, here
        self._dataset, self._rows = None, {}  # this run's images, read when first needed

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                             dataloader_idx: int = 0) -> None:
        if not isinstance(outputs, dict):
            return
        images = batch.get("image")
        if images is None:  # a frozen head's cached features: the images come from the datamodule
            images = self._images(trainer.datamodule, batch["id"])
        task: Task = pl_module.task
        explained = self.explainer.explain(pl_module, images)
        paths = []
        for row, sample_id in enumerate(batch["id"]):
            relative = Path(EXPLANATIONS_DIR) / png_name(sample_id)
            path = self._log_dir / relative
            save_png(explanation_pixels(task, images[row], explained, row, str(sample_id), self.heads), path)
            paths.append(relative.as_posix())
        outputs["explanation"] = paths

    def _images(self, datamodule, ids: list) -> torch.Tensor:
        """The unaugmented images of ``ids`` from the split that predict scores.

        That split is ``test``, as both ``MedicalDataModule`` and the feature stores serve it.
        """
        if self._dataset is None:
            self._dataset = split_images(datamodule, "test")
            self._rows = {str(sample_id): row for row, sample_id in enumerate(self._dataset.source.ids)}
        return torch.stack([self._dataset[self._rows[str(sample_id)]]["image"] for sample_id in ids])


def add_explanations(trainer: pl.Trainer, verb: str | None) -> None:
    """Add what ``--explain true`` adds to a run's callbacks (unless the run's callbacks already have one).

    Maps of test images for ``fit`` and ``test``, a map per image for ``predict``.
    """
    kinds = {"fit": ExplanationMaps, "test": ExplanationMaps, "predict": PredictionExplanations}
    kind = kinds.get(verb or "")
    if kind is None:
        raise ExplanationError(f"--explain draws maps for fit, test and predict, not for {verb}")
    if not any(isinstance(callback, kind) for callback in trainer.callbacks):
        trainer.callbacks.append(kind())


def split_images(datamodule, split: str):
    """A split's unaugmented images (of a ``MedicalDataModule``, or the one a feature-store module wraps)."""
    if not hasattr(datamodule, "dataset") or not hasattr(datamodule, "split_source"):
        raise ExplanationError(
            f"explanation maps read the {split} images through a MedicalDataModule, but the trainer's "
            f"datamodule is {type(datamodule).__name__}: remove ExplanationMaps from trainer.callbacks"
        )
    return datamodule.dataset(split, train_transform=False)


def first_per_class(task: Task, labels: np.ndarray, count: int) -> list[tuple[int, int, int]]:
    """``(class, k, row)``: the first ``count`` rows of each class (multilabel: with that label), in order."""
    picks = []
    for cls in range(task.num_classes):
        members = labels[:, cls] > 0.5 if task.kind == "multilabel" else labels == cls
        picks += [(cls, k, int(row)) for k, row in enumerate(np.flatnonzero(members)[:count])]
    return picks


def png_name(sample_id: object) -> str:
    """A sample's picture file: ``image0.png`` stays, ``scan.jpg`` becomes ``scan.jpg.png``."""
    name = safe_name(sample_id)
    return name if name.lower().endswith(".png") else f"{name}.png"


def safe_name(text: object) -> str:
    """A file-name-safe form of an id or class name.

    Where characters had to be replaced (``scans/a b.png`` -> ``scans_a_b.png-<8 hex digits>``) or a long
    one cut to ``LONGEST_NAME`` characters (a file name the file system takes, also with a class name beside
    it), a digest of the original keeps distinct ids apart.
    """
    text = str(text)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.") or "_"
    if safe == text and len(safe) <= LONGEST_NAME:
        return safe
    return f"{safe[:LONGEST_NAME]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
