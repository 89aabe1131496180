"""timm's pretrained weights by name (``resnet50.a1_in1k``, ``hf-hub:org/name``): from a local file, the
Hugging Face cache or the torch hub cache, loaded exactly and as timm's own loader loads them, with timm's
preprocessing; offline without a file and unknown names fail with one line. No test touches the network."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors.torch import save_file
from timm.models import vision_transformer

from medtransfer.backbones import (
    Backbone,
    CheckpointMismatchError,
    UnknownBackboneError,
    WeightsNotFoundError,
    create_backbone,
)
from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.backbones.export import save_backbone
from medtransfer.backbones.preprocessing import Preprocessing
from medtransfer.backbones.timm_weights import checkpoint_filter, find_timm_weights, resolve_timm_file
from medtransfer.cli import main
from medtransfer.verbs.weights import main as weights_main

from .conftest import put_in_hub_cache

TAG = "resnet50.a1_in1k"
SMALL = {"layers": (1, 1, 1, 1)}  # a ResNet-50 with one block per stage: the same key names and widths
A1_PREPROCESSING = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, "bicubic")


@pytest.fixture
def published(references, tmp_path):
    """timm's file for resnet50.a1_in1k as the Hub serves it (a flat state dict with the classifier), for the
    small ResNet-50; and the backbone weights it holds."""
    reference = references.get("resnet50", **SMALL)
    backbone_state = {k: v.clone() for k, v in reference.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    classifier = {"fc.weight": torch.randn(1000, 2048, generator=generator), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "download" / "model.safetensors"
    path.parent.mkdir()
    save_file({**backbone_state, **classifier}, str(path))
    return path, backbone_state


def assert_loaded(backbone: Backbone, expected: dict[str, torch.Tensor]) -> None:
    state = backbone.model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert backbone.fingerprint == state_dict_fingerprint(expected)


def test_a_tag_loads_its_local_file_exactly_with_timms_preprocessing(published, images):
    path, expected = published
    backbone = create_backbone(TAG, checkpoint=str(path), **SMALL)
    report = backbone.load_report
    assert_loaded(backbone, expected)
    assert report.layout == "timm" and report.file == str(path)
    assert report.loaded == len(expected) and sorted(report.dropped) == ["fc.bias", "fc.weight"]
    assert backbone.preprocessing == A1_PREPROCESSING  # timm's pretrained_cfg, not a default
    assert backbone.name == TAG and backbone.embed_dim == 2048

    # the same weights and embeddings as timm's own loader with pretrained_cfg_overlay=dict(file=...)
    by_timm = timm.create_model(TAG, pretrained=True, num_classes=0,
                                pretrained_cfg_overlay={"file": str(path)}, **SMALL).eval()
    assert_loaded(backbone, by_timm.state_dict())
    reference = Backbone(by_timm, "timm", A1_PREPROCESSING).eval()
    with torch.no_grad():
        assert torch.equal(backbone.eval()(images), reference(images))


@pytest.mark.parametrize("file_name", ["model.safetensors", "pytorch_model.bin"])
def test_a_tag_loads_from_the_hugging_face_cache(published, hub_cache, tmp_path, file_name):
    path, expected = published
    if file_name.endswith(".bin"):  # older Hub repositories publish a torch file only
        path = tmp_path / file_name
        classifier = {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
        torch.save({**expected, **classifier}, path)
    (cached,) = put_in_hub_cache(hub_cache, "timm/resnet50.a1_in1k", {file_name: path})
    backbone = create_backbone(TAG, **SMALL)
    report = backbone.load_report
    assert report.file == str(cached)
    assert_loaded(backbone, expected)


def test_a_tag_published_by_url_only_is_found_in_the_torch_hub_cache(published, offline_weights_cache):
    path, _ = published
    weights = find_timm_weights(TAG)
    url = "https://example.org/weights/resnet50_a1-0123abcd.pth"
    by_url = dataclasses.replace(weights, pretrained_cfg={**weights.pretrained_cfg, "hf_hub_id": None,
                                                          "url": url})
    with pytest.raises(WeightsNotFoundError) as raised:
        resolve_timm_file(by_url, None)
    message = str(raised.value)
    assert str(offline_weights_cache / "resnet50_a1-0123abcd.pth") in message and url in message
    offline_weights_cache.mkdir(parents=True)
    (offline_weights_cache / "resnet50_a1-0123abcd.pth").write_bytes(path.read_bytes())
    assert resolve_timm_file(by_url, None) == offline_weights_cache / "resnet50_a1-0123abcd.pth"


@pytest.mark.parametrize("variable", ["MEDTRANSFER_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_without_a_file_fails_with_one_line_saying_where_it_goes(variable, hub_cache, monkeypatch):
    monkeypatch.delenv("MEDTRANSFER_OFFLINE")
    monkeypatch.setenv(variable, "1")
    with pytest.raises(WeightsNotFoundError) as raised:
        create_backbone(TAG, **SMALL)
    message = str(raised.value)
    assert "\n" not in message
    assert f"offline ({variable} is set)" in message
    assert "https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors" in message
    assert "model.init_args.checkpoint" in message and str(hub_cache) in message


def test_online_the_file_is_downloaded_into_the_cache_preferring_safetensors(published, hub_cache, tmp_path,
                                                                              monkeypatch):
    """The Hub client stands in for the network: this repository has no safetensors file, only the .bin."""
    path, expected = published
    monkeypatch.delenv("MEDTRANSFER_OFFLINE")
    torch.save({**expected, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)},
               tmp_path / "pytorch_model.bin")
    asked = []

    def hf_hub_download(repo, filename, revision=None, cache_dir=None):
        asked.append(filename)
        assert repo == "timm/resnet50.a1_in1k" and Path(cache_dir) == hub_cache
        if filename != "pytorch_model.bin":
            raise EntryNotFoundError(f"{filename} is not in {repo}")
        return str(put_in_hub_cache(hub_cache, repo, {filename: tmp_path / filename})[0])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    backbone = create_backbone(TAG, **SMALL)
    assert asked == ["model.safetensors", "pytorch_model.bin"]
    assert_loaded(backbone, expected)

    def no_connection(repo, filename, revision=None, cache_dir=None):
        raise LocalEntryNotFoundError("cannot reach the Hub and the file is not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_connection)
    with pytest.raises(WeightsNotFoundError, match="resnet50.a1h_in1k: model.safetensors of .* the download "
                                                   "failed \\(LocalEntryNotFoundError: cannot reach"):
        create_backbone("resnet50.a1h_in1k", **SMALL)


def test_an_export_of_a_tag_backbone_reloads_by_the_tag(published, tmp_path):
    """Self-supervised pretraining from timm's weights exports the backbone; the tag with the export as the
    checkpoint rebuilds it (the export's own layout, preprocessing and fingerprint check)."""
    path, expected = published
    backbone = create_backbone(TAG, checkpoint=str(path), **SMALL)
    export = save_backbone(backbone, tmp_path / "backbone.pt")
    reloaded = create_backbone(TAG, checkpoint=export["path"])
    report = reloaded.load_report
    assert report.layout == "medtransfer" and reloaded.preprocessing == A1_PREPROCESSING
    assert_loaded(reloaded, expected)


def test_a_missing_local_file_is_named(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.safetensors does not exist.*model.safetensors of "
                                                   "https://huggingface.co/timm/resnet50.a1_in1k"):
        create_backbone(TAG, checkpoint=str(tmp_path / "nope.safetensors"))


def test_a_file_of_other_weights_fails_listing_the_keys(references, tmp_path):
    path = tmp_path / "resnet18.safetensors"
    save_file(references.get("resnet18").state_dict(), str(path))
    with pytest.raises(CheckpointMismatchError) as raised:
        create_backbone(TAG, checkpoint=str(path), **SMALL)
    assert "layout timm" in str(raised.value) and "shape mismatch" in str(raised.value)


def test_vit_files_go_through_timms_checkpoint_filter(tmp_path):
    """timm converts published files on load (here: a ViT's position embedding resampled to another image
    size); medtransfer applies the same conversion, then loads exactly, and matches timm's loader."""
    published = timm.create_model("test_vit.r160_in1k", pretrained=False)  # 160 px, with its classifier
    path = tmp_path / "model.safetensors"
    save_file(published.state_dict(), str(path))
    model = timm.create_model("test_vit.r160_in1k", num_classes=0)
    assert checkpoint_filter(model) is vision_transformer.checkpoint_filter_fn  # fails if timm renames it

    backbone = create_backbone("test_vit.r160_in1k", checkpoint=str(path), img_size=64)
    report = backbone.load_report
    by_timm = timm.create_model("test_vit.r160_in1k", pretrained=True, num_classes=0, img_size=64,
                                pretrained_cfg_overlay={"file": str(path)})
    assert backbone.model.pos_embed.shape != published.pos_embed.shape
    assert_loaded(backbone, by_timm.state_dict())
    assert sorted(report.dropped) == ["head.bias", "head.weight"]
    assert backbone.preprocessing == Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 160, "bicubic")


