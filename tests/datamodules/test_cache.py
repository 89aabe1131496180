"""Prepared caches (``medtransfer prepare --cache``): the same samples as the original files, refused when
stale, never half-written, unreadable images named or skipped."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from medtransfer.cli import main
from medtransfer.datamodules import ChestXray14, ChestXrayPneumonia, CSVDataset, EyePACS, ImageFolder
from medtransfer.datamodules import cache as cache_module
from medtransfer.datamodules.cache import CacheError, prepared_pixels
from medtransfer.datamodules.errors import CorruptImageError
from medtransfer.errors import ConfigValueError

from .conftest import write_image

REPO = Path(__file__).resolve().parents[2]


def csv_root(imagefolder_root: Path) -> Path:
    """The image-folder fixture listed in a CSV with patient and split columns."""
    rows = ["path,label,patient,split"]
    patients = sorted({path.name[:4] for path in imagefolder_root.rglob("*.png")})
    tested = set(patients[::5])  # every 5th patient's images, all of them: no patient in two splits
    for path in sorted(imagefolder_root.rglob("*.png")):
        rows.append(f"{path.relative_to(imagefolder_root)},{path.parent.name},{path.name[:4]},"
                    f"{'test' if path.name[:4] in tested else 'train'}")
    (imagefolder_root / "labels.csv").write_text("\n".join(rows) + "\n")
    return imagefolder_root


DATASETS = {
    "eyepacs": (EyePACS, "eyepacs_root", {}),
    "chestxray14": (ChestXray14, "chestxray14_root", {"val_fraction": 0.25}),
    "pneumonia": (ChestXrayPneumonia, "pneumonia_root", {}),
    "folder": (ImageFolder, "imagefolder_root", {"patient_pattern": r"^(P\d+)_", "val_fraction": 0.2}),
    "csv": (CSVDataset, "imagefolder_root", {"patient_column": "patient", "split_column": "split"}),
}


def make(name: str, request, **kwargs):
    cls, fixture, extra = DATASETS[name]
    root = request.getfixturevalue(fixture)
    if name == "csv":
        root = csv_root(root)
    return lambda **more: cls(root=str(root), batch_size=4, image_size=64, **extra, **kwargs, **more)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_a_cache_serves_exactly_the_original_samples(name, request, tmp_path, check_batches):
    build = make(name, request)
    native = build()
    cached = build(cache_dir=str(tmp_path / "cache"))
    folder = cached.prepare_cache(workers=1)
    assert json.loads((folder / "manifest.json").read_text())["unreadable"] == 0
    native.setup("fit")
    cached.setup("fit")
    for split in ("train", "val", "test"):
        expected, got = native.sources()[split], cached.sources()[split]
        assert got.ids == expected.ids, split
        assert np.array_equal(got.labels, expected.labels), split
        assert (got.groups is None) == (expected.groups is None), split
        assert got.pixel_stamps() == expected.pixel_stamps(), split  # one feature store for both
        if expected.groups is not None:
            assert np.array_equal(got.groups, expected.groups), split
        # the fixtures' images are smaller than the cache size: stored as decoded (and cropped), so the
        # evaluation batches are the originals' to the bit
        ours = next(iter(cached.eval_dataloader(split)))
        theirs = next(iter(native.eval_dataloader(split)))
        assert ours["id"] == theirs["id"]
        assert torch.equal(ours["label"], theirs["label"])
        assert torch.equal(ours["image"], theirs["image"]), split
    check_batches(cached, 64)
    assert cached.data_fingerprint()["cache"] == {"size": 64, "crop_border": name == "eyepacs"}


def test_grey_images_are_cached_grey_and_resized_by_their_short_side(pneumonia_root, tmp_path):
    dm = ChestXrayPneumonia(root=str(pneumonia_root), image_size=16, cache_dir=str(tmp_path / "c"))
    dm.prepare_cache(workers=2)  # a process pool, as on a real machine
    source = dm.sources()["test"]
    pixels = source.load_pixels(0)
    assert cv2.imread(source.paths[0], cv2.IMREAD_GRAYSCALE).shape == (36, 44)  # the fixture's X-rays
    assert pixels.shape == (16, 20)
    assert source.load_image(0).shape == (*pixels.shape, 3)  # the three-channel contract still holds


def test_fundus_border_is_cropped_before_resizing(tmp_path):
    image = np.zeros((300, 500, 3), np.uint8)
    image[20:280, 120:380] = 200  # a 260 x 260 "retina" on a black border
    path = write_image(tmp_path / "f.png", image)
    settings = cache_module.CacheSettings(size=64, crop_border=True, grey=False)
    assert prepared_pixels(str(path), settings).shape == (64, 64, 3)
    settings = cache_module.CacheSettings(size=64, crop_border=False, grey=False)
    assert prepared_pixels(str(path), settings).shape == (64, 107, 3)


def test_a_changed_source_file_makes_the_cache_stale_until_prepared_again(eyepacs_root, tmp_path):
    build = lambda: EyePACS(root=str(eyepacs_root), image_size=64, cache_dir=str(tmp_path / "cache"))  # noqa: E731
    build().prepare_cache(workers=1)
    changed = eyepacs_root / "train" / "3_left.jpeg"
    changed.write_bytes(changed.read_bytes() + b"\0")  # another size (and mtime)
    with pytest.raises(CacheError, match=r"stale.*3_left\.jpeg.*modified.*medtransfer prepare --cache"):
        build().setup("fit")
    folder = build().prepare_cache(workers=1)  # rebuilt in place
    build().setup("fit")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [folder.name]


def test_a_file_listed_after_preparing_is_not_read_from_a_stale_cache(eyepacs_root, tmp_path):
    build = lambda: EyePACS(root=str(eyepacs_root), image_size=64, cache_dir=str(tmp_path / "c"))  # noqa: E731
    build().prepare_cache(workers=1)
    write_image(eyepacs_root / "train" / "99_left.jpeg", np.full((40, 56, 3), 90, np.uint8))
    with (eyepacs_root / "trainLabels.csv").open("a") as handle:
        handle.write("99_left,1\n")
    with pytest.raises(CacheError, match=r"1 listed image\(s\) are not in it.*99_left\.jpeg"):
        build().setup("fit")


def test_other_settings_need_their_own_cache(eyepacs_root, tmp_path):
    EyePACS(root=str(eyepacs_root), image_size=64, cache_dir=str(tmp_path / "c")).prepare_cache(workers=1)
    other = EyePACS(root=str(eyepacs_root), image_size=64, cache_size=96, cache_dir=str(tmp_path / "c"))
    with pytest.raises(CacheError, match=r"no prepared cache.*short side 96.*holds EyePACS caches.*short "
                                         r"side 64.*medtransfer prepare --cache"):
        other.setup("fit")
    with pytest.raises(CacheError, match="no prepared cache"):  # asking again never reads the originals
        other.sources()
    with pytest.raises(ConfigValueError, match="cache_size: 32 is smaller than data.init_args.image_size 64"):
        EyePACS(root=str(eyepacs_root), image_size=64, cache_size=32, cache_dir=str(tmp_path / "c"))


def test_an_interrupted_prepare_leaves_nothing_that_looks_like_a_cache(eyepacs_root, tmp_path, monkeypatch):
    dm = EyePACS(root=str(eyepacs_root), image_size=64, cache_dir=str(tmp_path / "c"))
    decoded = []

    def interrupted(path, settings):
        if len(decoded) == 5:
            raise KeyboardInterrupt
        decoded.append(path)
        return np.zeros((8, 8, 3), np.uint8)

    monkeypatch.setattr(cache_module, "prepared_pixels", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_cache(workers=1)
    assert list((tmp_path / "c").iterdir()) == []
    # a prepare killed outright leaves its hidden work folder: never read, removed by the next prepare
    monkeypatch.undo()
    fresh = EyePACS(root=str(eyepacs_root), image_size=64, cache_dir=str(tmp_path / "c"))
    folder = fresh.cache_location(fresh.build_sources())
    leftover = folder.with_name(f".{folder.name}.tmp-{socket.gethostname()}-{dead_pid()}")
    leftover.mkdir()
    (leftover / "manifest.json").write_text("{}")
    with pytest.raises(CacheError, match="no prepared cache"):
        fresh.setup("fit")
    fresh.prepare_cache(workers=1)
    assert [p.name for p in (tmp_path / "c").iterdir()] == [folder.name]


def dead_pid() -> int:
    pid = 2**22 - 1
    while pid > 1:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1
    raise RuntimeError("no free pid")


def test_an_unreadable_image_is_named_or_counted_and_skipped(aptos_root, tmp_path):
    from medtransfer.datamodules import APTOS2019

    broken = sorted((aptos_root / "train_images").iterdir())[3]
    broken.write_bytes(b"not a png")
    strict = APTOS2019(root=str(aptos_root), image_size=64, cache_dir=str(tmp_path / "c"))
    with pytest.raises(CorruptImageError, match=rf"{broken.name}.*train\.csv row \d+.*no cache was written"
                                                r".*skip_corrupt"):
        strict.prepare_cache(workers=1)
    assert list((tmp_path / "c").iterdir()) == []
    lenient = APTOS2019(root=str(aptos_root), image_size=64, cache_dir=str(tmp_path / "c"), skip_corrupt=True)
    folder = lenient.prepare_cache(workers=1)
    assert json.loads((folder / "manifest.json").read_text())["unreadable"] == 1
    lenient.setup("fit")
    split, index = next((s, src.ids.index(broken.stem)) for s, src in lenient.sources().items()
                        if broken.stem in src.ids)
    dataset = lenient.dataset(split, train_transform=False)
    assert dataset[index] is None  # dropped from its batch, like an unreadable original
    assert broken.stem in lenient.sources()[split].parent.skipped
    # the same cache read without skip_corrupt names the file
    strict_reader = APTOS2019(root=str(aptos_root), image_size=64, cache_dir=str(tmp_path / "c"))
    with pytest.raises(CorruptImageError, match=rf"{broken.name}: unreadable when the cache was prepared"):
        strict_reader.sources()[split].load_image(index)


def test_prepare_cache_from_the_command_line(imagefolder_root, tmp_path, capsys):
    args = ["prepare", "--config", str(REPO / "configs/data/imagefolder.yaml"),
            "--data.init_args.root", str(imagefolder_root), "--data.init_args.image_size", "16",
            "--data.init_args.cache_dir", str(tmp_path / "c"), "--cache", "--cache_workers", "1"]
    assert run_cli(args) == 0
    report = capsys.readouterr().out
    assert "prepared cache: " in report and "ImageFolder: multiclass task" in report
    assert run_cli(args[:-3]) == 0  # reading it back: the summary without --cache


def test_prepare_cache_refuses_datasets_of_arrays(tmp_path, capsys):
    args = ["prepare", "--config", str(REPO / "configs/data/synthetic.yaml"), "--cache"]
    assert run_cli(args) == 2
    assert "--cache: SyntheticMedical has no prepared cache to write" in capsys.readouterr().err


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_a_cache_folder_that_refuses_writes_is_a_named_error(eyepacs_root, tmp_path, code):
    from medtransfer.utils.atomic import OutputWriteError
    from tests.faults.harness import failing_writes

    cache = tmp_path / "cache"
    dm = EyePACS(root=str(eyepacs_root), image_size=64, cache_dir=str(cache))
    with failing_writes(code, cache), pytest.raises(OutputWriteError, match="cannot write .*cache"):
        dm.prepare_cache(workers=1)
    assert not any(p.name.startswith(".") for p in cache.rglob("*"))
