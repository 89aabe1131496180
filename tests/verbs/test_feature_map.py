"""``medtransfer feature-map``: the maps, the separation table and TensorBoard logs from a folder of stores;
one-line errors with exit status 2 for bad input; nothing heavy imported before it runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from medtransfer.cli import main as cli_main
from medtransfer.features.store import FeatureStore
from medtransfer.verbs.feature_map import main
from tests.features.map_fixtures import class_store


def test_maps_table_and_tensorboard_from_a_folder_of_stores(tmp_path, capsys):
    class_store(tmp_path / "features/Toy/good/test-1", True, weights="w1")
    class_store(tmp_path / "features/Toy/poor/test-2", False, weights="w2")
    class_store(tmp_path / "features/Toy/poor/val-3", False, weights="w2", split="val")
    out, tb = tmp_path / "maps", tmp_path / "tb"
    assert main([str(tmp_path / "features"), "--out", str(out), "--tensorboard", str(tb),
                 "--max_points", "50", "--seed", "1"]) == 0
    assert (out / "feature_map_Toy_test_tsne.png").read_bytes().startswith(b"\x89PNG")
    assert not list(out.glob("*_val_*"))
    table = pd.read_csv(out / "feature_separation.csv")
    assert table.backbone.tolist() == ["good", "poor"] and table.points.tolist() == [50, 50]
    assert table.knn_balanced_accuracy[0] > table.knn_balanced_accuracy[1]
    assert list(tb.glob("events.out.tfevents.*"))
    printed = capsys.readouterr().out
    assert "subsampled to 50" in printed and "good" in printed and "poor" in printed


@pytest.mark.parametrize(("setup", "args", "message"), [
    (None, ["missing"], "no such folder"),
    ("folder", ["folder"], "no test feature stores under"),
    ("empty", ["folder"], "is empty"),
    ("folder", ["folder", "--max_points", "1"], "--max_points must be at least 3"),
    ("folder", ["folder", "--projector"], "give --tensorboard DIR too"),
])
def test_bad_input_is_one_line_with_exit_status_2(tmp_path, capsys, setup, args, message):
    if setup:
        (tmp_path / "folder").mkdir()
    if setup == "empty":
        FeatureStore.write(tmp_path / "folder/b/test-0", np.zeros((0, 4), np.float16), [],
                           np.zeros(0, np.int64), {"split": "test", "data": {"dataset": "Toy"}})
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["feature-map", *[str(tmp_path / a) if a in ("missing", "folder") else a for a in args],
                  "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medtransfer feature-map: error:") and message in err[0]


def test_the_verb_is_listed_and_its_help_imports_nothing_heavy():
    code = ("import sys; from medtransfer.verbs import feature_map; "
            "assert not {'sklearn', 'matplotlib', 'torch', 'pandas'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
    listing = subprocess.run([sys.executable, "-m", "medtransfer.cli", "--help"], capture_output=True,
                             text=True)
    assert "feature-map" in listing.stdout