def test_an_hf_hub_model_loads_from_the_cache_with_its_config(references, hub_cache, tmp_path):
    """A timm-format model on the Hub (say a pathology foundation model): config.json and weights cached."""
    reference = references.get("test_resnet")
    weights = tmp_path / "model.safetensors"
    save_file(reference.state_dict(), str(weights))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "architecture": "test_resnet", "num_classes": 0, "model_args": {"drop_rate": 0.0},
        "pretrained_cfg": {"mean": [0.7, 0.6, 0.5], "std": [0.2, 0.2, 0.2], "input_size": [3, 64, 64],
                           "interpolation": "bilinear", "num_classes": 0, "classifier": "fc"},
    }))
    files = {"config.json": config, "model.safetensors": weights}
    put_in_hub_cache(hub_cache, "medlab/tiny-pathology", files)
    backbone = create_backbone("hf-hub:medlab/tiny-pathology")
    report = backbone.load_report
    assert_loaded(backbone, reference.state_dict())
    assert report.dropped == [] and backbone.arch == "test_resnet"
    assert backbone.preprocessing == Preprocessing((0.7, 0.6, 0.5), (0.2, 0.2, 0.2), 64, "bilinear")


def test_an_hf_hub_model_offline_without_its_config_fails_with_one_line(hub_cache):
    with pytest.raises(WeightsNotFoundError) as raised:
        create_backbone("hf-hub:medlab/tiny-pathology")
    message = str(raised.value)
    assert "\n" not in message and "config.json of medlab/tiny-pathology" in message
    assert str(hub_cache) in message
    assert "medtransfer weights download hf-hub:medlab/tiny-pathology" in message


