"""Bring your own data: ImageFolder and CSVDataset."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from medtransfer.datamodules import CSVDataset, ImageFolder, SyntheticMedical
from medtransfer.datamodules.errors import BadLabelError, DatasetLayoutError

from .conftest import new_pixels_copy, write_image


def test_imagefolder_without_split_folders_carves_by_patient(imagefolder_root, check_batches):
    dm = ImageFolder(
        root=str(imagefolder_root),
        patient_pattern=r"^(P\d+)_",
        val_fraction=0.2,
        test_fraction=0.2,
        image_size=16,
        batch_size=4,
    )
    assert dm.task.kind == "multiclass" and dm.task.class_names == ("benign", "malignant", "normal")
    sources = dm.sources()
    assert sum(len(s) for s in sources.values()) == 36
    groups = [set(s.groups.tolist()) for s in sources.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert np.bincount(sources["test"].labels).tolist() == [2, 2, 2]
    assert sources["train"].ids[0].startswith("benign/P0")
    check_batches(dm, 16)


def test_imagefolder_with_split_folders(imagefolder_root, tmp_path):
    root = tmp_path / "split"
    for seed, split in enumerate(("train", "valid", "test")):
        for name in ("benign", "malignant"):
            new_pixels_copy(imagefolder_root / name, root / split / name, seed)
    dm = ImageFolder(root=str(root), ordinal=True, class_names=["benign", "malignant"])
    assert dm.task.kind == "multiclass" and dm.task.primary_metric == "kappa"
    assert {k: len(v) for k, v in dm.sources().items()} == {"train": 24, "val": 24, "test": 24}
    assert ImageFolder(root=str(root)).task.kind == "binary"
    shutil.rmtree(root / "test")
    assert len(ImageFolder(root=str(root), test_fraction=0.25).sources()["test"]) == 6


def test_imagefolder_errors(tmp_path, imagefolder_root):
    write_image(tmp_path / "single" / "only" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetLayoutError, match=r"found 1 class folder\(s\) \['only'\]"):
        ImageFolder(root=str(tmp_path / "single"))
    with pytest.raises(ValueError, match="does not match P000_0.png"):
        ImageFolder(root=str(imagefolder_root), patient_pattern=r"^(X\d+)").sources()


def _csv_root(tmp_path, rows: list[str], header: str = "path,label,patient,split"):
    rng = np.random.default_rng(0)
    for row in rows:
        write_image(tmp_path / row.split(",")[0], rng.integers(0, 256, (12, 12, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return tmp_path


def test_csv_class_names_patients_and_split_column(tmp_path, check_batches):
    rows = [
        f"img/{i}.png,{'covid' if i % 2 else 'normal'},p{i // 2},{'test' if i >= 16 else 'train'}"
        for i in range(20)
    ]
    root = _csv_root(tmp_path, rows)
    dm = CSVDataset(
        root=str(root),
        patient_column="patient",
        split_column="split",
        val_fraction=0.25,
        image_size=16,
        batch_size=4,
    )
    assert dm.task.kind == "binary" and dm.task.class_names == ("covid", "normal")
    sources = dm.sources()
    assert len(sources["test"]) == 4 and len(sources["train"]) + len(sources["val"]) == 16
    assert not set(sources["train"].groups) & set(sources["val"].groups)
    check_batches(dm, 16)


def test_csv_multilabel_and_integer_labels(tmp_path):
    rows = [f"x/{i}.png,{i % 2},{(i // 2) % 2}" for i in range(12)]
    root = _csv_root(tmp_path, rows, header="path,effusion,mass")
    dm = CSVDataset(root=str(root), label_columns=["effusion", "mass"])
    assert dm.task.kind == "multilabel" and dm.task.class_names == ("effusion", "mass")
    assert dm.sources()["train"].labels.dtype == np.float32
    (root / "grades.csv").write_text(
        "path,grade\n" + "\n".join(f"x/{i}.png,{i % 4}" for i in range(12)) + "\n"
    )
    graded = CSVDataset(root=str(root), csv_path="grades.csv", label_columns="grade", ordinal=True)
    assert graded.task.num_classes == 4 and graded.task.primary_metric == "kappa"


def test_csv_bad_rows_are_named(tmp_path):
    root = _csv_root(tmp_path, [f"a/{i}.png,{i % 2}" for i in range(6)], header="path,label")
    (root / "bad.csv").write_text("path,label\na/0.png,0\na/1.png,5\n")
    with pytest.raises(BadLabelError, match=r"/bad.csv row 3: label='5' is outside the 2 classes \(0..1\)"):
        CSVDataset(root=str(root), csv_path="bad.csv", class_names=["a", "b"])
    (root / "bad.csv").write_text("path,label\na/0.png,a\na/1.png,maybe\n")
    with pytest.raises(BadLabelError,
                       match=r"/bad.csv row 3: label='maybe' is not one of data.init_args.class_names"):
        CSVDataset(root=str(root), csv_path="bad.csv", class_names=["a", "b"])
    (root / "bad.csv").write_text("path,label\na/0.png,0\n")
    with pytest.raises(BadLabelError, match="holds a single class"):
        CSVDataset(root=str(root), csv_path="bad.csv")
    (root / "bad.csv").write_text("path,label\na/0.png,0\na/9.png,1\n")
    with pytest.raises(DatasetLayoutError, match=r"a/9.png \(bad.csv row 3\)"):
        CSVDataset(root=str(root), csv_path="bad.csv").sources()
    (root / "bad.csv").write_text("file,label\na/0.png,0\n")
    with pytest.raises(DatasetLayoutError, match=r"no column\(s\) \['path'\]"):
        CSVDataset(root=str(root), csv_path="bad.csv")
    (root / "bad.csv").write_text("path,label,split\na/0.png,0,training\na/1.png,1,test\n")
    with pytest.raises(DatasetLayoutError, match="bad.csv row 2: split='training'"):
        CSVDataset(root=str(root), csv_path="bad.csv", split_column="split").sources()


def test_published_split_file_reads_back_as_csv(tmp_path):
    dm = SyntheticMedical(num_train=16, num_val=4, num_test=4, native_size=8, image_size=8)
    path = dm.write_splits(tmp_path / "splits.csv")
    text = path.read_text().splitlines()
    assert text[0] == "id,split,label,patient" and len(text) == 25 and "val-000000,val," in text[17]
