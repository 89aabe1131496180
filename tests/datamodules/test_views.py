"""Multi-view batches for self-supervised pretraining: number, sizes and dtype of the views, the modality's
augmentation family, determinism per (seed, epoch, sample), and the training split only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtransfer.datamodules import MedMNIST, SyntheticMedical
from medtransfer.datamodules.views import build_view_transform, view_family
from medtransfer.views import VIEWS_KEY, ViewSpec, ViewSpecError


def view_loader(datamodule, spec: ViewSpec):
    datamodule.serve_views(spec)
    datamodule.setup("fit")
    return datamodule.train_dataloader()


@pytest.mark.parametrize(("spec", "sizes"), [
    (ViewSpec(), [32, 32]),
    (ViewSpec(global_views=2, local_views=4, global_size=24, local_size=12), [24, 24, 12, 12, 12, 12]),
    (ViewSpec(global_views=3, local_views=2), [32, 32, 32, 14, 14]),  # local side: 96/224 of the global one
])
def test_views_have_the_right_number_sizes_and_dtype(spec, sizes):
    data = SyntheticMedical(num_train=40, num_val=8, num_test=8, image_size=32, native_size=48, batch_size=8)
    batches = list(view_loader(data, spec))
    assert len(batches) == 5  # 40 images, batches of 8; an incomplete last batch would be dropped
    for batch in batches:
        views = batch[VIEWS_KEY]
        assert [v.shape for v in views] == [(8, 3, s, s) for s in sizes]
        assert all(v.dtype == torch.uint8 for v in views)  # normalisation is the backbone's, on the device
        assert "image" not in batch and len(batch["id"]) == 8
    assert batches[0][VIEWS_KEY][0].float().std() > 0


def test_views_are_augmented_apart_and_repeat_for_the_same_seed_epoch_and_sample():
    data = SyntheticMedical(num_train=16, num_val=8, num_test=8, image_size=32, batch_size=8)
    data.setup("fit")
    dataset = data.view_dataset(ViewSpec())
    first, again, other_epoch = dataset[(3, 0)], dataset[(3, 0)], dataset[(3, 1)]
    assert not torch.equal(first[VIEWS_KEY][0], first[VIEWS_KEY][1])
    assert all(torch.equal(a, b) for a, b in zip(first[VIEWS_KEY], again[VIEWS_KEY], strict=True))
    assert not torch.equal(first[VIEWS_KEY][0], other_epoch[VIEWS_KEY][0])


def test_pretraining_batches_hold_training_images_only(medmnist_root):
    data = MedMNIST(root=str(medmnist_root), flag="pneumoniamnist", batch_size=4)
    ids = [i for batch in view_loader(data, ViewSpec()) for i in batch["id"]]
    assert len(ids) == 20 and set(ids) == set(data.sources()["train"].ids)  # each training image once
    assert not set(ids) & (set(data.sources()["val"].ids) | set(data.sources()["test"].ids))


def grey_image(size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.repeat(rng.integers(0, 256, size=(size, size, 1), dtype=np.uint8), 3, axis=2)


def test_grey_x_rays_stay_grey_and_are_never_solarised():
    spec = ViewSpec(modality="auto", solarize=[1.0], blur=[0.0])
    transform = build_view_transform(spec, "chest_xray", 32)
    assert transform.family == "chest_xray"
    for seed in range(20):
        transform.set_random_seed(seed)
        for view in transform(grey_image()):
            assert np.array_equal(view[..., 0], view[..., 1]) and np.array_equal(view[..., 1], view[..., 2])
    names = {type(t).__name__ for pipeline in transform.pipelines for t in pipeline.transforms}
    assert not names & {"ColorJitter", "Solarize", "ToGray", "HEStain"}


def test_natural_views_solarise_and_jitter_colour():
    transform = build_view_transform(ViewSpec(solarize=[0.0, 0.2]), "natural", 32)
    names = [[type(t).__name__ for t in pipeline.transforms] for pipeline in transform.pipelines]
    assert all({"ColorJitter", "ToGray", "Solarize"} <= set(n) for n in names)
    solarize = [next(t for t in p.transforms if type(t).__name__ == "Solarize") for p in transform.pipelines]
    assert [t.p for t in solarize] == [0.0, 0.2]


def test_histology_views_rotate_and_jitter_stains():
    transform = build_view_transform(ViewSpec(), "histology", 32)
    names = {type(t).__name__ for t in transform.pipelines[0].transforms}
    assert {"RandomRotate90", "VerticalFlip", "HorizontalFlip", "HEStain"} <= names
    assert "Solarize" not in names


def test_fundus_views_keep_the_circular_field_of_view():
    image = np.zeros((40, 56, 3), np.uint8)
    yy, xx = np.mgrid[0:40, 0:56]
    image[(yy - 20) ** 2 + (xx - 28) ** 2 < 18**2] = 200  # a bright retina on a black camera border
    transform = build_view_transform(ViewSpec(global_scale=(0.5, 1.0)), "fundus", 32)
    assert type(transform.pipelines[0].transforms[0]).__name__ == "CropRetinaBorder"
    for seed in range(10):
        transform.set_random_seed(seed)
        for view in transform(image):
            assert view.shape == (32, 32, 3)
            assert view[0, 0].max() == view[0, -1].max() == view[-1, 0].max() == view[-1, -1].max() == 0


def test_plain_views_do_not_flip():
    transform = build_view_transform(ViewSpec(), "none", 32)  # CT slices have a left and a right
    assert transform.family == "plain"
    names = {type(t).__name__ for t in transform.pipelines[0].transforms}
    assert not any("Flip" in n or "Rotate" in n for n in names)


def test_view_spec_errors_name_the_key():
    with pytest.raises(ViewSpecError, match=r"views: unknown key\(s\) \['crops'\]"):
        ViewSpec.from_dict({"crops": 2})
    with pytest.raises(ViewSpecError, match="views.global_scale"):
        ViewSpec(global_scale=(0.5, 0.2))
    with pytest.raises(ViewSpecError, match="views.modality"):
        ViewSpec(modality="xray")
    with pytest.raises(ViewSpecError, match="views.solarize"):
        ViewSpec(solarize=[1.5])
    with pytest.raises(ViewSpecError, match="augmentation preset 'ct'"):
        view_family(ViewSpec(), "ct")
    assert ViewSpec.from_dict(ViewSpec(local_views=2).to_dict()) == ViewSpec(local_views=2)


def test_a_split_smaller_than_one_batch_is_an_error():
    data = SyntheticMedical(num_train=6, num_val=4, num_test=4, image_size=32, batch_size=8)
    with pytest.raises(ValueError, match="6 training images cannot fill one batch of 8"):
        view_loader(data, ViewSpec())
