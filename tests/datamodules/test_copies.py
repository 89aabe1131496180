"""Byte-identical images (``datamodules.copies``): found by size, then ends, then whole bytes; carved splits
keep them together; splits the user made with a copy on both sides are refused, official ones warned about."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from medtransfer.datamodules import CSVDataset
from medtransfer.datamodules.copies import check_copies, copy_sets, grouped_with_copies
from medtransfer.datamodules.errors import CopiedImageError
from medtransfer.datamodules.images import ENDS_BYTES, FileSource
from medtransfer.datamodules.medmnist import MedMNIST
from medtransfer.datamodules.sources import ArraySource

from .conftest import write_image


def files(folder, contents: dict[str, bytes]) -> FileSource:
    """A FileSource over files holding ``contents`` (bytes compared, never decoded), label 0 each."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    names = list(contents)
    return FileSource([folder / n for n in names], np.zeros(len(names), np.int64), names)


def test_only_byte_identical_files_are_copies_whatever_their_size_and_ends_share(tmp_path):
    rng = np.random.default_rng(0)
    body = rng.bytes(3 * ENDS_BYTES)
    middle_changed = body[:ENDS_BYTES] + bytes(ENDS_BYTES) + body[2 * ENDS_BYTES:]
    train = files(tmp_path / "a", {"x": body, "same_size": rng.bytes(3 * ENDS_BYTES), "small": b"12"})
    test = files(tmp_path / "b", {"x_copy": body, "same_ends": middle_changed, "small_too": b"12"})
    found = copy_sets([train, test], across=True)
    assert sorted(sorted(members) for members in found) == [[(0, 0), (1, 0)], [(0, 2), (1, 2)]]
    assert copy_sets([train]) == []  # no two files alike within one source


def test_a_file_that_cannot_be_read_is_no_copy(tmp_path):
    source = files(tmp_path, {"a": b"same", "b": b"same"})
    (tmp_path / "b").unlink()
    assert copy_sets([source]) == []


def test_arrays_are_compared_by_their_pixels_and_subsets_by_their_parents_rows():
    images = np.random.default_rng(1).integers(0, 256, (5, 4, 4), np.uint8)
    images[4] = images[1]
    pool = ArraySource(images, np.zeros(5, np.int64), list("abcde"))
    assert copy_sets([pool]) == [[(0, 1), (0, 4)]]
    train, test = pool.subset(np.asarray([0, 1, 2])), pool.subset(np.asarray([3, 4]))
    assert copy_sets([train, test], across=True) == [[(0, 1), (1, 1)]]


def test_user_made_splits_with_a_copy_on_both_sides_are_refused_naming_the_copies(tmp_path):
    body = b"image bytes"
    sources = {"train": files(tmp_path / "t", {"scan1.png": body, "scan2.png": b"other"}),
               "val": files(tmp_path / "v", {"scan3.png": b"third"}),
               "test": files(tmp_path / "s", {"scan1_again.png": body})}
    with pytest.raises(CopiedImageError) as refused:
        check_copies("Mine", sources, None)
    assert str(refused.value) == (
        "Mine: 1 image(s) have a byte-identical copy in another split: 'scan1.png' (train) = "
        "'scan1_again.png' (test); a model tested on an image it was trained on scores higher than on a new "
        "one (leakage); delete or unlist one of each pair, or give both copies the same split (carved splits "
        "keep copies together)")


def test_official_splits_with_copies_are_kept_with_a_warning(tmp_path, caplog):
    sources = {"train": files(tmp_path / "t", {"a": b"x"}), "val": files(tmp_path / "v", {"b": b"x"}),
               "test": files(tmp_path / "s", {"c": b"y"})}
    with caplog.at_level(logging.WARNING):
        check_copies("Published", sources, "the dataset's official splits")
    (record,) = caplog.records
    assert "'a' (train) = 'b' (val)" in record.getMessage()
    assert record.getMessage().endswith("(leakage) (kept: the dataset's official splits)")


