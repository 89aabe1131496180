"""Diabetic retinopathy grading: EyePACS (Kaggle 2015) and APTOS 2019 (Kaggle).

5 ordinal grades (0 none ... 4 proliferative), quadratic weighted kappa; both datasets are read from the CSV
and image folders as they unpack.
"""

from __future__ import annotations

from pathlib import Path

from ..task import Task
from .errors import check_layout
from .file_backed import FileBackedDataModule
from .sources import Source
from .splits import carve_sources
from .tabular import checked_file_source, class_labels, read_table, row_origins

GRADES = ("no DR", "mild", "moderate", "severe", "proliferative DR")
EYEPACS_PAGE = "https://www.kaggle.com/c/diabetic-retinopathy-detection/data (login required)"
APTOS_PAGE = "https://www.kaggle.com/c/aptos2019-blindness-detection/data (login required)"


def retinopathy_task() -> Task:
    """The task both retinopathy datasets share: 5 ordinal grades, scored by quadratic weighted kappa."""
    return Task("multiclass", GRADES, ordinal=True, primary_metric="kappa")


class EyePACS(FileBackedDataModule):
    """Kaggle Diabetic Retinopathy Detection (EyePACS, 2015).

    Layout: ``trainLabels.csv`` (``image,level``) with ``train/<image>.jpeg``; optionally the labelled test
    set ``retinopathy_solution.csv`` (``image,level,Usage``; all rows, Public and Private) with
    ``test/<image>.jpeg``. Validation is carved from train; so is test when the solution file or ``test/`` is
    absent. Carving is seeded, stratified by grade and grouped by patient (``10_left`` and ``10_right`` stay
    together).

    Args:
        root: the folder holding ``trainLabels.csv`` and ``train/``.
        image_suffix: extension of the image files (``.jpeg`` as published).
        val_fraction, test_fraction: shares of the training patients carved out (``test_fraction`` only when
            there is no labelled test set).
        split_seed, skip_corrupt, image_size, batch_size, ...: see ``FileBackedDataModule``; default
            augmentation ``fundus``.
    """

    default_augmentation = "fundus"

    def __init__(self, root: str, image_suffix: str = ".jpeg", **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.image_suffix = image_suffix
        self.task = retinopathy_task()

    def _read(self, root: Path, csv_name: str, folder: str) -> Source:
        path = root / csv_name
        frame = read_table(path, ["image", "level"], self.name, EYEPACS_PAGE)
        origins = row_origins(path, frame)
        images = frame["image"].str.strip().tolist()
        return checked_file_source(
            self.name,
            [root / folder / f"{image}{self.image_suffix}" for image in images],
            class_labels(frame["level"].tolist(), 5, path, "level", origins),
            images,
            origins,
            groups=frame["image"].str.strip().str.rsplit("_", n=1).str[0].to_numpy(),
            skip_corrupt=self.skip_corrupt,
            draft_size=self.image_size,  # JPEG decoded at the smallest scale >= the input size
        )

    def build_sources(self) -> dict[str, Source]:
        root = check_layout(self.name, self.root, ["trainLabels.csv", "train"], EYEPACS_PAGE)
        pool = self._read(root, "trainLabels.csv", "train")
        if (root / "retinopathy_solution.csv").exists() and (root / "test").is_dir():
            carved = carve_sources(pool, {"val": self.val_fraction}, self.split_seed, self.name)
            return {**carved, "test": self._read(root, "retinopathy_solution.csv", "test")}
        return carve_sources(
            pool,
            {"val": self.val_fraction, "test": self.test_fraction},
            self.split_seed,
            f"{self.name} (no retinopathy_solution.csv with test/: test carved from train)",
        )


class APTOS2019(FileBackedDataModule):
    """APTOS 2019 Blindness Detection (Kaggle).

    Layout: ``train.csv`` (``id_code,diagnosis``) with ``train_images/<id_code>.png``.

    The competition's test labels were never published, so validation and test are carved from train, seeded
    and stratified by grade (one image per patient is assumed: APTOS publishes no patient ids).

    Args:
        root: the folder holding ``train.csv`` and ``train_images/``.
        val_fraction, test_fraction, split_seed, skip_corrupt, image_size, batch_size, ...: see
            ``FileBackedDataModule``; default augmentation ``fundus``.
    """

    default_augmentation = "fundus"

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self.task = retinopathy_task()

    def build_sources(self) -> dict[str, Source]:
        root = check_layout(self.name, self.root, ["train.csv", "train_images"], APTOS_PAGE)
        path = root / "train.csv"
        frame = read_table(path, ["id_code", "diagnosis"], self.name, APTOS_PAGE)
        origins = row_origins(path, frame)
        ids = frame["id_code"].str.strip().tolist()
        pool = checked_file_source(
            self.name,
            [root / "train_images" / f"{i}.png" for i in ids],
            class_labels(frame["diagnosis"].tolist(), 5, path, "diagnosis", origins),
            ids,
            origins,
            skip_corrupt=self.skip_corrupt,
        )
        return carve_sources(
            pool,
            {"val": self.val_fraction, "test": self.test_fraction},
            self.split_seed,
            f"{self.name} (no public test labels)",
        )
