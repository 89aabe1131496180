"""Class sets that silently change the task (issue 22): refused when read off the files, kept with a warning
when declared (``class_names``); and ``class_counts``, the labels-only pre-flight count per split."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from medtransfer.datamodules import CSVDataset, ImageFolder, SyntheticMedical, UnlabelledImages
from medtransfer.datamodules.errors import BadLabelError, ClassSetError, DatasetLayoutError
from medtransfer.datamodules.images import FileSource
from medtransfer.errors import ConfigValueError

from .conftest import write_image

WARNINGS = "medtransfer.datamodules"


def labelled_csv(root: Path, labels: list[str], header: str = "path,label") -> Path:
    """``root/labels.csv`` listing one tiny PNG per row (``{i}.png``) with the row's label text (one or
    more columns, comma-separated)."""
    rng = np.random.default_rng(0)
    for i in range(len(labels)):
        write_image(root / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    rows = [f"{i}.png,{label}" for i, label in enumerate(labels)]
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def class_folders(root: Path, counts: dict[str, int]) -> Path:
    """``root/<folder>/<i>.png``: ``counts[folder]`` tiny PNGs in each folder (0: an empty folder)."""
    rng = np.random.default_rng(1)
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_image(root / folder / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    return root


def csv_data(root: Path, **kwargs) -> CSVDataset:
    return CSVDataset(root=str(root), val_fraction=0.2, test_fraction=0.2, image_size=8, **kwargs)


# -- a CSV label column --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["normal", "0", "1", "sick"] * 3,
         r"labels.csv: column 'label' mixes class numbers \(0, 1\) and class names \('normal', 'sick'\) "
         r"\(rows 2, 3\): use one or the other, or list the classes in data.init_args.class_names$"),
        (["True", "False", "0", "1"] * 3,
         r"mixes class numbers \(0, 1\) and class names \('True', 'False'\)"),
        (["0.0", "1.0", "0.5"] * 4,
         r"column 'label' holds 4 number\(s\) that are not class numbers \(0.5 in row 4\): class numbers are "
         r"whole numbers"),
        (["Normal", "normal", "sick"] * 4,
         r"column 'label' writes one class 2 ways: 'Normal' \(row 2\) and 'normal' \(row 3\) differ only "
         "in case"),
        (['"sick "', "sick", "normal"] * 4,
         r"'sick ' \(row 2\) and 'sick' \(row 3\) differ only in surrounding spaces"),
        (["1", "1.0", "01", "0"] * 3,
         r"writes one class 3 ways: '1' \(row 2\), '1.0' \(row 3\) and '01' \(row 4\) are one number written "
         "differently"),
        (["0", "2"] * 6, r"column 'label' skips 1 class number\(s\) \(1; the numbers run to 2\)"),
    ],
    ids=["names and numbers", "true/false and 0/1", "fractional", "case", "spaces", "number format", "gap"],
)
def test_a_label_column_that_changes_the_task_is_refused(tmp_path, labels, message):
    root = labelled_csv(tmp_path, labels)
    with pytest.raises(ClassSetError, match=message) as refused:
        csv_data(root)
    assert "\n" not in str(refused.value)


def test_declared_class_names_read_mixed_and_case_variant_labels(tmp_path):
    root = labelled_csv(tmp_path, ["normal", "0", "1", "sick"] * 3)
    data = csv_data(root, class_names=["normal", "sick"])
    assert data.task.class_names == ("normal", "sick") and data.labels.tolist() == [0, 0, 1, 1] * 3
    (root / "labels.csv").write_text("path,label\n" + "".join(
        f"{i}.png,{name}\n" for i, name in enumerate(["Normal", "normal", "sick"] * 4)))
    data = csv_data(root, class_names=["Normal", "normal", "sick"])
    assert data.task.kind == "multiclass" and data.labels.tolist() == [0, 1, 2] * 4


def test_numeric_class_names_are_names_never_positions(tmp_path):
    root = labelled_csv(tmp_path, ["0.0", "1.0", "0.5"] * 4)
    assert csv_data(root, class_names=["0.0", "0.5", "1.0"]).labels.tolist() == [0, 2, 1] * 4
    (root / "labels.csv").write_text("path,label\n" + "".join(f"{i}.png,{i % 2}\n" for i in range(12)))
    assert csv_data(root, class_names=["1", "0"]).labels.tolist() == [1, 0] * 6


def test_a_label_not_declared_says_when_only_its_case_differs(tmp_path):
    root = labelled_csv(tmp_path, ["Normal", "sick"] * 6)
    with pytest.raises(BadLabelError, match=r"labels.csv row 2: label='Normal' is not one of "
                                            r"data.init_args.class_names \['normal', 'sick'\]; "
                                            r"data.init_args.class_names has 'normal' \(names match exactly"):
        csv_data(root, class_names=["normal", "sick"])


def test_consistent_labels_load_as_before(tmp_path):
    root = labelled_csv(tmp_path, ["0.0", "1.0", "2.0"] * 4)
    data = csv_data(root)
    assert data.task.class_names == ("0", "1", "2") and data.labels.tolist() == [0, 1, 2] * 4
    (root / "labels.csv").write_text("path,label\n" + "".join(f"{i}.png, sick\n" for i in range(6)) +
                                     "".join(f"{i}.png,normal\n" for i in range(6, 12)))
    data = csv_data(root)  # a space after every comma is the file's format, not a second spelling
    assert data.task.class_names == ("normal", "sick") and data.labels.tolist() == [1] * 6 + [0] * 6


def test_a_class_only_in_the_test_split_is_refused_unless_declared(tmp_path, caplog):
    labels = ["a,train", "b,train"] * 10 + ["c,test"] * 2
    root = labelled_csv(tmp_path, labels, header="path,label,split")
    refusal = (r"CSVDataset: class 'c' \(train 0, val 0, test 2\) has no training images: a model cannot "
               r"learn it, yet it counts in the metrics; .*list the classes in data.init_args.class_names to "
               "keep it")
    with pytest.raises(ClassSetError, match=refusal):
        csv_data(root, split_column="split").setup("fit")
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        data = csv_data(root, split_column="split", class_names=["a", "b", "c"])
        data.setup("fit")
    assert "class 'c' (train 0, val 0, test 2) has no training images" in caplog.text
    assert "kept: data.init_args.class_names declares the classes" in caplog.text
    assert data.class_counts()["test"] == {"a": 0, "b": 0, "c": 2}


def test_a_multilabel_finding_never_positive_in_training_is_refused_unless_declared(tmp_path, caplog):
    rows = [f"{i % 2},0,train" for i in range(20)] + ["1,1,test", "0,1,test"]
    root = labelled_csv(tmp_path, rows, header="path,effusion,mass,split")
    options = {"label_columns": ["effusion", "mass"], "split_column": "split"}
    with pytest.raises(ClassSetError, match=r"finding 'mass' \(train 0, val 0, test 2\) has no training "
                                            "positive images"):
        csv_data(root, **options).setup("fit")
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        csv_data(root, class_names=["Effusion", "Mass"], **options).setup("fit")
    assert "finding 'Mass' (train 0, val 0, test 2) has no training positive images" in caplog.text


def test_a_multilabel_fraction_without_a_finding_is_warned_about(caplog):
    data = SyntheticMedical(kind="multilabel", num_train=16, num_val=4, num_test=4, native_size=8,
                            image_size=8, train_fraction=2)
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        data.setup("fit")
    assert ("SyntheticMedical: train_fraction=2 (fraction_seed=0) holds no positive image of finding(s) "
            "'spot'") in caplog.text
    counts = data.class_counts()
    assert counts["train"]["spot"] == 0 < counts["train_full"]["spot"]


def test_ordinal_grades_given_as_names_need_their_order_declared(tmp_path):
    root = labelled_csv(tmp_path, ["none", "mild", "moderate", "severe"] * 3)
    refusal = (r"data.init_args.ordinal is true, but the grades read off column 'label' come in text order "
               r"\['mild', 'moderate', 'none', 'severe'\]")
    with pytest.raises(ClassSetError, match=refusal):
        csv_data(root, ordinal=True)
    graded = csv_data(root, ordinal=True, class_names=["none", "mild", "moderate", "severe"])
    assert graded.task.ordinal and graded.labels.tolist() == [0, 1, 2, 3] * 3


def test_ordinal_grade_folders_in_text_order_are_refused(tmp_path):
    root = class_folders(tmp_path / "eleven", {str(grade): 2 for grade in range(11)})
    with pytest.raises(ClassSetError, match=r"grades read off the class folders come in text order "
                                            r"\['0', '1', '10', '2',"):
        ImageFolder(root=str(root), ordinal=True)
    five = ImageFolder(root=str(class_folders(tmp_path / "five", {str(g): 2 for g in range(5)})),
                       ordinal=True)
    assert five.task.class_names == ("0", "1", "2", "3", "4") and five.task.primary_metric == "kappa"


# -- ImageFolder ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"a": 6, "b": 6, "c": 0}, r"class 'c' \(train 0, val 0, test 0\) has no training images"),
        ({"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 2, "test/c": 2},
         r"class 'c' \(train 0, val 0, test 2\) has no training images"),
        ({"train/a": 6, "train/b": 6, "val/a": 1, "val/c": 2},
         r"class 'c' \(train 0, val 2, test \d\) has no training images"),
    ],
    ids=["empty folder", "only under test", "only under val"],
)
def test_a_class_folder_without_training_images_is_refused(tmp_path, counts, message):
    data = ImageFolder(root=str(class_folders(tmp_path, counts)), val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(ClassSetError, match=rf"^ImageFolder: {message}: .*class_names to keep it$"):
        data.setup("fit")


def test_a_class_whose_images_are_all_carved_out_is_refused(tmp_path):
    root = class_folders(tmp_path, {"a": 6, "b": 6, "c": 1})
    outcomes = []
    for seed in range(8):
        data = ImageFolder(root=str(root), val_fraction=0.2, test_fraction=0.2, split_seed=seed)
        try:
            outcomes.append(data.class_counts()["train"]["c"])
        except ClassSetError as refused:
            assert "class 'c' (train 0," in str(refused)
            outcomes.append("refused")
    assert "refused" in outcomes and 1 in outcomes  # the one image of 'c' trains, or the split is refused


def test_class_folders_spelled_two_ways_are_refused(tmp_path):
    root = class_folders(tmp_path, {"train/Normal": 4, "train/sick": 4, "test/normal": 2, "test/sick": 2})
    with pytest.raises(ClassSetError, match=r"class folders 'Normal' \(train/Normal\) and 'normal' "
                                            r"\(test/normal\) differ only in case: rename them"):
        ImageFolder(root=str(root))


def test_split_folders_are_found_whatever_their_case(tmp_path):
    """``Train/`` and ``TEST/`` are split folders: read as classes they made a task of telling them apart."""
    root = class_folders(tmp_path, {"Train/normal": 6, "Train/sick": 6, "TEST/normal": 2, "TEST/sick": 3})
    data = ImageFolder(root=str(root), val_fraction=0.2)
    data.setup("fit")
    assert data.task.class_names == ("normal", "sick")
    assert data.class_counts()["test"] == {"normal": 2, "sick": 3}


def test_class_folders_named_like_splits_are_refused_unless_declared(tmp_path):
    root = class_folders(tmp_path, {"Training/normal": 4, "Training/sick": 4, "Testing/normal": 2})
    with pytest.raises(DatasetLayoutError, match=r"class folder\(s\) 'Testing' \(Testing\), 'Training' "
                                                 r"\(Training\) are named like splits, not classes"):
        ImageFolder(root=str(root))
    assert ImageFolder(root=str(root), class_names=["Training", "Testing"]).task.class_names == (
        "Training", "Testing")


def test_two_folders_of_one_split_are_refused(tmp_path):
    root = class_folders(tmp_path, {"train/a": 4, "train/b": 4, "val/a": 1, "Validation/b": 1})
    with pytest.raises(DatasetLayoutError, match=r"Validation/ and val/ under .* are both the val split's "
                                                 "folder: merge them into one"):
        ImageFolder(root=str(root))


def test_declared_class_folders_keep_empty_and_test_only_classes(tmp_path, caplog):
    root = class_folders(tmp_path, {"train/a": 6, "train/b": 6, "train/empty": 0, "test/a": 2, "test/b": 2,
                                    "test/rare": 2, "test/other": 2})
    with caplog.at_level(logging.WARNING, logger=WARNINGS):
        data = ImageFolder(root=str(root), class_names=["b", "a", "empty", "rare"], val_fraction=0.2)
        data.setup("fit")
    assert data.task.class_names == ("b", "a", "empty", "rare")
    assert "leaving out the class folder(s) ['other']: not in data.init_args.class_names" in caplog.text
    assert "classes 'empty' (train 0, val 0, test 0), 'rare' (train 0, val 0, test 2) have no" in caplog.text
    assert data.class_counts()["test"] == {"b": 2, "a": 2, "empty": 0, "rare": 2}
    binary = ImageFolder(root=str(root), class_names=["b", "a"])
    assert binary.task.kind == "binary" and binary.task.class_names == ("b", "a")  # 'a' is the positive class
    train = binary.sources()["train"]
    assert [int(label) for label in train.labels] == [0 if i.startswith("train/b/") else 1 for i in train.ids]


def test_a_declared_class_without_a_folder_is_refused(tmp_path):
    root = class_folders(tmp_path, {"a": 4, "b": 4})
    refusal = r"class_names lists \['bb'\], but no split has a class folder of that name \(found \['a', 'b'\]"
    with pytest.raises(ConfigValueError, match=refusal):
        ImageFolder(root=str(root), class_names=["a", "bb"])


# -- class_counts --------------------------------------------------------------------------------------------
def test_class_counts_per_split_from_labels_only(imagefolder_root, monkeypatch):
    options = {"root": str(imagefolder_root), "test_fraction": 0.2, "train_fraction": 0.5}
    data, reference = ImageFolder(**options), ImageFolder(**options)
    reference.setup("fit")

    def no_decoding(self, index):
        raise AssertionError("class_counts decoded an image")

    monkeypatch.setattr(FileSource, "load_pixels", no_decoding)
    counts = data.class_counts()
    assert list(counts) == ["train", "train_full", "val", "test"]
    for split, source in (("train", data.split_source("train")), ("train_full", data.sources()["train"]),
                          ("val", data.sources()["val"]), ("test", data.sources()["test"])):
        assert list(counts[split]) == ["benign", "malignant", "normal"]
        assert list(counts[split].values()) == np.bincount(source.labels, minlength=3).tolist()
    assert np.array_equal(data.train_indices(), reference.train_indices())  # nothing a run computes changed
    assert data.split_digests() == reference.split_digests()


def test_class_counts_without_a_fraction_multilabel_and_unlabelled(tmp_path):
    data = SyntheticMedical(kind="multilabel", num_train=16, num_val=4, num_test=4, native_size=8,
                            image_size=8)
    counts = data.class_counts()
    assert list(counts) == ["train", "val", "test"]
    assert list(counts["train"].values()) == data.sources()["train"].labels.sum(axis=0).astype(int).tolist()
    write_image(tmp_path / "x.png", np.zeros((8, 8), np.uint8))
    assert UnlabelledImages(root=str(tmp_path)).class_counts() == {}
