"""Image decoding and unreadable images: clear errors naming file and row, or logged, counted skips."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medtransfer.datamodules import CSVDataset, ImageFolder
from medtransfer.datamodules.dataset import TransformedDataset, collate_skipping
from medtransfer.datamodules.errors import CorruptImageError
from medtransfer.datamodules.images import (
    FileSource,
    image_suffixes,
    iter_image_files,
    missing_files,
    read_image,
)
from medtransfer.datamodules.transforms import build_transform

from .conftest import write_image


def test_read_image_modes(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    rgba = np.dstack([np.full((12, 10), v, np.uint8) for v in (10, 20, 30, 255)])
    for name, array, mode in (
        ("g.png", grey, "L"),
        ("c.png", rgba, "RGBA"),
        ("j.jpg", np.dstack([grey] * 3), None),
    ):
        write_image(tmp_path / name, array, mode)
    assert np.array_equal(read_image(tmp_path / "g.png"), np.dstack([grey] * 3))
    assert read_image(tmp_path / "c.png").shape == (12, 10, 3)
    assert np.array_equal(read_image(tmp_path / "c.png")[0, 0], [10, 20, 30])
    grey_of_rgba = read_image(tmp_path / "c.png", grey=True)
    assert (grey_of_rgba[..., 0] == grey_of_rgba[..., 2]).all()
    sixteen = tmp_path / "s.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(sixteen)
    assert read_image(sixteen).dtype == np.uint8 and read_image(sixteen).max() == 255


def test_jpeg_draft_decodes_large_images_smaller(tmp_path):
    write_image(tmp_path / "big.jpeg", np.random.default_rng(0).integers(0, 255, (800, 1200, 3), np.uint8))
    assert read_image(tmp_path / "big.jpeg", draft_size=200).shape == (200, 300, 3)


def test_corrupt_and_missing_images_name_the_file_and_row(tmp_path):
    good = write_image(tmp_path / "good.jpeg", np.full((30, 30, 3), 128, np.uint8))
    truncated = tmp_path / "truncated.jpeg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (tmp_path / "text.png").write_text("not an image")
    source = FileSource(
        [truncated, tmp_path / "text.png", tmp_path / "gone.png"],
        np.zeros(3, np.int64),
        ["t", "x", "g"],
        origins=["labels.csv row 2", "labels.csv row 3", "labels.csv row 4"],
    )
    for index, (name, row) in enumerate((("truncated.jpeg", 2), ("text.png", 3), ("gone.png", 4))):
        with pytest.raises(CorruptImageError, match=rf"{name}.*labels.csv row {row}.*skip_corrupt"):
            source.load_image(index)


def test_missing_listed_images_are_named_in_one_line(tmp_path):
    """The first line of the message is all the command shows: it names the missing files themselves."""
    names = [f"scan{i}.png" for i in range(7)]
    write_image(tmp_path / "scan0.png", np.zeros((8, 8, 3), np.uint8))
    origins = [f"list.csv row {i + 2}" for i in range(7)]
    message = missing_files([tmp_path / name for name in names], origins)
    assert "\n" not in message
    shown = ", ".join(f"{tmp_path}/scan{i}.png (list.csv row {i + 2})" for i in range(1, 6))
    assert message == f"6 of 7 listed images are missing: {shown} and 1 more"


def test_skip_corrupt_drops_the_item_from_its_batch_and_logs_it(tmp_path, caplog):
    paths = [write_image(tmp_path / f"{i}.png", np.full((8, 8), 40 * i, np.uint8)) for i in range(4)]
    paths[2].write_bytes(b"\x89PNG broken")
    source = FileSource(paths, np.asarray([0, 1, 0, 1]), ["a", "b", "c", "d"], skip_corrupt=True)
    dataset = TransformedDataset(source, build_transform("none", 8, train=False))
    with caplog.at_level(logging.WARNING):
        batch = collate_skipping([dataset[i] for i in range(4)])
    assert batch["id"] == ["a", "b", "d"] and batch["image"].shape == (3, 3, 8, 8)
    assert torch.equal(batch["label"], torch.tensor([0, 1, 1]))
    assert "skipping sample c" in caplog.text and "1 skipped so far" in caplog.text
    assert list(source.skipped) == ["c"]
    with pytest.raises(RuntimeError, match="all 1 images of a batch were unreadable"):
        collate_skipping([dataset[2]])


def test_image_listing_ignores_macos_debris_and_dot_files(tmp_path):
    write_image(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "__MACOSX" / "a" / "._x.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "a" / ".hidden.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert [p.name for p in iter_image_files(tmp_path)] == ["x.png"]


def picture(seed: int) -> np.ndarray:
    """A 12 x 10 RGB image of at most 16 colours, so that GIF's 256-colour palette holds it exactly."""
    palette = np.random.default_rng(seed).integers(0, 256, (16, 3), dtype=np.uint8)
    return palette[np.arange(120).reshape(12, 10) % 16]


