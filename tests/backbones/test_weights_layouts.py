"""Training checkpoints and other layouts (DINO teacher, lightly, Lightning, DDP, safetensors), and the
wrong-layout files that must fail with an error naming the keys instead of loading silently."""

from __future__ import annotations

import pytest
import torch

from medtransfer.backbones import (
    REGISTRY,
    CheckpointFormatError,
    CheckpointMismatchError,
    create_backbone,
)
from medtransfer.backbones.layouts import LAYOUTS, best_prefix
from medtransfer.backbones.loading import remap

from .source_layouts import WRITERS, dino_training, lightly, safetensors_flat


def perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v + 1 if v.is_floating_point() else v.clone() for k, v in state.items()}


def assert_loaded(backbone, state: dict[str, torch.Tensor]) -> None:
    loaded = backbone.model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("name", ["vit_small_patch16_224.dino", "resnet50.dino_in1k"])
def test_dino_training_checkpoint_loads_the_teacher_never_the_student(name, references, tmp_path):
    teacher, small = references.for_entry(REGISTRY[name])
    path = tmp_path / "checkpoint.pth"  # pickles argparse.Namespace: allowed through safe globals only
    head = dino_training(teacher.state_dict(), path, student=perturbed(teacher.state_dict()))

    backbone = create_backbone(name, checkpoint=str(path), **small)

    report = backbone.load_report
    assert report.container == "teacher"
    assert report.prefix == ("backbone." if name.startswith("vit") else "module.backbone.")
    assert sorted(report.dropped) == sorted(head)
    assert_loaded(backbone, teacher.state_dict())

    # format auto on the plain architecture does the same
    auto = create_backbone(REGISTRY[name].arch, checkpoint=str(path), **small)
    assert auto.fingerprint == backbone.fingerprint


def test_dino_checkpoint_with_only_a_student_is_refused(references, tmp_path):
    teacher, small = references.for_entry(REGISTRY["vit_small_patch16_224.dino"])
    path = tmp_path / "checkpoint.pth"
    dino_training(teacher.state_dict(), path, with_teacher=False)
    with pytest.raises(CheckpointMismatchError, match="TEACHER.*'student' but no 'teacher'"):
        create_backbone("vit_small_patch16_224.dino", checkpoint=str(path), **small)


@pytest.mark.parametrize("arch", ["resnet50", "vit_small_patch16_224"])
def test_lightly_checkpoint_strips_only_the_leading_prefix(arch, references, tmp_path):
    """lightly keeps ViTs under ``backbone.vit.`` and a momentum copy under ``backbone_momentum.``: a global
    string replace of ``backbone.`` would mangle both."""
    from .conftest import SMALL_KWARGS

    small = SMALL_KWARGS[arch]
    reference = references.get(arch, **small)
    path = tmp_path / "epoch=9-step=100.ckpt"
    extra = lightly(reference.state_dict(), path)
    backbone = create_backbone(arch, checkpoint=str(path), **small)
    report = backbone.load_report
    assert report.prefix == ("backbone.vit." if arch.startswith("vit") else "backbone.")
    assert sorted(report.dropped) == sorted(extra)
    assert_loaded(backbone, reference.state_dict())


def test_ddp_prefixed_state_dict_and_safetensors(references, tmp_path):
    reference = references.get("resnet50", layers=(1, 1, 1, 1))
    ddp = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in reference.state_dict().items()}, ddp)
    flat = tmp_path / "weights.safetensors"
    safetensors_flat(reference.state_dict(), flat)
    for path in (ddp, flat):
        backbone = create_backbone("resnet50", checkpoint=str(path), layers=(1, 1, 1, 1))
        report = backbone.load_report
        assert report.dropped == [] and report.layout == "auto"
        assert_loaded(backbone, reference.state_dict())


def test_remap_strips_leading_prefixes_only():
    layout = LAYOUTS["mocov2"]
    state = {"module.encoder_q.layer1.module.encoder_q.w": torch.ones(1), "module.encoder_k.x": torch.ones(1),
             "other.module.encoder_q.y": torch.ones(1)}
    remapped, dropped, unexpected = remap(state, layout, "module.encoder_q.")
    assert list(remapped) == ["layer1.module.encoder_q.w"]
    assert dropped == ["module.encoder_k.x"] and unexpected == ["other.module.encoder_q.y"]
    assert best_prefix(["backbone.vit.blocks.0.w", "backbone.vit.norm.w"], {"blocks.0.w", "norm.w"}) == \
        "backbone.vit."


