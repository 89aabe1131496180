"""Where a CSV's image paths lead: a table written on Windows (``img\\a.png``) reads on Linux, and a table
none of whose images exists under the root names the root and the column instead of listing every file as
missing (with a hint to skip them all)."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.datamodules import CSVDataset
from medtransfer.datamodules.errors import DatasetLayoutError

from .conftest import write_image


def table(root, separator: str) -> None:
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(12):
        write_image(root / "img" / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
        rows.append(f"img{separator}{i}.png,{i % 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_a_table_written_on_windows_reads_its_images_under_their_ids(tmp_path):
    table(tmp_path, "\\")
    data = CSVDataset(root=str(tmp_path), image_size=8, val_fraction=0.25, test_fraction=0.25)
    data.setup("fit")
    train = data.sources()["train"]
    assert all("\\" in sample for sample in train.ids)
    assert all("\\" not in path for path in train.parent.paths)  # carved: a subset of the listed files
    assert train.load_image(0).shape == (8, 8, 3)


def test_a_table_whose_images_are_all_elsewhere_names_the_root_and_the_column(tmp_path):
    table(tmp_path / "data", "/")
    said = (r"none of the 12 images labels.csv lists exists \(e.g. .*img/0.png\): check data.init_args.root "
            r".* data.init_args.image_column \(the column")
    data = CSVDataset(root=str(tmp_path), csv_path="data/labels.csv", image_size=8, skip_corrupt=True)
    with pytest.raises(DatasetLayoutError, match=said):
        data.setup("fit")