@pytest.mark.parametrize(("name", "closest"), [
    ("resnet50.a1_in1kk", TAG), ("resnet50.swav", "resnet50.swav_in1k"), ("resnett50", "resnet50"),
    ("resnet50.nope", "resnet50."),  # a known architecture: its weights
])
def test_an_unknown_name_says_the_closest_names(name, closest):
    with pytest.raises(UnknownBackboneError) as raised:
        create_backbone(name)
    message = str(raised.value)
    assert "\n" not in message and closest in message.split("closest:")[1]
    assert "medtransfer weights list" in message


def test_weights_cli_lists_checks_and_downloads_timm_tags(published, hub_cache, capsys):
    path, expected = published
    assert weights_main(["list"]) == 0
    assert "medtransfer weights list --timm" in capsys.readouterr().out

    put_in_hub_cache(hub_cache, "timm/resnet50.a1_in1k", {"model.safetensors": path})
    assert weights_main(["list", "--timm", "resnet50.a1*", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[TAG]["present"] is True and rows["resnet50.a1h_in1k"]["present"] is False
    assert rows[TAG]["interpolation"] == "bicubic" and rows[TAG]["source"] == "hf-hub:timm/resnet50.a1_in1k"

    assert weights_main(["check", TAG, "--timm_kwarg", "layers=[1, 1, 1, 1]"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exact"] and summary["layout"] == "timm"
    assert summary["fingerprint"] == state_dict_fingerprint(expected)

    assert weights_main(["download", TAG, "resnet50.a1h_in1k", "resnet50.nope"]) == 1
    output = capsys.readouterr()
    assert f"{TAG}: {hub_cache}" in output.out
    assert "resnet50.a1h_in1k: FAILED" in output.err and "resnet50.nope: FAILED" in output.err


def test_a_run_by_timm_tag_from_the_command_line(references, tmp_path, tiny_cli, capsys):
    """``medtransfer fit --model.init_args.backbone test_resnet.r160_in1k`` with the tag's file as the
    checkpoint: results.json names the tag and carries the fingerprint of exactly those weights; without the
    file (offline), and with an unknown name, the run ends before it starts: one line, exit status 2."""
    reference = references.get("test_resnet")
    path = tmp_path / "model.safetensors"
    save_file(reference.state_dict(), str(path))
    runs = tmp_path / "runs"
    args = [*tiny_cli(runs, num_train=16, num_val=8, num_test=8, name="tag"),
            "--trainer.limit_train_batches", "1", "--model.init_args.backbone", "test_resnet.r160_in1k"]
    main(["fit", *args, "--model.init_args.checkpoint", str(path)])
    results = json.loads(next((runs / "tag").glob("version_*/results.json")).read_text())
    (backbone,) = results["model"]["backbones"]
    assert backbone["name"] == "test_resnet.r160_in1k"
    assert backbone["fingerprint"] == state_dict_fingerprint(reference.state_dict())
    assert backbone["preprocessing"]["input_size"] == 160  # timm's pretrained_cfg for the tag
    capsys.readouterr()

    for override, expected in (("test_resnet.r160_in1k", "test_resnet.r160_in1k: model.safetensors of "
                                "timm/test_resnet.r160_in1k is not on this machine and offline"),
                               ("test_resnet.r160_in1kk", "closest: test_resnet.r160_in1k")):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", *args, "--model.init_args.backbone", override])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("medtransfer: error:") and "\n" not in error and expected in error