LOSSLESS = {"png": {}, "webp": {"lossless": True}, "tif": {}, "tiff": {"compression": "tiff_lzw"},
            "bmp": {}, "gif": {}, "ppm": {}}


def test_every_lossless_format_pillow_decodes_is_found_and_read_exactly(tmp_path):
    written = {}
    for index, (suffix, options) in enumerate(LOSSLESS.items()):
        path = tmp_path / f"image{index}.{suffix}"
        Image.fromarray(picture(index)).save(path, **options)
        written[path.name] = picture(index)
    assert {".webp", ".gif", ".tif", ".bmp", ".jp2", ".ppm"} <= image_suffixes()
    assert not {".h5", ".mpg", ".txt", ".dcm", ".csv"} & image_suffixes()  # Pillow only identifies the first
    assert [p.name for p in iter_image_files(tmp_path)] == sorted(written)
    for name, array in written.items():
        assert np.array_equal(read_image(tmp_path / name), array), name


def test_an_animated_gif_is_read_as_its_first_frame(tmp_path):
    frames = [Image.fromarray(picture(seed)) for seed in (1, 2, 3)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    assert np.array_equal(read_image(tmp_path / "clip.gif"), picture(1))


def test_files_that_are_not_images_are_counted_and_named_never_dropped_in_silence(tmp_path, caplog):
    write_image(tmp_path / "a" / "x.webp", picture(0))
    for name in ("notes.txt", "scan1.dcm", "scan2.dcm", "README"):
        (tmp_path / "a" / name).write_text("x")
    with pytest.warns(UserWarning) as warned, caplog.at_level(logging.INFO):
        found = iter_image_files(tmp_path)
    assert [p.name for p in found] == ["x.webp"]
    (message,) = [str(w.message) for w in warned]
    assert message.startswith(f"4 file(s) under {tmp_path} are not images Pillow reads (2 .dcm, 1 .txt, 1 no "
                              "extension) and are left out: a/README, a/notes.txt, a/scan1.dcm, a/scan2.dcm")
    assert all(f"left out (not an image Pillow reads): {tmp_path / 'a' / n}" in caplog.text
               for n in ("notes.txt", "scan1.dcm", "scan2.dcm", "README"))


def test_training_data_reads_the_same_formats_from_a_folder_and_from_a_csv(tmp_path):
    """ImageFolder finds a WEBP, TIFF and BMP among PNGs and names the text file it leaves out; a CSVDataset
    listing the same files reads every one of them."""
    for number, split in enumerate(("train", "val", "test")):
        for label, name in enumerate(("benign", "malignant")):
            for index, suffix in enumerate(("png", "webp", "tif", "bmp")):
                path = tmp_path / split / name / f"{index}.{suffix}"
                write_image(path, picture(index + 4 * label + 8 * number))
        (tmp_path / split / "benign" / "notes.txt").write_text("not an image")
    said = r"1 file\(s\) under .*benign are not images Pillow reads.*notes.txt"
    with pytest.warns(UserWarning, match=said):
        folder = ImageFolder(root=str(tmp_path), image_size=8).sources()
    assert {split: len(source) for split, source in folder.items()} == {"train": 8, "val": 8, "test": 8}
    rows = [f"{path},{name},{split}" for split, source in folder.items()
            for path, name in zip(source.paths, (Path(p).parent.name for p in source.paths), strict=True)]
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    listed = CSVDataset(root=str(tmp_path), split_column="split", image_size=8).sources()
    for split, source in listed.items():
        assert sorted(source.paths) == sorted(folder[split].paths)
        assert all(source.load_image(i).shape == (12, 10, 3) for i in range(len(source)))
