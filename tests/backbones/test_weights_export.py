"""Backbone exports (self-supervised pretraining's output): written once, read back exactly by name and path
with their own preprocessing and recipe, checked against their fingerprint, refused when they do not fit."""

from __future__ import annotations

import json

import pytest
import torch

from medtransfer.backbones import CheckpointFormatError, CheckpointMismatchError, create_backbone
from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.backbones.export import save_backbone
from medtransfer.backbones.layouts import detect_layout
from medtransfer.verbs.weights import main as weights_main

from .conftest import randomise_buffers


def trained_backbone(name: str = "test_resnet", seed: int = 3, **kwargs):
    """A backbone whose weights and BatchNorm statistics differ from any fresh initialisation."""
    torch.manual_seed(seed)
    backbone = create_backbone(name, **kwargs)
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    randomise_buffers(backbone.model, seed)
    return backbone


def test_an_export_round_trips_exactly_by_path(tmp_path):
    backbone = trained_backbone()
    written = save_backbone(backbone, tmp_path / "backbone.pt", {"method": "simclr"}, input_size=32)
    expected = state_dict_fingerprint(backbone.model.state_dict())
    assert written == {"path": str((tmp_path / "backbone.pt").resolve()), "fingerprint": expected}

    file = torch.load(tmp_path / "backbone.pt", weights_only=True)  # plain data only
    assert file["format"] == "medtransfer.backbone/1" and file["arch"] == "test_resnet"
    assert set(file["state_dict"]) == set(backbone.model.state_dict())  # the backbone alone: no heads
    assert file["trained_with"] == {"method": "simclr"} and file["preprocessing"]["input_size"] == 32

    loaded = create_backbone("test_resnet", checkpoint=str(tmp_path / "backbone.pt"))
    assert loaded.fingerprint == expected
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    backbone.eval(), loaded.eval()
    assert torch.equal(loaded(images), backbone(images))
    assert detect_layout(file, loaded.model).name == "medtransfer"


def test_the_export_carries_its_preprocessing_recipe_and_timm_arguments(tmp_path):
    backbone = trained_backbone("test_vit", img_size=32)
    backbone.preprocessing = type(backbone.preprocessing)((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 224, "bicubic")
    backbone.embedding = "cls_last4"
    save_backbone(backbone, tmp_path / "vit.pt")
    loaded = create_backbone("test_vit", checkpoint=str(tmp_path / "vit.pt"))  # img_size comes from the file
    assert loaded.preprocessing.mean == (0.0, 0.0, 0.0) and loaded.preprocessing.std == (1.0, 1.0, 1.0)
    assert loaded.preprocessing.interpolation == "bicubic" and loaded.embedding == "cls_last4"
    assert loaded.timm_kwargs == {"img_size": 32}
    plain = create_backbone("test_vit", checkpoint=str(tmp_path / "vit.pt"), embedding="pre_logits")
    assert plain.embedding == "pre_logits"
    with pytest.raises(CheckpointMismatchError, match=r"trained with timm arguments \{'img_size': 32\}"):
        create_backbone("test_vit", checkpoint=str(tmp_path / "vit.pt"), img_size=64)


def test_weights_check_verifies_an_export(tmp_path, capsys):
    backbone = trained_backbone()
    written = save_backbone(backbone, tmp_path / "backbone.pt")
    assert weights_main(["check", "test_resnet", "--checkpoint", str(tmp_path / "backbone.pt")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exact"] and summary["layout"] == "medtransfer"
    assert summary["fingerprint"] == written["fingerprint"] and summary["keys_dropped"] == []
    assert summary["keys_loaded"] == len(backbone.model.state_dict())


def test_a_changed_export_is_refused(tmp_path):
    save_backbone(trained_backbone(), tmp_path / "backbone.pt")
    file = torch.load(tmp_path / "backbone.pt", weights_only=True)

    edited = dict(file, state_dict=dict(file["state_dict"]))
    first = next(k for k in edited["state_dict"] if k.endswith("weight"))
    edited["state_dict"][first] = edited["state_dict"][first] + 1
    torch.save(edited, tmp_path / "edited.pt")
    with pytest.raises(CheckpointMismatchError, match="not to the fingerprint .* recorded when it was"):
        create_backbone("test_resnet", checkpoint=str(tmp_path / "edited.pt"))

    extra = dict(file, state_dict={**file["state_dict"], "head.weight": torch.zeros(2)})
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointMismatchError, match=r"1 unexpected in the file: head.weight"):
        create_backbone("test_resnet", checkpoint=str(tmp_path / "extra.pt"))

    with pytest.raises(CheckpointMismatchError, match="holds a test_resnet backbone, but the model asks for "
                                                      "resnet18: set model.init_args.backbone: test_resnet"):
        create_backbone("resnet18", checkpoint=str(tmp_path / "backbone.pt"))

    torch.save(dict(file, format="medtransfer.backbone/9"), tmp_path / "future.pt")
    with pytest.raises(CheckpointFormatError, match="format 'medtransfer.backbone/9'"):
        create_backbone("test_resnet", checkpoint=str(tmp_path / "future.pt"))
