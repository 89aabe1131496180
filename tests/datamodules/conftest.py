"""Tiny copies of each dataset's published layout: same file names, columns, HDF5 keys, dtypes and nesting,
a few images each, so the datamodules are tested on the formats users download."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

SHARED_MEDMNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmnist"


def write_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def fundus(rng: np.random.Generator, grade: int, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    """A bright disc (the retina) on a black border, brighter with the grade."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 2.2) ** 2
    image = np.zeros((h, w, 3), np.uint8)
    image[disc] = np.clip(rng.normal(90 + 30 * grade, 10, size=(int(disc.sum()), 3)), 20, 255).astype(
        np.uint8
    )
    return image


def xray(rng: np.random.Generator, size: tuple[int, int] = (36, 44)) -> np.ndarray:
    return rng.integers(0, 256, size=size, dtype=np.uint8)


@pytest.fixture
def pcam_root(tmp_path: Path) -> Path:
    """``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`` (x: N x 96 x 96 x 3 uint8, y: N x 1 x 1 x 1
    uint8) and the ``_meta.csv`` files with the ``wsi`` column."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pcam"
    root.mkdir()
    for split, n in (("train", 24), ("valid", 8), ("test", 8)):
        labels = np.tile([0, 1], n // 2).astype(np.uint8)
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f.create_dataset(
                "x", data=rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8), chunks=(1, 96, 96, 3)
            )
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=labels.reshape(n, 1, 1, 1))
        wsi = [f"{split}_slide_{i // 4}" for i in range(n)]
        lines = [",coord_y,coord_x,tumor_patch,center_tumor_patch,wsi"]
        lines += [f"{i},{i * 96},0,{bool(labels[i])},{bool(labels[i])},{wsi[i]}" for i in range(n)]
        (root / f"camelyonpatch_level_2_split_{split}_meta.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def eyepacs_root(tmp_path: Path) -> Path:
    """``trainLabels.csv`` (image,level) + ``train/<image>.jpeg`` for 30 patients x 2 eyes, and
    ``retinopathy_solution.csv`` (image,level,Usage) + ``test/``."""
    rng = np.random.default_rng(1)
    root = tmp_path / "eyepacs"
    rows = ["image,level"]
    for patient in range(1, 31):
        grade = patient % 5
        for eye in ("left", "right"):
            name = f"{patient}_{eye}"
            write_image(root / "train" / f"{name}.jpeg", fundus(rng, grade))
            rows.append(f"{name},{grade}")
    (root / "trainLabels.csv").write_text("\n".join(rows) + "\n")
    rows = ["image,level,Usage"]
    for patient in range(100, 105):
        for eye in ("left", "right"):
            write_image(root / "test" / f"{patient}_{eye}.jpeg", fundus(rng, patient % 5))
            rows.append(f"{patient}_{eye},{patient % 5},{'Public' if patient % 2 else 'Private'}")
    (root / "retinopathy_solution.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def aptos_root(tmp_path: Path) -> Path:
    """``train.csv`` (id_code,diagnosis) + ``train_images/<id_code>.png``."""
    rng = np.random.default_rng(2)
    root = tmp_path / "aptos"
    rows = ["id_code,diagnosis"]
    for i in range(40):
        code = f"{i:04x}a9b2c3d4"
        write_image(root / "train_images" / f"{code}.png", fundus(rng, i % 5))
        rows.append(f"{code},{i % 5}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


PNEUMONIA_FILES = {
    "NORMAL": ["IM-{p:04d}-0001.jpeg", "IM-{p:04d}-0002.jpeg", "NORMAL2-IM-{p:04d}-0001.jpeg"],
    "PNEUMONIA": ["person{p}_bacteria_{p}1.jpeg", "person{p}_virus_{p}2.jpeg"],
}


@pytest.fixture
def pneumonia_root(tmp_path: Path) -> Path:
    """The Kaggle copy: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/``, a nested duplicate
    ``chest_xray/chest_xray/``, ``__MACOSX`` debris and ``.DS_Store`` files; returns the download folder."""
    rng = np.random.default_rng(3)
    root = tmp_path / "download"
    counts = {"train": 8, "val": 1, "test": 3}
    for base in (root / "chest_xray", root / "chest_xray" / "chest_xray"):
        for split, patients in counts.items():
            for cls, patterns in PNEUMONIA_FILES.items():
                for p in range(1, patients + 1):
                    for pattern in patterns:
                        write_image(
                            base / split / cls / pattern.format(p=p + 100 * (split == "test")), xray(rng)
                        )
                (base / split / cls / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    macosx = root / "chest_xray" / "__MACOSX" / "chest_xray" / "train" / "NORMAL"
    macosx.mkdir(parents=True)
    (macosx / "._IM-0001-0001.jpeg").write_bytes(b"\0\5\26\7 resource fork")
    return root


FINDINGS_ROWS = [
    "No Finding",
    "Effusion",
    "Atelectasis|Effusion",
    "Cardiomegaly",
    "No Finding",
    "Mass|Nodule",
    "Pneumothorax",
    "Infiltration",
    "No Finding",
    "Hernia|Edema",
    "Consolidation|Pneumonia",
    "Emphysema|Fibrosis|Pleural_Thickening",
]


@pytest.fixture
def chestxray14_root(tmp_path: Path) -> Path:
    """``Data_Entry_2017_v2020.csv``, ``train_val_list.txt``, ``test_list.txt`` and PNGs spread over
    ``images_001/images/`` and ``images_002/images/``; one image is RGBA. 12 patients x 3 follow-ups."""
    rng = np.random.default_rng(4)
    root = tmp_path / "nih"
    rows = [
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    ]
    train_val, test = [], []
    for patient in range(1, 13):
        for follow_up in range(3):
            name = f"{patient:08d}_{follow_up:03d}.png"
            folder = root / ("images_001" if patient <= 6 else "images_002") / "images"
            if patient == 2 and follow_up == 0:
                write_image(
                    folder / name, np.dstack([xray(rng)] * 3 + [np.full((36, 44), 255, np.uint8)]), "RGBA"
                )
            else:
                write_image(folder / name, xray(rng))
            finding = FINDINGS_ROWS[(patient + follow_up) % len(FINDINGS_ROWS)]
            rows.append(f"{name},{finding},{follow_up},{patient},58,M,PA,2682,2749,0.143,0.143")
            (test if patient > 9 else train_val).append(name)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(rows) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root


def write_medmnist(
    path: Path, n: dict[str, int], size: int = 28, colour: bool = False, classes: int = 2, multilabel: int = 0
) -> Path:
    """A ``.npz`` with MedMNIST's arrays: ``{split}_images`` uint8 N x S x S (x 3), ``{split}_labels`` uint8
    N x 1 (or N x C multilabel)."""
    rng = np.random.default_rng(5)
    arrays = {}
    for split, count in n.items():
        shape = (count, size, size, 3) if colour else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, size=(count, multilabel), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(count) % classes).astype(np.uint8).reshape(count, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def medmnist_root(tmp_path: Path) -> Path:
    root = tmp_path / "medmnist"
    write_medmnist(root / "pneumoniamnist.npz", {"train": 20, "val": 6, "test": 6})
    write_medmnist(root / "chestmnist_64.npz", {"train": 12, "val": 4, "test": 4}, size=64, multilabel=14)
    write_medmnist(root / "retinamnist.npz", {"train": 20, "val": 5, "test": 5}, colour=True, classes=5)
    return root


@pytest.fixture
def real_medmnist() -> Path:
    if (
        not (SHARED_MEDMNIST / "retinamnist.npz").exists()
        or not (SHARED_MEDMNIST / "pneumoniamnist.npz").exists()
    ):
        pytest.skip(f"real MedMNIST files not found in {SHARED_MEDMNIST}")
    return SHARED_MEDMNIST


@pytest.fixture
def imagefolder_root(tmp_path: Path) -> Path:
    """``root/<class>/<image>`` with three classes, patient ids in the file names."""
    rng = np.random.default_rng(6)
    root = tmp_path / "folders"
    for c, name in enumerate(("benign", "malignant", "normal")):
        for patient in range(6):
            for k in range(2):
                write_image(
                    root / name / f"P{c}{patient:02d}_{k}.png", rng.integers(0, 256, (20, 24, 3), np.uint8)
                )
    return root


def new_pixels_copy(folder: Path, to: Path, seed: int) -> None:
    """``folder``'s tree of PNGs under ``to``, same names and sizes, new pixels: a split made of it holds no
    byte-identical copy of ``folder``'s images (those are refused across splits, ``copies``)."""
    rng = np.random.default_rng(seed)
    for path in sorted(folder.rglob("*.png")):
        with Image.open(path) as image:
            shape = (image.height, image.width, 3)
        write_image(to / path.relative_to(folder), rng.integers(0, 256, shape, np.uint8))


def assert_batches(datamodule, image_size: int) -> None:
    """Every split yields docs/architecture.md batches: uint8 B x 3 x S x S images, labels of the task's
    type, string ids."""
    datamodule.setup("fit")
    multilabel = datamodule.task.kind == "multilabel"
    for split, loader in (
        ("train", datamodule.train_dataloader()),
        ("val", datamodule.val_dataloader()),
        ("test", datamodule.test_dataloader()),
    ):
        batch = next(iter(loader))
        images, labels = batch["image"], batch["label"]
        assert images.dtype == torch.uint8, split
        assert images.shape[1:] == (3, image_size, image_size), split
        assert int(images.max()) > int(images.min()), f"{split}: constant images"
        if multilabel:
            assert labels.dtype == torch.float32 and labels.shape == (
                len(images),
                datamodule.task.num_classes,
            )
        else:
            assert labels.dtype == torch.long and labels.shape == (len(images),)
            assert 0 <= int(labels.min()) and int(labels.max()) < datamodule.task.num_classes
        assert len(batch["id"]) == len(images) and all(isinstance(i, str) for i in batch["id"])


@pytest.fixture
def check_batches():
    return assert_batches