def test_carving_joins_copies_and_the_patients_they_link_and_leaves_a_pool_without_copies_alone():
    images = np.random.default_rng(2).integers(0, 256, (6, 4, 4), np.uint8)
    plain = ArraySource(images, np.zeros(6, np.int64), list("abcdef"), np.asarray(list("ppqqrs")))
    assert grouped_with_copies(plain) is plain.groups
    assert grouped_with_copies(ArraySource(images, np.zeros(6, np.int64), list("abcdef"))) is None
    images[5] = images[0]  # patient s's image is a copy of one of p's; p, s become one group
    images[4] = images[3]  # a copy within patient q and r: q, r one group
    linked = ArraySource(images, np.zeros(6, np.int64), list("abcdef"), np.asarray(list("ppqqrs")))
    groups = grouped_with_copies(linked).tolist()
    assert groups[0] == groups[1] == groups[5] and groups[2] == groups[3] == groups[4]
    assert groups[0] != groups[2]
    no_patients = ArraySource(images, np.zeros(6, np.int64), list("abcdef"))
    groups = grouped_with_copies(no_patients).tolist()
    assert groups[0] == groups[5] and groups[3] == groups[4] and len(set(groups)) == 4


def csv_with_copies(root, copies: int, split_column: bool) -> None:
    """20 distinct images in two classes plus ``copies`` copies of the first ones, listed in labels.csv (with
    the copies in the test split, when ``split_column``)."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(20):
        write_image(root / f"im{i:02d}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
        rows.append(f"im{i:02d}.png,{i % 2},{'train' if i < 12 else 'val' if i < 16 else 'test'}")
    for j in range(copies):
        shutil.copy(root / f"im{j:02d}.png", root / f"copy{j}.png")
        rows.append(f"copy{j}.png,{j % 2},test")
    if not split_column:
        rows = [row.rsplit(",", 1)[0] for row in rows]
    header = "path,label,split" if split_column else "path,label"
    (root / "labels.csv").write_text("\n".join([header, *rows]) + "\n")


def test_a_csv_whose_test_split_repeats_a_training_image_is_refused(tmp_path):
    csv_with_copies(tmp_path, copies=2, split_column=True)
    with pytest.raises(CopiedImageError, match=r"2 image\(s\).*'im00.png' \(train\) = 'copy0.png' \(test\)"):
        CSVDataset(root=str(tmp_path), split_column="split", image_size=8).setup("fit")


@pytest.mark.parametrize("split_seed", range(5))
def test_carved_splits_of_a_csv_keep_each_image_and_its_copy_together(tmp_path, split_seed):
    csv_with_copies(tmp_path, copies=4, split_column=False)
    data = CSVDataset(root=str(tmp_path), val_fraction=0.25, test_fraction=0.25, split_seed=split_seed,
                      image_size=8)
    data.setup("fit")
    split_of = {sample: split for split, source in data.sources().items() for sample in source.ids}
    assert all(split_of[f"im{j:02d}.png"] == split_of[f"copy{j}.png"] for j in range(4))


def test_pneumoniamnist_official_splits_share_eight_images_and_are_kept(real_medmnist, caplog):
    """PneumoniaMNIST's train and val hold 8 byte-identical images (and each split repeats a few of its own):
    the official splits are what MedMNIST reports on, so they are kept, with the warning."""
    with caplog.at_level(logging.WARNING, logger="medtransfer.datamodules.copies"):
        MedMNIST(root=str(real_medmnist), flag="pneumoniamnist", image_size=28).setup("fit")
    (record,) = caplog.records
    said = "MedMNIST-pneumoniamnist: 8 image(s) have a byte-identical copy in another split: 'train_"
    assert record.getMessage().startswith(said)


def test_copies_with_different_labels_are_named_with_their_classes_in_a_warning(tmp_path, caplog):
    """One image labelled normal and pneumonia (within a split, or across official ones): a label table to
    check, named with both class names; copies that agree on their label say nothing of labels."""
    train = files(tmp_path / "t", {"a.png": b"x", "b.png": b"x", "c.png": b"y"})
    train.labels = np.asarray([0, 1, 1])
    test = files(tmp_path / "s", {"d.png": b"y"})
    test.labels = np.asarray([1])
    with caplog.at_level(logging.WARNING):
        check_copies("Mine", {"train": train, "val": files(tmp_path / "v", {"e.png": b"z"}), "test": test},
                     "the dataset's official splits", ("normal", "pneumonia"))
    labels, leak = (record.getMessage() for record in caplog.records)
    assert labels == ("Mine: 1 set(s) of byte-identical images carry different labels: 'a.png' (train, "
                      "normal) = 'b.png' (train, pneumonia); one image cannot be both: check the labels of "
                      "these images")
    assert "'c.png' (train) = 'd.png' (test)" in leak