# -- wrong layouts ---------------------------------------------------------------------------------------
@pytest.fixture
def swav_file(references, tmp_path):
    """A SwAV-layout file of the small ResNet-50, as a dict the tests corrupt and write again."""
    reference = references.get("resnet50", layers=(1, 1, 1, 1))
    path = tmp_path / "swav.pth.tar"
    WRITERS["swav"](reference.state_dict(), path)
    return path, torch.load(path, weights_only=True)


def _load_swav(path):
    return create_backbone("resnet50.swav_in1k", checkpoint=str(path), layers=(1, 1, 1, 1))


def test_missing_key_fails_listing_it(swav_file):
    path, state = swav_file
    del state["module.layer4.0.conv2.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"1 missing from the file: layer4\.0\.conv2\.weight"):
        _load_swav(path)


def test_extra_head_key_fails_listing_it(swav_file):
    path, state = swav_file
    state["module.linear_head.weight"] = torch.zeros(10, 2048)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"1 unexpected in the file: module\.linear_head\."):
        _load_swav(path)


def test_wrong_shape_fails_listing_it(swav_file):
    path, state = swav_file
    state["module.layer1.0.conv1.weight"] = torch.zeros(32, 64, 1, 1)
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: layer1\.0\.conv1\.weight: file "
                                                      r"\(32, 64, 1, 1\) vs model \(64, 64, 1, 1\)"):
        _load_swav(path)


def test_another_sources_file_fails_and_names_its_layout(references, tmp_path):
    reference = references.get("resnet50", layers=(1, 1, 1, 1))
    path = tmp_path / "moco.pth.tar"
    WRITERS["mocov2"](reference.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="reads this file as: mocov2"):
        _load_swav(path)


def test_dino_patch8_weights_do_not_load_as_patch16(references, tmp_path):
    reference, small = references.for_entry(REGISTRY["vit_small_patch8_224.dino"])
    path = tmp_path / "dino_deitsmall8_pretrain.pth"
    WRITERS["dino"](reference.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"patch_embed\.proj\.weight: file \(384, 3, 8, 8\)"):
        create_backbone("vit_small_patch16_224.dino", checkpoint=str(path), **small)


def test_mocov3_vit_with_six_heads_is_refused(references, tmp_path):
    """Heads do not change weight shapes, so a strict load alone would accept a 6-head ViT-S."""
    entry = REGISTRY["vit_small_patch16_224.mocov3"]
    reference, small = references.for_entry(entry)
    path = tmp_path / entry.file_name
    WRITERS["mocov3"](reference.state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="trained with 12 attention heads, but the model has 6"):
        create_backbone("vit_small_patch16_224", checkpoint=str(path), **small)
    with pytest.raises(ValueError, match="needs {'num_heads': 12}"):
        create_backbone(entry.name, checkpoint=str(path), num_heads=6, **small)


class Gadget:
    """Stands for any class a checkpoint may pickle (a pickled object can run code when unpickled)."""


def test_unsafe_pickles_and_non_dicts_are_refused(tmp_path):
    pickled = tmp_path / "gadget.pth"
    torch.save({"state_dict": {}, "gadget": Gadget()}, pickled)
    with pytest.raises(CheckpointFormatError, match=r"it pickles .*Gadget.*never unpickles arbitrary"):
        create_backbone("resnet18", checkpoint=str(pickled))

    truncated = tmp_path / "truncated.pth"
    torch.save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointFormatError, match="not a readable PyTorch checkpoint"):
        create_backbone("resnet18", checkpoint=str(truncated))

    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointFormatError, match="holds a list, not a state dict"):
        create_backbone("resnet18", checkpoint=str(listed))


def test_unknown_names_and_recipes_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet50.a1_in1k: model.safetensors .* offline"):
        create_backbone("resnet50.a1_in1k")  # timm's tag, no file here (test_timm_weights.py)
    with pytest.raises(ValueError, match="unknown backbone 'resnet5O'.*closest: resnet50"):
        create_backbone("resnet5O")
    with pytest.raises(ValueError, match="cls_last4' needs a Vision Transformer"):
        create_backbone("resnet18", embedding="cls_last4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone("resnet18", checkpoint=str(tmp_path / "nowhere.pth"))
