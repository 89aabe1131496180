"""New, unlabelled images to score with a trained model (``medtransfer predict``).

The images are a folder tree, a glob, or a CSV of paths. The task, image size and eval preprocessing come from
the checkpoint, since the images carry no labels to derive classes from.
"""

from __future__ import annotations

import glob
import importlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml

from ..errors import MedTransferError
from ..outputs.thresholds import THRESHOLD_RULES
from ..runtime.checkpoints import CHECKPOINT_DATA_KEY
from ..task import Task
from ..utils.yaml_files import load_yaml_file
from .base import MedicalDataModule
from .class_sets import class_counts
from .dataset import TransformedDataset
from .errors import DatasetLayoutError, describe_folder
from .images import (
    READABLE,
    FileSource,
    file_names,
    is_image_file,
    list_folder_files,
    missing_files,
    sample_id,
    warn_left_out,
)
from .samplers import UnpaddedSampler
from .sources import Source
from .tabular import listed_path, read_table, row_origins
from .transforms import Preset

GLOB_CHARACTERS = "*?["


class NewImagesError(MedTransferError, ValueError):
    """New images that cannot be scored as configured (no task, no images, a threshold rule without data)."""


def list_images(root: str, image_column: str = "path",
                dataset: str = "NewImages") -> tuple[list[Path], list[str]]:
    """The image files ``root`` names, with their ids, in a stable order.

    ``root`` is one of:

    - a folder: every image under it (recursively, sorted; dot files and ``__MACOSX`` ignored), ids relative
      to the folder;
    - a glob (``scans/**/*.png``, recursive ``**`` allowed): the matching image files, sorted, ids as matched;
    - a ``.csv`` file: the paths in its ``image_column`` (relative to the CSV's folder, or absolute), in the
      file's order, ids as written; every listed file must exist, and is read whatever its extension.

    An image is a file of a format Pillow decodes (``images.image_suffixes``: PNG, JPEG, TIFF, BMP, GIF's
    first frame, WEBP, ...). Other files in the folder or among the glob's matches are left out with a warning
    that counts and names them (each is logged); a selection without any image is an error.

    Returns:
        The image paths and their ids, in the same order.

    Raises:
        DatasetLayoutError: ``root`` is none of the above, or names no image; a CSV lists a missing file or
            one file twice.
    """
    if any(c in root for c in GLOB_CHARACTERS):
        return _matching_glob(root, dataset)
    path = Path(root).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return _listed_in_csv(path, image_column, dataset)
    if not path.is_dir():
        missing = "" if path.exists() else " (it does not exist)"
        raise DatasetLayoutError(f"{dataset}: data.init_args.root {root!r} is neither a folder, nor a glob, "
                                 f"nor a .csv file of image paths{missing}")
    found = list_folder_files(path)
    if not found.images:
        raise DatasetLayoutError(f"{dataset}: no images that Pillow reads ({READABLE}) under {path}; it "
                                 f"holds: {describe_folder(path)}")
    warn_left_out(found.others, path)
    return found.images, [sample_id(p.relative_to(path)) for p in found.images]


def _matching_glob(pattern: str, dataset: str) -> tuple[list[Path], list[str]]:
    """The image files ``pattern`` matches, sorted, ids as matched; other matching files are warned about."""
    files = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser()), recursive=True)
                   if Path(p).is_file() and not Path(p).name.startswith("."))
    images = [p for p in files if is_image_file(p)]
    others = [p for p in files if not is_image_file(p)]
    if not images:
        matched = f"; it matches only {file_names(others, pattern)}" if others else ""
        raise DatasetLayoutError(f"{dataset}: the glob {pattern!r} matches no image file that Pillow reads "
                                 f"({READABLE}){matched}")
    warn_left_out(others, pattern)
    return images, [sample_id(p) for p in images]


def _listed_in_csv(table: Path, image_column: str, dataset: str) -> tuple[list[Path], list[str]]:
    frame = read_table(table, [image_column], dataset)
    origins = row_origins(table, frame)
    ids = frame[image_column].str.strip().tolist()
    paths = [listed_path(table.parent, p) for p in ids]
    problem = missing_files(paths, origins)
    if problem:
        raise DatasetLayoutError(f"{dataset}: {problem}")
    seen: dict[str, str] = {}
    for image_id, origin in zip(ids, origins, strict=True):
        if image_id in seen:
            raise DatasetLayoutError(f"{dataset}: {table} lists {image_id!r} twice ({seen[image_id]} and "
                                     f"{origin}); each image once, please")
        seen[image_id] = origin
    return paths, ids


def data_preparation(datamodule) -> dict:
    """What a model's checkpoint records about its images, to use it without the training data.

    With it, the model can score new images and be exported without the training data: the dataset, the side
    images were resized to, the augmentation preset (whose eval transform prepared them) and whether they were
    decoded grey.
    """
    if getattr(datamodule, "image_size", None) is None:
        return {}
    return {"dataset": datamodule.name, "image_size": int(datamodule.image_size),
            "augmentation": datamodule.augmentation, "grey": bool(getattr(datamodule, "grey", False))}


