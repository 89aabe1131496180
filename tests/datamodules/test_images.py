"""Image decoding and unreadable images: clear errors naming file and row, or logged, counted skips."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from medtransfer.datamodules.dataset import TransformedDataset, collate_skipping
from medtransfer.datamodules.errors import CorruptImageError
from medtransfer.datamodules.images import FileSource, iter_image_files, read_image
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
