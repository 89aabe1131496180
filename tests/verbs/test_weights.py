"""``medtransfer weights list|check|download``, and a run by registry name from YAML with a real-layout,
real-size checkpoint."""

from __future__ import annotations

import json

import pytest

from medtransfer.backbones import REGISTRY
from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.cli import main
from medtransfer.verbs.weights import main as weights_main
from tests.backbones.source_layouts import WRITERS

SMALL_RESNET = ["--timm_kwarg", "layers=[1, 1, 1, 1]"]


@pytest.fixture
def small_swav(references, tmp_path):
    reference = references.get("resnet50", layers=(1, 1, 1, 1))
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    dropped = WRITERS["swav"](reference.state_dict(), path)
    return path, reference, dropped


def test_list_shows_every_entry_and_local_presence(small_swav, offline_weights_cache, capsys):
    offline_weights_cache.mkdir(parents=True)
    small_swav[0].rename(offline_weights_cache / "swav_800ep_pretrain.pth.tar")
    with pytest.raises(SystemExit) as exit_info:
        main(["weights", "list"])
    assert exit_info.value.code == 0
    table = capsys.readouterr().out
    for name in REGISTRY:
        assert name in table
    assert "swav_800ep_pretrain" in table and str(offline_weights_cache) in table

    assert weights_main(["list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows.keys() == REGISTRY.keys()
    assert rows["resnet50.swav_in1k"]["present"] is True
    assert rows["resnet50.tv_in1k"]["present"] is False
    assert rows["vit_small_patch16_224.dino"]["embed_dim"] == 1536
    assert rows["resnet50.byol_in1k"]["source"].startswith("convert by hand")


def test_check_prints_an_exact_summary(small_swav, capsys):
    path, reference, dropped = small_swav
    assert weights_main(["check", "resnet50.swav_in1k", "--checkpoint", str(path), *SMALL_RESNET]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["exact"] is True
    assert summary["keys_loaded"] == len(reference.state_dict())
    assert sorted(summary["keys_dropped"]) == sorted(dropped)
    assert summary["embed_dim"] == 2048 and summary["layout"] == "swav"
    assert summary["fingerprint"] == state_dict_fingerprint(reference.state_dict())
    assert summary["published_sha256"] is None and summary["sha256_matches_published"] is None


def test_check_of_a_plain_architecture_detects_the_layout(small_swav, capsys):
    path, _, _ = small_swav
    assert weights_main(["check", "resnet50", "--checkpoint", str(path), *SMALL_RESNET]) == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "swav"


def test_check_fails_with_the_keys_when_inexact(small_swav, capsys):
    path, _, _ = small_swav
    assert weights_main(["check", "resnet50.mocov2_in1k", "--checkpoint", str(path), *SMALL_RESNET]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["exact"] is False
    assert "expected the weights under 'state_dict'" in summary["error"]
    assert "reads this file as: swav" in summary["error"]


def test_check_and_download_when_nothing_is_there(offline_weights_cache, capsys):
    assert weights_main(["check", "resnet50.dino_in1k"]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert str(offline_weights_cache / "dino_resnet50_pretrain.pth") in error
    assert weights_main(["download", "resnet50.tv_in1k", "resnet50.byol_in1k"]) == 1
    errors = capsys.readouterr().err
    assert "resnet50.tv_in1k: FAILED" in errors and "resnet50-0676ba61.pth" in errors
    assert "chigur/byol-convert" in errors
    assert weights_main(["download"]) == 2
