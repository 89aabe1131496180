"""A checkpoint's model scores (or goes on training on) images prepared as for its training
(``run.inference.check_images_as_trained``): another size, grey for colour, or the fundus crop on one side
only is refused; what only changes training (the augmentation of another preset) is not. A fit continuing a
checkpoint trains on the subset and chooses on the validation split it records
(``check_same_training_data``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medtransfer.run.inference import (
    OtherImagesError,
    OtherTrainingDataError,
    check_images_as_trained,
    check_same_training_data,
)

TRAINED = {"dataset": "Mine", "image_size": 224, "augmentation": "chest_xray", "grey": True}


def data(**changed) -> SimpleNamespace:
    settings = {"name": "Other", "image_size": 224, "augmentation": "chest_xray", "grey": True} | changed
    return SimpleNamespace(**settings)


@pytest.mark.parametrize("changed, says", [
    ({"image_size": 512}, "data.init_args.image_size 512 \\(trained at 224 px\\)"),
    ({"grey": False}, "data.init_args.grey false \\(trained on grey images\\)"),
    ({"augmentation": "fundus"}, "data.init_args.augmentation fundus \\(trained with chest_xray; only"),
], ids=["size", "colour", "retina crop"])
def test_other_images_than_the_training_s_are_refused(changed, says):
    with pytest.raises(OtherImagesError, match=f"--ckpt_path m.ckpt: the model would see images prepared "
                                               f"otherwise than it was trained on: {says}"):
        check_images_as_trained(TRAINED, data(**changed), "m.ckpt")


def test_the_same_preparation_another_dataset_or_nothing_recorded_pass():
    check_images_as_trained(TRAINED, data(), "m.ckpt")  # another dataset: an external test set
    check_images_as_trained(TRAINED, data(augmentation="natural"), "m.ckpt")  # only training differs
    check_images_as_trained({}, data(image_size=32), "old.ckpt")  # a checkpoint that recorded nothing
    check_images_as_trained(TRAINED, data(image_size=32), None)  # no checkpoint


class Trained:
    """A datamodule as ``check_same_training_data`` reads it."""

    def __init__(self, train: str = "t1", val: str = "v1", fraction: float = 1.0) -> None:
        self.now = {"train": train, "val": val, "train_fraction": fraction, "fraction_seed": 0}

    def training_data(self) -> dict:
        return self.now


def test_a_fit_continuing_a_checkpoint_on_another_subset_or_validation_split_is_refused():
    recorded = Trained().now
    with pytest.raises(OtherTrainingDataError, match=r"--ckpt_path last.ckpt: fit would continue training on "
                       r"other data than the checkpoint's: the training subset \(trained with train_fraction "
                       r"1.0, fraction_seed 0; now 0.5, 0, or other training images\); give the training's"):
        check_same_training_data(recorded, Trained(train="t2", fraction=0.5), "last.ckpt")
    with pytest.raises(OtherTrainingDataError, match="the validation split the checkpoint was chosen on"):
        check_same_training_data(recorded, Trained(val="v2"), "last.ckpt")
    check_same_training_data(recorded, Trained(), "last.ckpt")
    check_same_training_data({}, Trained(train="t2"), "old.ckpt")  # a checkpoint that recorded nothing


def test_checkpoints_record_the_training_subset_a_continued_fit_is_checked_against(tmp_path):
    """The record is the datamodule's own: another label fraction gives another training digest."""
    from medtransfer.datamodules import SyntheticMedical

    data = SyntheticMedical(num_train=40, num_val=10, num_test=10, native_size=16, image_size=16)
    half = SyntheticMedical(num_train=40, num_val=10, num_test=10, native_size=16, image_size=16,
                            train_fraction=0.5)
    whole, part = data.training_data(), half.training_data()
    assert whole["val"] == part["val"] and whole["train"] != part["train"]
    assert whole == SyntheticMedical(num_train=40, num_val=10, num_test=10, native_size=16,
                                     image_size=16).training_data()