class NewImages(MedicalDataModule):
    """Unlabelled images to score with a trained model's checkpoint.

    ``medtransfer predict --ckpt_path <model.ckpt> --data NewImages --data.init_args.root <folder | glob |
    paths.csv>`` (see ``list_images``). The images are the ``predict`` split; they are resized as the model's
    training data was at evaluation (``image_size``, ``augmentation``'s eval transform, ``grey``), which the
    CLI reads from the checkpoint like the task.

    For binary and multilabel tasks a class is predicted where its probability reaches ``threshold``: a
    number, or a rule choosing one threshold per class on the validation split of ``validation_data``
    (``f1``: the threshold maximising F1, ``youden``: the one maximising sensitivity + specificity - 1; see
    ``medtransfer.outputs.thresholds``). Multiclass tasks predict the most probable class.

    Args:
        root: a folder, a glob or a CSV file of image paths.
        image_column: the CSV's column of image paths.
        task: the classes; filled in from ``--ckpt_path`` (in Python: ``model.task``).
        image_size: side the images are resized to; from the checkpoint when not given.
        augmentation: the training data's preset, whose eval transform is applied (e.g. ``fundus`` crops the
            black border); from the checkpoint when not given.
        grey: decode as grey, repeated to 3 channels; from the checkpoint when not given.
        threshold: a probability in (0, 1), or ``f1`` / ``youden`` (needs ``validation_data``).
        validation_data: a YAML file with a ``data`` section (e.g. the training run's ``config.yaml``) or a
            datamodule config (``class_path``, ``init_args``): its validation split chooses the thresholds.
        skip_corrupt: leave out unreadable images (each logged, their number warned; no row in the
            predictions) instead of failing.
        batch_size, num_workers, ...: see ``MedicalDataModule``.
    """

    default_augmentation = "none"

    def __init__(
        self,
        root: str,
        image_column: str = "path",
        task: dict | None = None,
        image_size: int | None = None,
        augmentation: Preset | None = None,
        grey: bool | None = None,
        threshold: float | str = 0.5,
        validation_data: str | None = None,
        skip_corrupt: bool = False,
        batch_size: int = 64,
        **kwargs,
    ) -> None:
        if task is None:
            raise NewImagesError(
                "NewImages: no task: the classes come from the trained model; pass --ckpt_path <model.ckpt> "
                "(in Python: task=model.task)")
        if image_size is None:
            raise NewImagesError(
                "NewImages: no image_size: the checkpoint does not record the side its model was trained at "
                "(written by an older medtransfer, or without TaskCheckpoint); give "
                "--data.init_args.image_size (results.json of the training run: data.image_size)")
        super().__init__(batch_size=batch_size, image_size=image_size, augmentation=augmentation, **kwargs)
        self.root = root
        self.image_column = image_column
        self.task = task if isinstance(task, Task) else Task.from_dict(_plain(task))
        self.grey = bool(grey)
        self.threshold = _checked_threshold(threshold, self.task, validation_data)
        self.validation_data = validation_data
        self.skip_corrupt = skip_corrupt
        self._paths: dict[str, str] | None = None

    @classmethod
    def from_checkpoint(cls, init_args, checkpoint: Mapping, path: str) -> None:
        """Fill the arguments a user did not give from the checkpoint at ``path``.

        The CLI calls this before instantiating: the task from the model's hyperparameters, the eval
        preprocessing from what ``TaskCheckpoint`` records (``data_preparation``).
        """
        task = checkpoint.get("hyper_parameters", {}).get("task")
        if init_args.get("task") is None:
            if task is None:
                raise NewImagesError(f"NewImages: {path} holds no classifier (no task among its "
                                     "hyperparameters): give the checkpoint of a trained classifier")
            init_args["task"] = dict(task)
        recorded = checkpoint.get(CHECKPOINT_DATA_KEY) or {}
        for key in ("image_size", "augmentation", "grey"):
            if init_args.get(key) is None and recorded.get(key) is not None:
                init_args[key] = recorded[key]

    def build_sources(self) -> dict[str, Source]:
        paths, ids = list_images(self.root, self.image_column, self.name)
        self._paths = dict(zip(ids, (str(p) for p in paths), strict=True))
        images = FileSource(paths, np.zeros(len(paths), dtype=np.int64), ids, grey=self.grey,
                            skip_corrupt=self.skip_corrupt, draft_size=2 * self.image_size)
        return {"train": _empty(), "val": self._validation_source(), "test": images}

    def _validation_source(self) -> Source:
        """The validation split of ``validation_data`` (empty without it), checked to be of this task."""
        if self.validation_data is None:
            return _empty()
        labelled = load_datamodule(self.validation_data)
        self.task.check_matches(labelled.task, what=f"validation_data {self.validation_data}")
        return labelled.sources()["val"]

    def setup(self, stage: str | None = None) -> None:
        self.sources()  # no training split, so no label fraction to select

    def check_class_set(self, sources: dict[str, Source]) -> None:
        """Nothing to check: the classes are the trained model's, and the new images carry no labels."""

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Samples per class of the labelled validation split of ``validation_data``, {} without it.

        These are the only labels here; the new images have none.
        """
        if self.validation_data is None:
            return {}
        return {"val": class_counts(self.task, self.sources()["val"].labels)}

    def image_paths(self) -> dict[str, str]:
        """Each new image's file, by id (the ``path`` column of predictions.csv)."""
        self.sources()
        return dict(self._paths or {})

    def train_dataloader(self):
        raise NewImagesError("NewImages holds unlabelled images to score: use `medtransfer predict`, not fit")

    def val_dataloader(self):
        """The validation split of ``validation_data`` (labelled), for choosing thresholds."""
        return self.eval_dataloader("val")

    def test_dataloader(self):
        raise NewImagesError("NewImages holds unlabelled images: there is nothing to test against; use "
                             "`medtransfer predict`")

    def predict_dataloader(self):
        dataset = UnlabelledDataset(self.split_source("test"), self.eval_transform(),
                                    multilabel=self.multilabel)
        world, rank = self._world()
        return self._loader(dataset, UnpaddedSampler(dataset, world, rank), self.eval_batch_size)

    def data_fingerprint(self) -> dict:
        return super().data_fingerprint() | {"grey": self.grey}

    def describe(self) -> dict:
        return super().describe() | {"root": self.root, "threshold": self.threshold,
                                     "validation_data": self.validation_data}


