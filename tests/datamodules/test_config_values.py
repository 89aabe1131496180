"""Config values out of range are ConfigValueErrors when the datamodule is built (issue 22): one line naming
the key as a config spells it, the value and what would do; values in range load as before."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.datamodules import (
    ChestXrayPneumonia,
    CSVDataset,
    ImageFolder,
    MedMNIST,
    PCam,
    SyntheticMedical,
    UnlabelledImages,
)
from medtransfer.errors import ConfigValueError

from .conftest import new_pixels_copy, write_image

NAN = float("nan")


def assert_refused(build, key: str, text: str = "") -> None:
    with pytest.raises(ConfigValueError) as refused:
        build()
    message = str(refused.value)
    assert f"data.init_args.{key}" in message and text in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("train_fraction", 0, "expected a number in (0, 1]"),
        ("train_fraction", 0.0, "or a whole number of samples >= 1"),
        ("train_fraction", 1.5, "1.5 is neither a share"),
        ("train_fraction", -1, "-1 is neither"),
        ("train_fraction", True, "True is neither"),
        ("train_fraction", "half", "'half' is neither"),
        ("train_fraction", NAN, "nan is neither"),
        ("image_size", 0, "0 is out of range: expected an integer >= 1"),
        ("image_size", 22.5, "22.5 is not an integer"),
        ("batch_size", 0, "expected an integer >= 1 (images per training batch"),
        ("eval_batch_size", 0, "expected an integer >= 1 or unset"),
        ("eval_batch_size", -1, "-1 is out of range"),
        ("num_workers", -2, "expected an integer >= 0 or unset"),
        ("prefetch_factor", 0, "batches each worker prepares ahead"),
        ("fraction_seed", "a", "'a' is not an integer"),
        ("fraction_seed", 1.5, "1.5 is not an integer"),
        ("fraction_seed", -1, "expected an integer >= 0"),
        ("augmentation", "foo", "unknown augmentation preset 'foo': choose one of ['none', 'natural'"),
        ("pin_memory", "yes", "expected true or false or unset"),
        ("persistent_workers", None, "None is not true or false"),
        ("val_fraction", 1.2, "expected a number in [0, 1)"),
        ("val_fraction", -0.1, "-0.1 is out of range"),
        ("test_fraction", 1.0, "carved out for testing"),
        ("split_seed", -1, "the seed of the carved splits"),
        ("split_seed", 0.5, "0.5 is not an integer"),
        ("skip_corrupt", "no", "'no' is not true or false"),
        ("cache_size", 0, "expected an integer >= 1 or unset"),
        ("cache_size", 16, "16 is smaller than data.init_args.image_size 224"),
        ("ordinal", "yes", "'yes' is not true or false"),
        ("patient_pattern", "(", "'(' is not a regular expression"),
        ("patient_pattern", "P", "has no group to hold the patient id"),
        ("class_names", ["a"], "lists 1 class: a classification dataset needs at least two"),
        ("class_names", ["a", "a"], "lists 'a' more than once"),
        ("class_names", "ab", "is not a list of class names"),
        ("class_names", ["", "b"], "is not a list of class names"),
    ],
)
def test_image_folder_settings_out_of_range(imagefolder_root, key, value, text):
    assert_refused(lambda: ImageFolder(root=str(imagefolder_root), **{key: value}), key, text)


def test_carved_shares_must_leave_training_images(imagefolder_root):
    assert_refused(lambda: ImageFolder(root=str(imagefolder_root), val_fraction=0.6, test_fraction=0.4),
                   "val_fraction + data.init_args.test_fraction", "0.6 + 0.4 leaves no training images")
    assert_refused(lambda: ImageFolder(root=str(imagefolder_root), val_fraction=0).sources(), "val_fraction",
                   "is 0, but the dataset has no val split of its own")


def test_a_zero_share_is_fine_where_the_split_is_not_carved(imagefolder_root, tmp_path):
    for seed, split in enumerate(("train", "val", "test")):
        new_pixels_copy(imagefolder_root, tmp_path / split, seed)
    sizes = {k: len(v) for k, v in ImageFolder(root=str(tmp_path), val_fraction=0).sources().items()}
    assert sizes == {"train": 36, "val": 36, "test": 36}


def test_a_count_above_the_training_split_names_both_numbers(imagefolder_root):
    data = ImageFolder(root=str(imagefolder_root), train_fraction=100)
    train = len(data.sources()["train"])
    assert_refused(lambda: data.setup("fit"), "train_fraction",
                   f"100 samples asked for, but the training split has {train}: give at most {train} samples")


@pytest.mark.parametrize("fraction", [1, 1.0, 0.5, 10, 10.0])
def test_fractions_and_counts_in_range_load(imagefolder_root, fraction):
    data = ImageFolder(root=str(imagefolder_root), train_fraction=fraction, eval_batch_size=None,
                       num_workers=0)
    expected = fraction if fraction > 1 else round(fraction * len(data.sources()["train"]))
    assert len(data.split_source("train")) == expected


def csv_root(tmp_path):
    for i in range(6):
        write_image(tmp_path / f"{i}.png", np.zeros((8, 8), np.uint8))
    rows = "".join(f"{i}.png,{i % 2},{i // 3}\n" for i in range(6))
    (tmp_path / "labels.csv").write_text(f"path,a,b\n{rows}")
    return tmp_path


@pytest.mark.parametrize(
    ("options", "key", "text"),
    [
        ({"label_columns": []}, "label_columns", "names no label column"),
        ({"label_columns": ["a", "a"]}, "label_columns", "names a column more than once"),
        ({"label_columns": ["a", "b"], "ordinal": True}, "ordinal", "true needs a single label column"),
        ({"label_columns": ["a", "b"], "class_names": ["x", "y", "z"]}, "class_names",
         "names 3 findings for the 2 label columns"),
        ({"grey": "x"}, "grey", "'x' is not true or false"),
    ],
)
def test_csv_settings_out_of_range(tmp_path, options, key, text):
    assert_refused(lambda: CSVDataset(root=str(csv_root(tmp_path)), **options), key, text)


@pytest.mark.parametrize(
    ("build", "key", "text"),
    [
        (lambda: MedMNIST(root="unused", flag="nodulemnist3d"), "flag", "unknown MedMNIST 2D dataset"),
        (lambda: MedMNIST(root="unused", size=32), "size", "unknown MedMNIST resolution 32"),
        (lambda: MedMNIST(root="unused", download="yes"), "download", "'yes' is not true or false"),
        (lambda: PCam(root="unused", download=1), "download", "1 is not true or false"),
        (lambda: ChestXrayPneumonia(root="unused", validation="x"), "validation", "unknown validation split"),
        (lambda: UnlabelledImages(root="unused", grey="x"), "grey", "'x' is not true or false"),
        (lambda: SyntheticMedical(kind="x"), "kind", "unknown task kind 'x'"),
        (lambda: SyntheticMedical(num_train=0), "num_train", "0 is out of range"),
        (lambda: SyntheticMedical(num_test=-1), "num_test", "synthetic images in the test split"),
        (lambda: SyntheticMedical(native_size=0), "native_size", "side of the generated images"),
        (lambda: SyntheticMedical(seed=-1), "seed", "the data seed"),
        (lambda: SyntheticMedical(noise=-1), "noise", "expected a number >= 0"),
        (lambda: SyntheticMedical(noise=NAN), "noise", "nan is out of range"),
    ],
)
def test_dataset_settings_out_of_range(build, key, text):
    assert_refused(build, key, text)
