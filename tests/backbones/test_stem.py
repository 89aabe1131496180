"""The small-image stem (``backbones/stem.py``): a 4 x 4 last feature map at 28 px, random initialisation
only, kept by exports, refused in one line for pretrained weights and for networks other than ResNets."""

from __future__ import annotations

import pytest
import timm
import torch

from medtransfer.backbones import CheckpointMismatchError, create_backbone
from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.backbones.errors import StemError
from medtransfer.backbones.export import save_backbone
from medtransfer.errors import ConfigValueError


def last_feature_map(backbone) -> tuple[int, int]:
    return tuple(backbone.model.forward_features(torch.zeros(2, 3, 28, 28)).shape[-2:])


@pytest.mark.parametrize("arch", ["test_resnet", "resnet18", "resnet50"])
def test_the_small_stem_keeps_a_4x4_map_at_28px_where_the_imagenet_stem_keeps_1x1(arch):
    small = create_backbone(arch, stem="small")
    assert last_feature_map(small) == (4, 4)
    assert last_feature_map(create_backbone(arch)) == (1, 1)
    assert small.model.conv1.kernel_size == (3, 3) and small.model.conv1.stride == (1, 1)
    assert small(torch.zeros(2, 3, 28, 28, dtype=torch.uint8)).shape == (2, small.embed_dim)  # pre_logits
    assert small.stem == "small" and small.describe()["stem"] == "small" and small.load_report is None


def test_the_small_stem_is_reproducible_under_a_seed():
    torch.manual_seed(3)
    first = create_backbone("test_resnet", stem="small").fingerprint
    torch.manual_seed(3)
    assert create_backbone("test_resnet", stem="small").fingerprint == first


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_network_other_than_a_resnet_is_refused_in_one_line():
    with pytest.raises(StemError) as error:
        create_backbone("test_vit", stem="small")
    assert "test_vit is a VisionTransformer" in one_line(error) and "resnet50" in one_line(error)


def test_an_unknown_stem_is_refused_in_one_line():
    with pytest.raises(StemError) as error:
        create_backbone("test_resnet", stem="cifar")
    assert "imagenet, small" in one_line(error)


def test_pretrained_weights_are_refused_for_the_small_stem_and_load_exactly_with_the_imagenet_stem(tmp_path):
    state = timm.create_model("resnet18", num_classes=0).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    with pytest.raises(StemError) as error:
        create_backbone("resnet18", checkpoint=str(path), stem="small")
    assert "stem imagenet" in one_line(error)
    loaded = create_backbone("resnet18", checkpoint=str(path), stem="imagenet")
    assert loaded.load_report.loaded == len(state) and not loaded.load_report.dropped
    assert loaded.fingerprint == state_dict_fingerprint(state)
    with pytest.raises(StemError):  # before looking for the file, let alone downloading it
        create_backbone("resnet50.tv_in1k", stem="small")


def test_an_export_reloads_with_its_stem_and_refuses_another(tmp_path):
    trained = create_backbone("test_resnet", stem="small")
    path = tmp_path / "export.pt"
    save_backbone(trained, path)
    reloaded = create_backbone("test_resnet", checkpoint=str(path))
    assert reloaded.stem == "small" and reloaded.load_report is not None
    assert reloaded.fingerprint == trained.fingerprint
    images = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8)
    assert torch.equal(reloaded.eval()(images), trained.eval()(images))
    assert create_backbone("test_resnet", checkpoint=str(path), stem="small").stem == "small"
    with pytest.raises(CheckpointMismatchError) as error:
        create_backbone("test_resnet", checkpoint=str(path), stem="imagenet")
    assert "trained with stem 'small'" in one_line(error)


def test_an_export_written_before_stems_reloads_with_the_imagenet_stem(tmp_path):
    path = tmp_path / "export.pt"
    save_backbone(create_backbone("test_resnet"), path)
    document = torch.load(path, weights_only=True)
    del document["stem"]
    torch.save(document, path)
    assert create_backbone("test_resnet", checkpoint=str(path)).stem == "imagenet"


def test_normalisation_replaces_the_weights_mean_and_std():
    backbone = create_backbone("test_resnet", normalisation={"mean": [0.5] * 3, "std": [0.5] * 3})
    assert backbone.preprocessing.mean == (0.5, 0.5, 0.5) and backbone.preprocessing.std == (0.5, 0.5, 0.5)
    assert torch.equal(backbone.normalise(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)),
                       torch.ones(1, 3, 2, 2))
    with pytest.raises(ConfigValueError, match="every std above 0"):
        create_backbone("test_resnet", normalisation={"mean": [0.5] * 3, "std": [0.0] * 3})


def test_normalisation_on_the_0_255_scale_is_refused_with_the_values_divided():
    """torchvision's statistics times 255 (mmcv and detectron configs) made every image nearly one colour."""
    with pytest.raises(ConfigValueError, match=r"look like 0-255 values.*divided by 255 they are \{'mean': "
                                               r"\[0\.4851, 0\.4561, 0\.4059\], 'std': \[0\.229, 0\.2239, "):
        create_backbone("test_resnet", normalisation={"mean": [123.7, 116.3, 103.5],
                                                      "std": [58.4, 57.1, 57.4]})
