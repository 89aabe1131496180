"""Downloads, exercised on local file:// URLs (tests never touch the network)."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from medtransfer.datamodules import MedMNIST, PCam
from medtransfer.datamodules import medmnist as medmnist_module
from medtransfer.datamodules import pcam as pcam_module
from medtransfer.datamodules.download import DownloadError, download_file

from .conftest import write_medmnist


def test_download_checks_md5_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "remote.bin"
    source.write_bytes(b"x" * 5000)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    target = download_file(source.as_uri(), tmp_path / "local" / "file.bin", md5)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(source.as_uri(), tmp_path / "other.bin", "0" * 32)
    assert not (tmp_path / "other.bin").exists() and not list(tmp_path.glob(".other.bin.*"))  # nor a partial
    with pytest.raises(DownloadError, match="could not download .* by hand from the page"):
        download_file((tmp_path / "absent").as_uri(), tmp_path / "x.bin", get_from="the page")


def test_pcam_download_fetches_checks_and_decompresses(pcam_root, tmp_path, monkeypatch):
    remote = tmp_path / "zenodo"
    remote.mkdir()
    checksums = {}
    for path in pcam_root.glob("*.h5"):
        gz = remote / f"{path.name}.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        checksums[gz.name] = hashlib.md5(gz.read_bytes()).hexdigest()
    monkeypatch.setattr(pcam_module, "ZENODO", remote.as_uri() + "/{name}")
    monkeypatch.setattr(pcam_module, "FILE_MD5", checksums)
    dm = PCam(root=str(tmp_path / "fresh"), download=True)
    dm.prepare_data()
    assert {k: len(v) for k, v in dm.sources().items()} == {"train": 24, "val": 8, "test": 8}


def test_medmnist_download(tmp_path, monkeypatch):
    write_medmnist(tmp_path / "zenodo" / "pneumoniamnist_64.npz", {"train": 4, "val": 2, "test": 2}, size=64)
    monkeypatch.setattr(medmnist_module, "ZENODO", (tmp_path / "zenodo").as_uri() + "/{name}")
    dm = MedMNIST(root=str(tmp_path / "data"), flag="pneumoniamnist", size=64, download=True)
    dm.prepare_data()
    assert len(dm.sources()["train"]) == 4
    assert (tmp_path / "data" / "pneumoniamnist_64.npz").exists()
