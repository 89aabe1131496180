"""SyntheticMedical: SYNTHETIC images (not medical data), so that everything works with no data on disk.

Every run, test and quickstart works with no data on disk. The structure is learnable, so metrics above chance
show that a pipeline really trains.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import ConfigValueError
from ..task import KINDS, Task
from .base import MedicalDataModule
from .config_values import check_choice, check_integer, config_key, is_number
from .sources import ArraySource, Source
from .transforms import Preset

FINDINGS = ("spot", "ring", "stripe", "patch")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class SyntheticMedical(MedicalDataModule):
    """Deterministic synthetic images on a noisy 'tissue' background, generated from ``seed``.

    - ``binary``: a dark blob ("lesion") is present or not; its contrast varies, so some are hard to see.
    - ``multiclass``: 5 ordinal grades; grade ``g`` shows ``g`` bright spots (like lesion counts in
      retinopathy grading). Ordinal, primary metric quadratic weighted kappa.
    - ``multilabel``: 4 independent findings (spot, ring, stripe, bright patch).

    Two consecutive images share a patient id, so patient-grouped fractions are exercised too.

    Args:
        kind: which task to generate.
        num_train, num_val, num_test: split sizes.
        native_size: side of the generated images before the datamodule's resize to ``image_size``.
        seed: the data seed (independent of the run seed).
        noise: standard deviation of the pixel noise (0-255 scale).
    """

    default_augmentation = "natural"

    def __init__(
        self,
        kind: Literal["binary", "multiclass", "multilabel"] = "binary",
        num_train: int = 512,
        num_val: int = 128,
        num_test: int = 256,
        native_size: int = 64,
        seed: int = 0,
        noise: float = 18.0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        image_size: int = 64,
        train_fraction: float = 1.0,
        fraction_seed: int = 0,
        augmentation: Preset | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, image_size, train_fraction, fraction_seed,
                         augmentation)
        check_generator_settings(num_train, num_val, num_test, native_size, seed, noise)
        self.kind = kind
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.native_size = native_size
        self.seed = seed
        self.noise = noise
        self.task = synthetic_task(kind)

    def data_fingerprint(self) -> dict:
        return {"dataset": self.name, "kind": self.kind, "sizes": self.sizes, "native_size": self.native_size,
                "seed": self.seed, "noise": self.noise}

    def build_sources(self) -> dict[str, Source]:
        return {split: self._generate(split, n) for split, n in self.sizes.items()}

    def _generate(self, split: str, n: int) -> ArraySource:
        images = np.empty((n, self.native_size, self.native_size, 3), dtype=np.uint8)
        labels = []
        for i in range(n):
            rng = np.random.default_rng([self.seed, SPLIT_CODES[split], i])
            label = self._draw_label(rng)
            images[i] = render(self.kind, label, self.native_size, self.noise, rng)
            labels.append(label)
        label_array = np.asarray(labels, dtype=np.float32 if self.kind == "multilabel" else np.int64)
        ids = [f"{split}-{i:06d}" for i in range(n)]
        groups = np.asarray([f"{split}-patient{i // 2:05d}" for i in range(n)])
        return ArraySource(images, label_array, ids, groups)

    def _draw_label(self, rng: np.random.Generator):
        if self.kind == "binary":
            return int(rng.random() < 0.5)
        if self.kind == "multiclass":
            return int(rng.choice(5, p=[0.35, 0.2, 0.2, 0.15, 0.1]))
        return (rng.random(len(FINDINGS)) < 0.4).astype(np.float32)


def check_generator_settings(num_train, num_val, num_test, native_size, seed, noise) -> None:
    """Split sizes, image side, seed and noise the generator can use (``ConfigValueError`` otherwise)."""
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        check_integer(f"num_{split}", count, 1, f"synthetic images in the {split} split, e.g. 128")
    check_integer("native_size", native_size, 1, "side of the generated images, e.g. 64")
    check_integer("seed", seed, 0, "the data seed, e.g. 0")
    if not (is_number(noise) and noise >= 0):
        raise ConfigValueError(f"{config_key('noise')}: {noise!r} is out of range: expected a number >= 0 "
                               "(the standard deviation of the pixel noise on the 0-255 scale, e.g. 18)")


def synthetic_task(kind: str) -> Task:
    """The task of a ``kind`` of synthetic data: binary lesions, 5 ordinal grades, or multilabel findings."""
    check_choice("kind", kind, KINDS, what="task kind")
    if kind == "binary":
        return Task("binary", ("normal", "lesion"))
    if kind == "multiclass":
        return Task("multiclass", tuple(f"grade_{g}" for g in range(5)), ordinal=True, primary_metric="kappa")
    return Task("multilabel", FINDINGS)


def render(kind: str, label, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """One image: smooth pink background texture, the label's structures, then pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    coarse = rng.normal(size=(5, 5)).astype(np.float32)
    texture = np.kron(coarse, np.ones((size // 5 + 1, size // 5 + 1), np.float32))[:size, :size]
    base = np.stack([200 + 12 * texture, 160 + 12 * texture, 185 + 12 * texture], axis=2)
    if kind == "binary":
        if label:
            _blob(base, xx, yy, rng, radius=rng.uniform(0.08, 0.16), colour=(-rng.uniform(40, 110),) * 3)
    elif kind == "multiclass":
        for _ in range(label):
            _blob(base, xx, yy, rng, radius=rng.uniform(0.05, 0.08), colour=(-90, -60, 40))
    else:
        if label[0]:
            _blob(base, xx, yy, rng, radius=0.07, colour=(-110, -110, -60))
        if label[1]:
            cy, cx = rng.uniform(0.3, 0.7, size=2)
            r = np.hypot(xx - cx, yy - cy)
            base[np.abs(r - 0.22) < 0.03] += (-70, 20, -70)
        if label[2]:
            base[np.abs(yy - rng.uniform(0.2, 0.8)) < 0.04] += (20, -60, -60)
        if label[3]:
            top, left = rng.uniform(0.1, 0.6, size=2)
            base[(yy > top) & (yy < top + 0.3) & (xx > left) & (xx < left + 0.3)] += 45
    base += rng.normal(scale=noise, size=base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def _blob(base, xx, yy, rng, radius: float, colour) -> None:
    cy, cx = rng.uniform(0.2, 0.8, size=2)
    mask = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2)))[..., None]
    base += mask * np.asarray(colour, np.float32)