class UnlabelledDataset(TransformedDataset):
    """Items without ``label``: nothing downstream can mistake a placeholder for a label."""

    def item(self, raw: np.ndarray, index: int) -> dict:
        item = super().item(raw, index)
        del item["label"]
        return item


def load_datamodule(config_path: str) -> MedicalDataModule:
    """The datamodule of a YAML config.

    Its ``data`` section (a run's ``config.yaml``), or the file itself when it is a datamodule config
    (``class_path`` and ``init_args``).
    """
    path = Path(config_path).expanduser()
    try:
        config = load_yaml_file(path)
    except (OSError, yaml.YAMLError) as err:
        raise NewImagesError(f"NewImages: cannot read validation_data {path}: {err}") from None
    section = config.get("data", config) if isinstance(config, dict) else None
    if not isinstance(section, dict) or "class_path" not in section:
        raise NewImagesError(f"NewImages: validation_data {path} has no datamodule config (a 'data' section "
                             "with class_path and init_args, as in a run's config.yaml)")
    datamodule = instantiate_datamodule(section)
    if getattr(datamodule, "task", None) is None:
        raise NewImagesError(f"NewImages: validation_data {path} is a dataset without labels")
    return datamodule


def _checked_threshold(threshold: float | str, task: Task, validation_data: str | None) -> float | str:
    if isinstance(threshold, str) and threshold not in THRESHOLD_RULES:
        try:
            threshold = float(threshold)
        except ValueError:
            raise NewImagesError(f"NewImages: threshold {threshold!r}: give a probability in (0, 1) or one "
                                 f"of {list(THRESHOLD_RULES)}") from None
    if isinstance(threshold, str):
        if task.kind == "multiclass":
            raise NewImagesError(f"NewImages: threshold {threshold!r}: a multiclass task predicts its most "
                                 "probable class; thresholds apply to binary and multilabel tasks")
        if validation_data is None:
            raise NewImagesError(f"NewImages: threshold {threshold!r} is chosen on a validation split: give "
                                 "data.init_args.validation_data (e.g. the training run's config.yaml)")
        return threshold
    if not 0 < float(threshold) < 1:
        raise NewImagesError(f"NewImages: threshold {threshold} is not a probability in (0, 1)")
    return float(threshold)


def _empty() -> FileSource:
    return FileSource([], np.zeros(0, dtype=np.int64), [])


def _plain(task) -> dict:
    """A task as a plain dict (jsonargparse may hand over its own Namespace)."""
    return task.as_dict() if hasattr(task, "as_dict") else dict(task)


def instantiate_datamodule(section: dict) -> MedicalDataModule:
    """A datamodule from its ``class_path`` and ``init_args``.

    It is built without importing Lightning's CLI, which a scoring run has no other use for.
    """
    module, _, name = str(section["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise NewImagesError(f"NewImages: validation_data names no datamodule class "
                             f"{section['class_path']!r} (e.g. medtransfer.datamodules.ImageFolder)"
                             ) from None
    return cls(**dict(section.get("init_args") or {}))
