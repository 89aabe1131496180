"""``medtransfer prepare``: the dataset as fit reads it, summarised, and its splits written out."""

from __future__ import annotations

import csv
from pathlib import Path

from medtransfer.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_prepare_reports_the_splits_and_writes_every_sample(tmp_path, capsys):
    out = tmp_path / "splits.csv"
    args = ["prepare", "--config", str(REPO / "configs/data/synthetic.yaml"),
            "--data.init_args.num_train", "40", "--data.init_args.num_val", "10",
            "--data.init_args.num_test", "12",
            "--data.init_args.train_fraction", "0.5", "--splits_file", str(out)]
    try:
        main(args)
    except SystemExit as exit_info:
        assert exit_info.code == 0
    report = capsys.readouterr().out
    assert "SyntheticMedical: binary task" in report
    assert "train      40 samples, 20 patients" in report
    assert "keeps 20 training samples" in report
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [sum(r["split"] == s for r in rows) for s in ("train", "val", "test")] == [40, 10, 12]
    assert rows[0].keys() == {"id", "split", "label", "patient"}
