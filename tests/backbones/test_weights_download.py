"""Where weights come from: a given file, the torch hub cache, or a checksum-verified download; offline and
missing is an error naming the URL and the exact path to put the file at."""

from __future__ import annotations

import dataclasses

import pytest

from medtransfer.backbones import REGISTRY, ChecksumError, WeightsNotFoundError, create_backbone
from medtransfer.backbones.download import download
from medtransfer.utils.hashing import file_digest

from .source_layouts import WRITERS


def test_offline_and_missing_names_the_url_and_the_path(offline_weights_cache):
    entry = REGISTRY["resnet50.swav_in1k"]
    with pytest.raises(WeightsNotFoundError) as raised:
        create_backbone(entry.name)
    message = str(raised.value)
    assert entry.url in message
    assert str(offline_weights_cache / "swav_800ep_pretrain.pth.tar") in message
    assert "MEDTRANSFER_OFFLINE" in message


def test_weights_without_a_download_say_how_to_make_them(offline_weights_cache):
    with pytest.raises(WeightsNotFoundError) as raised:
        create_backbone("resnet50.simclr_in1k")
    message = str(raised.value)
    assert "tonylins/simclr-converter" in message and "resnet50-1x.pth" in message
    assert str(offline_weights_cache / "resnet50-1x.pth") in message


def test_the_cached_file_is_used_when_no_checkpoint_is_given(references, offline_weights_cache):
    entry = REGISTRY["resnet50.swav_in1k"]
    reference, small = references.for_entry(entry)
    offline_weights_cache.mkdir(parents=True)
    WRITERS["swav"](reference.state_dict(), offline_weights_cache / entry.file_name)
    report = create_backbone(entry.name, **small).load_report
    assert report.file == str(offline_weights_cache / entry.file_name)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("MEDTRANSFER_OFFLINE")


def served_entry(tmp_path, sha256: str | None):
    """The Barlow Twins entry pointing at a local file:// URL (no network in tests)."""
    source = tmp_path / "served" / "resnet50.pth"
    source.parent.mkdir()
    source.write_bytes(b"weights" * 1000)
    entry = dataclasses.replace(REGISTRY["resnet50.barlowtwins_in1k"], url=source.as_uri(), sha256=sha256)
    return entry, source


def test_download_verifies_the_checksum_and_caches(online, tmp_path, offline_weights_cache):
    entry, source = served_entry(tmp_path, sha256=None)
    entry = dataclasses.replace(entry, sha256=file_digest(source)[:8])
    path = download(entry)
    assert path == offline_weights_cache / "resnet50.pth"
    assert path.read_bytes() == source.read_bytes()


def test_download_with_a_wrong_checksum_keeps_nothing(online, tmp_path, offline_weights_cache):
    entry, _ = served_entry(tmp_path, sha256="deadbeef")
    with pytest.raises(ChecksumError, match="published SHA-256"):
        download(entry)
    assert not (offline_weights_cache / "resnet50.pth").exists()


def test_failed_download_names_the_url_and_the_path(online, tmp_path, offline_weights_cache):
    entry, source = served_entry(tmp_path, sha256=None)
    source.unlink()
    with pytest.raises(WeightsNotFoundError) as raised:
        download(entry)
    assert entry.url in str(raised.value)
    assert str(offline_weights_cache / "resnet50.pth") in str(raised.value)
