"""Scored runs trained less than their config asks (results.json's ``training``: a time limit before
``max_epochs``, the last weights tested) stay in the tables and are named in summary.md's own section."""

from __future__ import annotations

import json

from medtransfer.grid.report import write_report

from .test_report_statistics import binary_predictions, write_run

FULL = {"epochs": 30, "max_epochs": 30, "steps": 900, "ended_by": "max_epochs",
        "tested_checkpoint": "best val/auroc"}


def with_training(path, training: dict) -> None:
    results = json.loads(path.read_text())
    path.write_text(json.dumps(results | {"training": training}))


def supervised_runs(root) -> None:
    for seed in range(2):
        path = write_run(root / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
        with_training(path, FULL)


def test_runs_cut_by_a_time_limit_or_tested_on_their_last_weights_are_named(tmp_path):
    root = tmp_path / "runs"
    supervised_runs(root)
    with_training(write_run(root / "strong-0", "strong", 0, binary_predictions(3.0, 10)),
                  FULL | {"epochs": 4, "ended_by": "max_time"})
    with_training(write_run(root / "strong-1", "strong", 1, binary_predictions(3.0, 11)),
                  FULL | {"ended_by": "max_steps",
                          "tested_checkpoint": "last: no validation produced val/auroc"})
    write_run(root / "old-0", "old", 0, binary_predictions(2.0, 20))  # from before results.json had training

    text = (write_report(root, resamples=20).folder / "summary.md").read_text()
    section = text[text.index("## Trained less than asked"):].split("\n\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| strong") or line.startswith("| old")
            or line.startswith("| supervised")]
    assert rows == ["| strong-0 | 4 of 30 | max_time | best val/auroc |",
                    "| strong-1 | 30 of 30 | max_steps | last: no validation produced val/auroc |"]
    assert len([line for line in text.splitlines() if line.startswith("| strong ")]) >= 1  # still scored


def test_a_report_of_runs_trained_as_asked_has_no_such_section(tmp_path):
    root = tmp_path / "runs"
    supervised_runs(root)
    summary = write_report(root, resamples=20).folder / "summary.md"
    assert "Trained less than asked" not in summary.read_text()
