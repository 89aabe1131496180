"""NIH ChestX-ray14 (Wang et al. 2017): 14 text-mined findings on frontal chest X-rays, multilabel.

112,120 frontal chest X-rays of 30,805 patients, 14 text-mined findings, multilabel, mean AUROC, with the
official patient-disjoint ``train_val_list.txt`` / ``test_list.txt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..task import Task
from .errors import BadLabelError, DatasetLayoutError, check_layout, layout_message
from .file_backed import FileBackedDataModule
from .sources import Source
from .splits import carve_sources
from .tabular import checked_file_source, read_table, row_origins

PAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC (or https://www.kaggle.com/datasets/nih-chest-xrays/data)"
FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
ENTRY_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
COLUMNS = ("Image Index", "Finding Labels", "Patient ID")


def image_folders(root: Path) -> list[Path]:
    """``images/`` and/or ``images_001/images/`` ... ``images_012/images/`` (the Box and Kaggle layouts)."""
    folders = [root / "images"] if (root / "images").is_dir() else []
    for part in sorted(root.glob("images_*")):
        nested = part / "images"
        folders.append(nested if nested.is_dir() else part)
    return [f for f in folders if f.is_dir()]


def parse_findings(text: str, where: str) -> np.ndarray:
    """``Effusion|Mass`` to a 0/1 vector over ``FINDINGS``; ``No Finding`` is all zeros."""
    vector = np.zeros(len(FINDINGS), dtype=np.float32)
    for finding in (f.strip() for f in text.split("|")):
        if finding == "No Finding":
            continue
        if finding not in FINDINGS:
            raise BadLabelError(
                f"{where}: unknown finding {finding!r} in 'Finding Labels'; expected 'No Finding' "
                f"or some of {list(FINDINGS)} separated by '|'"
            )
        vector[FINDINGS.index(finding)] = 1.0
    return vector


def check_unique_images(frame, path: Path, dataset: str) -> None:
    """Check there is one row per image in the entries table.

    A duplicated ``Image Index`` would give its image two label rows (or two copies in a split).
    """
    repeated = frame["Image Index"].duplicated(keep=False)
    if not repeated.any():
        return
    origins = row_origins(path, frame)
    rows: dict[str, list[str]] = {}
    for name, origin in zip(frame["Image Index"][repeated], np.asarray(origins)[repeated.to_numpy()],
                            strict=True):
        rows.setdefault(name, []).append(origin.rsplit(" ", 1)[-1])
    shown = "; ".join(f"{name} (rows {', '.join(numbers)})" for name, numbers in list(rows.items())[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    raise BadLabelError(
        f"{dataset}: {path} lists {len(rows)} image(s) in more than one row of 'Image Index': {shown}{more}; "
        f"expected one row per image, as in the table from {PAGE}: remove the repeated rows or download the "
        "table again"
    )


class ChestXray14(FileBackedDataModule):
    """NIH ChestX-ray14 from ``root`` as downloaded.

    Layout: ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``), ``train_val_list.txt``,
    ``test_list.txt`` and the PNGs under ``images/`` or ``images_NNN/images/``.

    The official test list is the test split; validation is carved from train_val by patient (seeded,
    stratified by finding pattern), so no patient is in two splits. RGBA PNGs are converted to grey.

    Args:
        root: the dataset folder.
        val_fraction, split_seed: size and seed of the carved validation split.
        skip_corrupt, image_size, batch_size, ...: see ``FileBackedDataModule``; default augmentation
            ``chest_xray``.
    """

    default_augmentation = "chest_xray"

    def __init__(self, root: str, **kwargs) -> None:
        super().__init__(root, test_fraction=0.0, **kwargs)  # the official test list is the test split
        self.task = Task("multilabel", FINDINGS)

    def build_sources(self) -> dict[str, Source]:
        root = Path(self.root).expanduser()
        entries = next((name for name in ENTRY_FILES if (root / name).exists()), ENTRY_FILES[0])
        root = check_layout(
            self.name,
            root,
            [entries, "train_val_list.txt", "test_list.txt"],
            PAGE,
            f"the entries table may also be named {ENTRY_FILES[1]}",
        )
        folders = image_folders(root)
        if not folders:
            raise DatasetLayoutError(
                layout_message(
                    self.name,
                    root,
                    ["images/", "images_001/images/"],
                    ["images/", "images_001/images/"],
                    PAGE,
                    "unpack the images_NNN.tar.gz archives in root",
                )
            )
        located = {name: folder for folder in folders for name in os.listdir(folder)}
        table_path = root / entries
        frame = read_table(table_path, COLUMNS, self.name, PAGE)
        check_unique_images(frame, table_path, self.name)
        frame = frame.set_index("Image Index", drop=False)
        origins = dict(zip(frame.index, row_origins(table_path, frame.reset_index(drop=True)), strict=True))
        sources = {
            split: self._listed(root / list_name, frame, origins, located, folders[0])
            for split, list_name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt"))
        }
        carved = carve_sources(
            sources["train_val"],
            {"val": self.val_fraction},
            self.split_seed,
            self.name,
            pool_name="train_val",
        )
        return {"train": carved["train"], "val": carved["val"], "test": sources["test"]}

    def _listed(self, list_path: Path, frame, origins: dict, located: dict, default_folder: Path) -> Source:
        names = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
        unknown = [n for n in names if n not in frame.index]
        if unknown:
            raise DatasetLayoutError(
                f"{self.name}: {len(unknown)} images of {list_path} are not in the entries "
                f"table (first: {unknown[0]}); the list and the table are from different "
                "releases or one is truncated"
            )
        rows = frame.loc[names]
        where = [origins[n] for n in names]
        labels = np.stack(
            [parse_findings(text, f"{w}") for text, w in zip(rows["Finding Labels"], where, strict=True)]
        )
        paths = [located.get(n, default_folder) / n for n in names]
        return checked_file_source(
            self.name,
            paths,
            labels,
            names,
            where,
            groups=rows["Patient ID"].to_numpy(),
            skip_corrupt=self.skip_corrupt,
            grey=True,
        )
