"""The shipped smoke grid end to end, reduced to three real ``medtransfer fit`` subprocesses (two linear
probes that extract their feature stores, and the DVME fusion that reuses both), then run again: nothing
new."""

from __future__ import annotations

import csv

import pytest

from medtransfer.verbs.benchmark import main

from .bench_helpers import REPO, read_json

SMOKE = REPO / "configs" / "benchmark" / "smoke.yaml"
SELECTION = "synthetic-linear-*-ffull-s0"


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_smoke_grid_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "smoke"
    assert (
        main(["--config", str(SMOKE), "--output_dir", str(out), "--only", SELECTION, "--parallel", "2"]) == 0
    )
    printed = capsys.readouterr().out
    assert "30 runs" in printed and printed.count("done synthetic-linear-") == 3

    runs = sorted((out / "runs").iterdir())
    assert [r.name.rsplit("-", 1)[0] for r in runs] == [
        "synthetic-linear-convnext-ffull-s0",
        "synthetic-linear-dvme-ffull-s0",
        "synthetic-linear-resnet-ffull-s0",
    ]
    dvme = read_json(runs[1] / "results.json")
    assert dvme["model"]["name"] == "DVME" and set(dvme["extra"]["dvme"]["importance"]["overall"]) == {
        "test_resnet",
        "test_convnext",
    }
    # one store per (weights, split) in the grid's shared folder. DVME builds test_resnet first from the same
    # seed, so it has the linear probe's weights and reuses its 3 stores; its test_convnext is initialised
    # after test_resnet (random init, other weights), so it gets stores of its own.
    stores = sorted(p.parent.parent.name for p in (out / "features").rglob("store.json"))
    assert stores == ["test_convnext"] * 6 + ["test_resnet"] * 3
    assert "reusing train store" in (runs[1] / "output.log").read_text()

    report = out / "report"
    with open(report / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["backbone"] for r in rows) == ["convnext", "dvme", "resnet"]
    assert all(0.0 <= float(r["test/auroc"]) <= 1.0 for r in rows)
    summary = (report / "summary.md").read_text()
    assert "| backbone | synthetic · 100% (512) · auroc |" in summary and "no CI" not in summary
    assert "## Methods" in summary and (report / "report.html").is_file()
    assert (report / "tables" / "linear.tex").read_text().startswith("\\begin{table}")
    assert "### linear: paired comparisons with resnet" in summary and "| convnext − resnet | " in summary
    assert all(float(r["score_low"]) <= float(r["score"]) <= float(r["score_high"]) for r in rows)
    assert "## Not finished (smoke: 27 runs)" in summary
    plots = sorted(p.name for p in (report / "plots").glob("*.png"))
    assert plots == ["feature_map_synthetic_test_tsne.png", "importance_synthetic_linear_dvme.png",
                     "synthetic_linear.png"]
    assert "## Feature maps" in summary

    before = snapshot(out)
    assert main(["--config", str(SMOKE), "--output_dir", str(out), "--only", SELECTION]) == 0
    again = capsys.readouterr().out
    assert "--only selects 3 runs, 0 of them to run" in again and "nothing to run" in again
    assert snapshot(out) == before
