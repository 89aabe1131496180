"""A checkpoint's model scores (or goes on training on) images prepared as for its training
(``run.inference.check_images_as_trained``): another size, grey for colour, or the fundus crop on one side
only is refused; what only changes training (the augmentation of another preset) is not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medtransfer.run.inference import OtherImagesError, check_images_as_trained

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
