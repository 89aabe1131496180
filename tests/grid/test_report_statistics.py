"""The report's intervals and paired comparisons on hand-made runs that kept their test predictions: a model
against an identical copy, clearly better and worse models, Holm within one table, all pairs, runs whose
predictions are missing or do not match, patients, a multiclass kappa table, and a byte-identical rerun."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medtransfer.grid.aggregate import cells, collect
from medtransfer.grid.report import write_report
from medtransfer.grid.uncertainty import ReportStatistics
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.results import write_json_atomic
from medtransfer.stats.paired import holm
from medtransfer.stats.resampling import full_sample
from medtransfer.task import Task
from medtransfer.verbs.benchmark import main

from .bench_helpers import results_document

BINARY = Task("binary", ("normal", "lesion"))
GRADES = Task("multiclass", ("g0", "g1", "g2", "g3"), ordinal=True, primary_metric="kappa")
N = 300


def config(backbone: str, seed: int, dataset: str = "SyntheticMedical") -> dict:
    return {
        "seed_everything": seed,
        "model": {"class_path": "medtransfer.lightning_modules.LinearProbe",
                  "init_args": {"backbone": backbone}},
        "data": {"class_path": f"medtransfer.datamodules.{dataset}",
                 "init_args": {"train_fraction": 1.0, "fraction_seed": seed}},
    }


def write_run(folder, backbone, seed, predictions: Predictions, dataset="SyntheticMedical", value=None):
    """A results.json whose test metric is recomputed from ``predictions``, written next to them."""
    predictions.write_csv(folder / "test_predictions.csv")
    metric = predictions.task.primary_metric
    score = float(predictions.metrics().evaluate(full_sample(len(predictions)), [metric])[metric][0])
    document = results_document(
        config(backbone, seed, dataset), {metric: score if value is None else value}, seed=seed,
        backbones=[backbone], task=predictions.task.to_dict(), data={"name": dataset},
        predictions={"test": "test_predictions.csv"},
    )
    return write_json_atomic(folder / "results.json", document)


def binary_predictions(strength: float, seed: int, groups=None) -> Predictions:
    """Scores of a model with ``strength`` (larger: better) on the one fixed test set."""
    labels = np.random.default_rng(100).integers(0, 2, N)  # the test set: same labels for every run
    noise = np.random.default_rng(seed).normal(size=N)
    probs = (1 / (1 + np.exp(-(strength * (labels - 0.5) + noise)))).astype(np.float32)
    return Predictions(BINARY, [f"img{i:04d}" for i in range(N)], probs, labels, groups=groups)


@pytest.fixture
def binary_runs(tmp_path):
    root = tmp_path / "runs"
    for seed in range(3):
        write_run(root / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
        write_run(root / f"copy-{seed}", "copy", seed, binary_predictions(1.0, seed))  # the same predictions
        write_run(root / f"strong-{seed}", "strong", seed, binary_predictions(3.0, 10 + seed))
        write_run(root / f"weak-{seed}", "weak", seed, binary_predictions(0.3, 20 + seed))
    return root


def row_of(summary: str, comparison: str) -> list[str]:
    line = next(line for line in summary.splitlines() if line.startswith(f"| {comparison} |"))
    return [part.strip() for part in line.strip("|").split("|")]


def test_comparisons_with_the_baseline(binary_runs):
    summary = write_report(binary_runs, baseline="supervised").summary.read_text()
    assert "### LinearProbe: paired comparisons with supervised" in summary
    assert "| comparison | difference [95% CI] | p (bootstrap) | p (DeLong) | p (Holm) | verdict |" in summary
    # a model against an identical copy of itself: no difference, p = 1
    assert row_of(summary, "copy − supervised") == ["copy − supervised", "+0.00 [+0.00, +0.00]",
                                                    "1.000", "1.000", "1.000", "no detected difference"]
    strong = row_of(summary, "strong − supervised")
    assert strong[-1] == "better" and float(strong[1].split()[0]) > 10
    low, high = (float(v) for v in re.findall(r"\[([-+\d.]+), ([-+\d.]+)\]", strong[1])[0])
    assert 0 < low < float(strong[1].split()[0]) < high
    assert row_of(summary, "weak − supervised")[-1] == "worse"


def test_holm_adjusts_the_bootstrap_p_values_of_one_table(binary_runs):
    collection = collect(binary_runs)
    statistics = ReportStatistics(collection)
    by_backbone = {c.labels["backbone"]: c for c in cells(collection)}
    compared = [statistics.compare(by_backbone[b], by_backbone["supervised"], b, "supervised")
                for b in ("copy", "strong", "weak")]
    adjusted = holm([c.paired.p_value for c in compared])
    summary = write_report(binary_runs, baseline="supervised").summary.read_text()
    for comparison, p in zip(compared, adjusted, strict=True):
        shown = row_of(summary, f"{comparison.first} − supervised")[4]
        assert shown == ("<0.001" if p < 0.001 else f"{p:.3f}")


def test_cell_intervals_cover_the_mean_and_stay_in_range(binary_runs):
    report = write_report(binary_runs, baseline="supervised")
    summary = report.summary.read_text()
    assert "bootstrap over seeds and test images" in summary and "no CI" not in summary
    for c in cells(collect(binary_runs)):
        interval, note = ReportStatistics(collect(binary_runs)).cell_interval(c)
        assert note == "" and 0 <= interval[0] <= c.mean <= interval[1] <= 1
    rows = (report.folder / "results.csv").read_text().splitlines()
    assert "score_low" in rows[0] and "predictions" in rows[0]


def test_all_pairs_and_a_byte_identical_rerun(binary_runs, tmp_path):
    first = write_report(binary_runs, out=tmp_path / "a", baseline="supervised", all_pairs=True)
    summary = first.summary.read_text()
    for pair in ("strong − copy", "weak − copy", "weak − strong"):
        assert row_of(summary, pair)
    second = write_report(binary_runs, out=tmp_path / "b", baseline="supervised", all_pairs=True)
    assert second.summary.read_bytes() == first.summary.read_bytes()
    assert (second.folder / "results.csv").read_bytes() == (first.folder / "results.csv").read_bytes()


def test_missing_or_mismatched_predictions_are_named(binary_runs):
    (binary_runs / "weak-1" / "test_predictions.csv").unlink()
    write_run(binary_runs / "strong-2", "strong", 2, binary_predictions(3.0, 12), value=0.5)
    summary = write_report(binary_runs, baseline="supervised").summary.read_text()
    assert "(no CI: 1 of 3 runs: its test predictions file test_predictions.csv is missing)" in summary
    assert "not tested: 1 of 3 runs: its test predictions file test_predictions.csv is missing" in summary
    mismatch = r"1 of 3 runs: test_predictions.csv gives auroc 0\.\d{6}, results.json 0\.500000"
    assert re.search(mismatch, summary)


def test_a_score_its_own_predictions_do_not_give_is_marked_and_never_bold(tmp_path):
    """A results.json edited by hand to 0.999 made its cell's mean the bold best."""
    for seed in range(2):
        write_run(tmp_path / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
        write_run(tmp_path / f"edited-{seed}", "edited", seed, binary_predictions(1.0, 10 + seed),
                  value=0.999 if seed == 0 else None)
    summary = write_report(tmp_path, baseline="supervised", resamples=50).summary.read_text()
    edited, supervised = row_of(summary, "edited")[1], row_of(summary, "supervised")[1]
    assert not edited.startswith("**") and edited.endswith(" ⚠1") and supervised.startswith("**")
    note = (r"- ⚠1 edited, SyntheticMedical · 100%: results.json records another score than the test "
            r"predictions give in 1 of 2 runs \(seed 0: test_predictions.csv gives auroc 0\.\d{6}, "
            r"results.json 0\.999000\); not ranked")
    assert re.search(note, summary), summary


def test_patients_are_resampled_together(tmp_path):
    groups = np.repeat([f"p{i:03d}" for i in range(N // 3)], 3)
    for seed in range(2):
        write_run(tmp_path / f"a-{seed}", "supervised", seed, binary_predictions(1.0, seed, groups))
        write_run(tmp_path / f"b-{seed}", "strong", seed, binary_predictions(3.0, 10 + seed, groups))
    statistics = ReportStatistics(collect(tmp_path))
    assert statistics.grouped and len(statistics.test_sets) == 1
    assert next(iter(statistics.test_sets.values())).units == N // 3
    summary = write_report(tmp_path).summary.read_text()
    assert "over seeds and test images (whole patients where the data knows them)" in summary
    assert row_of(summary, "strong − supervised")[-1] == "better"


def test_a_multiclass_kappa_table(tmp_path):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, N)
    for seed in range(2):
        for name, strength in (("supervised", 1.0), ("other", 1.5)):
            noise = np.random.default_rng(seed + (10 if name == "other" else 0)).normal(size=(N, 4))
            logits = strength * np.eye(4)[labels] + noise
            probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
            write_run(tmp_path / f"{name}-{seed}", name, seed,
                      Predictions(GRADES, [str(i) for i in range(N)], probs, labels), dataset="APTOS2019")
    summary = write_report(tmp_path).summary.read_text()
    assert "| backbone | APTOS2019 · 100% · kappa |" in summary and "no CI" not in summary
    assert "| p (DeLong) |" not in summary  # DeLong is for binary AUROC
    assert row_of(summary, "other − supervised")[-1] in ("better", "no detected difference")


def test_worker_processes_give_the_same_scores(binary_runs):
    collection = collect(binary_runs)
    serial, parallel = ReportStatistics(collection, workers=1), ReportStatistics(collection, workers=2)
    assert set(serial.scores) == set(parallel.scores) == {r.path for r in collection.records}
    for path, scores in serial.scores.items():
        assert (parallel.scores[path].replicates == scores.replicates).all()
        assert (parallel.scores[path].centred == scores.centred).all()


def test_report_command_line_flags(binary_runs, capsys):
    flags = ["--resamples", "200", "--all_pairs", "--baseline", "supervised"]
    assert main(["--report", str(binary_runs), *flags]) == 0
    summary = (binary_runs / "report" / "summary.md").read_text()
    assert "200 resamples" in summary and row_of(summary, "weak − strong")
    assert main(["--report", str(binary_runs), "--resamples", "0"]) == 2
    assert "--resamples must be at least 1" in capsys.readouterr().err
