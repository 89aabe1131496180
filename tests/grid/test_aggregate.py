"""The report on hand-made results.json files without test predictions (as written before medtransfer kept
them): means and standard deviations by hand, the paper's table layout, why intervals and comparisons are
missing, files left out with their reason, and the plots. ``test_report_statistics.py`` covers the
intervals and comparisons of results with predictions."""

from __future__ import annotations

import csv
import math
import shutil

import pytest

from medtransfer.grid.aggregate import UnknownScoreError, cells, collect
from medtransfer.grid.fingerprint import group_fingerprint, run_fingerprint
from medtransfer.grid.report import UnknownBaselineError, write_report
from medtransfer.grid.state import MANIFEST, MANIFEST_SCHEMA
from medtransfer.outputs.results import write_json_atomic

from .bench_helpers import results_document

SUPERVISED, SWAV = "resnet50.tv_in1k", "resnet50.swav_in1k"
SCORES = {  # (backbone, fraction) -> test AUROC per seed
    (SUPERVISED, 1.0): [0.80, 0.82, 0.84],
    (SWAV, 1.0): [0.84, 0.86, 0.88],
    (SUPERVISED, 0.1): [0.70, 0.74],
    (SWAV, 0.1): [0.75],
}


def config(backbone: str, fraction: float, seed: int, model: str = "LinearProbe") -> dict:
    return {
        "seed_everything": seed,
        "model": {
            "class_path": f"medtransfer.lightning_modules.{model}",
            "init_args": {"backbone": backbone},
        },
        "data": {
            "class_path": "medtransfer.datamodules.SyntheticMedical",
            "init_args": {"train_fraction": fraction, "fraction_seed": seed},
        },
    }


def write_results(folder, backbone, fraction, seed, score, **kwargs):
    document = results_document(
        config(backbone, fraction, seed, kwargs.get("model", "LinearProbe")),
        {"auroc": score, "acc": score},
        seed=seed,
        data={"train_fraction": fraction},
        backbones=[backbone],
        **kwargs,
    )
    return write_json_atomic(folder / "results.json", document)


@pytest.fixture
def results_dir(tmp_path):
    root = tmp_path / "results"
    for (backbone, fraction), scores in SCORES.items():
        for seed, score in enumerate(scores):
            write_results(root / f"{backbone}-{fraction}-{seed}", backbone, fraction, seed, score)
    return root


def test_means_and_standard_deviations_by_hand(results_dir):
    by_key = {(c.labels["backbone"], c.fraction): c for c in cells(collect(results_dir))}
    full = by_key[(SUPERVISED, 1.0)]
    assert full.n == 3 and full.seeds == [0, 1, 2]
    assert full.mean == pytest.approx(0.82)
    assert full.std == pytest.approx(0.02)  # sqrt(((-.02)^2 + 0 + .02^2) / 2)
    assert by_key[(SUPERVISED, 0.1)].std == pytest.approx(math.sqrt(0.0008))
    single = by_key[(SWAV, 0.1)]
    assert single.n == 1 and math.isnan(single.std)


def test_results_without_predictions_join_the_tables_saying_why_intervals_are_missing(results_dir):
    report = write_report(results_dir)
    summary = report.summary.read_text()
    # rows: backbones (baseline found by its name); columns: dataset x fraction in increasing order
    # fractions as percent; these results record no sizes, so no image counts
    assert ("| backbone | SyntheticMedical · 10% · auroc | SyntheticMedical · 100% · auroc |") in summary
    why = "(no CI: no test predictions in results.json)"
    assert f"| {SUPERVISED} | 72.00 ± 2.83 {why} | 82.00 ± 2.00 {why} |" in summary
    assert f"| {SWAV} | **75.00** (n=1) {why} | **86.00** ± 2.00 {why} |" in summary
    assert f"### LinearProbe: paired comparisons with {SUPERVISED}" in summary
    # differences in points only (the relative difference is not shown); no interval, no test
    assert (f"| {SWAV} − {SUPERVISED} | +3.00 (no CI) | — | — | not tested: "
            "no test predictions in results.json |") in summary
    assert f"| {SWAV} − {SUPERVISED} | +4.00 (no CI) | — | — | not tested: " in summary
    assert "![plots/SyntheticMedical_LinearProbe.png](plots/SyntheticMedical_LinearProbe.png)" in summary
    assert (report.folder / "plots" / "SyntheticMedical_LinearProbe.png").read_bytes()[:4] == b"\x89PNG"
    with open(report.folder / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9
    assert {
        "dataset",
        "protocol",
        "backbone",
        "fraction",
        "seed",
        "score",
        "test/auroc",
        "config_fingerprint",
        "path",
    } <= set(rows[0])
    assert sorted(float(r["score"]) for r in rows if r["backbone"] == SWAV) == [0.75, 0.84, 0.86, 0.88]


def test_bad_files_are_reported_and_left_out(results_dir):
    (results_dir / "garbled").mkdir()
    (results_dir / "garbled" / "results.json").write_text('{"schema": "medtransfer.res')
    (results_dir / "foreign").mkdir()
    (results_dir / "foreign" / "results.json").write_text('{"accuracy": 0.9}')
    shutil.copytree(results_dir / f"{SWAV}-1.0-0", results_dir / "copy")
    document = results_document(config(SWAV, 0.5, 1), {"auroc": 0.9}, verb="validate")
    document["metrics"] = {"val": {"auroc": 0.9}}
    write_json_atomic(results_dir / "no-test" / "results.json", document)
    write_results(results_dir / "nan", SWAV, 0.5, 2, float("nan"))

    collection = collect(results_dir)
    reasons = {e.path.parent.name: e.reason for e in collection.excluded}
    assert reasons["garbled"].startswith("unreadable")
    assert reasons["foreign"].startswith("not a medtransfer results file")
    # the same run twice counts once: the first path in sorted order is kept
    assert (
        reasons[f"{SWAV}-1.0-0"]
        == f"duplicate of {results_dir / 'copy' / 'results.json'} (same config and seed)"
    )
    assert reasons["no-test"] == "no test/auroc in its metrics (verb 'validate')"
    # a NaN test metric makes the run a failed one: listed apart, never scored (test_failed_runs.py)
    assert "nan" not in reasons
    assert [(f.path.parent.name, f.failure.kind, f.failure.error) for f in collection.failed] == [
        ("nan", "non-finite metrics", "test/auroc is nan")
    ]
    assert len(collection.records) == 9
    summary = write_report(results_dir).summary.read_text()
    assert "## Left out" in summary and "`garbled/results.json`: unreadable" in summary


def test_results_from_another_grid_are_left_out(tmp_path):
    grid = tmp_path / "grid"
    kept = write_results(grid / "runs" / "a", SUPERVISED, 1.0, 0, 0.8)
    cfg = config(SUPERVISED, 1.0, 0)
    write_json_atomic(
        grid / MANIFEST,
        {
            "schema": MANIFEST_SCHEMA,
            "name": "mine",
            "levels": {},
            "baseline": None,
            "metric": None,
            "split": "test",
            "runs": [
                {
                    "id": "a",
                    "dir": "runs/a",
                    "fingerprint": run_fingerprint(cfg),
                    "group": group_fingerprint(cfg),
                    "labels": {
                        "dataset": "synth",
                        "protocol": "linear",
                        "backbone": "supervised",
                        "fraction": "full",
                        "seed": "0",
                    },
                },
                {"id": "b", "dir": "runs/b", "fingerprint": "f" * 16, "group": "g", "labels": {}},
            ],
        },
    )
    write_results(grid / "runs" / "stray", SWAV, 1.0, 0, 0.9)
    write_results(grid / "runs" / "other", SWAV, 1.0, 1, 0.9)
    write_json_atomic(grid / "runs" / "other" / "run.json", {"grid": "theirs", "id": "x"})

    collection = collect(tmp_path)
    assert [r.path for r in collection.records] == [kept]
    assert collection.records[0].labels == {
        "dataset": "synth",
        "protocol": "linear",
        "backbone": "supervised",
        "fraction": "full",
    }
    reasons = {e.path.parent.name: e.reason for e in collection.excluded}
    assert reasons["stray"].startswith("not a run of grid 'mine'")
    assert reasons["other"] == "from another grid ('theirs', inside grid 'mine')"
    assert collection.unfinished == {"mine": ["b"]}


def test_dvme_importance_bar_chart(tmp_path):
    for seed, share in enumerate([0.6, 0.7]):
        importance = {"overall": {"test_resnet": share, "test_vit": 1 - share}, "per_class": {}}
        write_results(
            tmp_path / f"dvme-{seed}",
            "test_resnet+test_vit",
            1.0,
            seed,
            0.9,
            model="DVME",
            extra={"dvme": {"fusion": "dvme", "importance": importance}},
        )
    report = write_report(tmp_path)
    charts = sorted(p.name for p in (report.folder / "plots").glob("importance_*.png"))
    assert charts == ["importance_SyntheticMedical_DVME_test_resnet+test_vit.png"]
    assert "plots/importance_SyntheticMedical_DVME_test_resnet+test_vit.png" in report.summary.read_text()


def scored(folder, verb: str, checkpoint: str, test_split: str, score: float, seed: int = 0,
           weights: str | None = None) -> None:
    """A results.json of a fit or a test of ``checkpoint`` on the test split of digest ``test_split``; with
    ``weights``, the fingerprint of the model scored (``model.weights.scored``)."""
    document = results_document(config(SWAV, 1.0, seed), {"auroc": score}, verb=verb, seed=seed,
                                data={"splits": {"test": test_split}})
    document["checkpoint"] = checkpoint
    if weights is not None:
        document["model"]["weights"] = {"initial": [], "produced": None, "scored": weights}
    write_json_atomic(folder / "results.json", document)


def test_a_test_of_a_checkpoint_its_fit_already_scored_is_one_model_not_another_row(tmp_path):
    best = "runs/probe/version_0/checkpoints/best-epoch=003.ckpt"
    scored(tmp_path / "probe" / "version_0", "fit", best, "d1", 0.8)
    scored(tmp_path / "probe-test" / "version_0", "test", best, "d1", 0.8)  # the same model, re-scored
    scored(tmp_path / "probe-test" / "version_1", "test", best, "d2", 0.7, seed=2)  # another test set: kept
    other = best.replace("runs/", "runs_other/")  # another fit, of the same score: another model
    scored(tmp_path / "other" / "version_0", "fit", other, "d1", 0.8, seed=1)
    collection = collect(tmp_path)
    assert sorted(str(r.path.parent.relative_to(tmp_path)) for r in collection.records) == [
        "other/version_0", "probe-test/version_1", "probe/version_0"]
    (left_out,) = collection.excluded
    assert left_out.path == tmp_path / "probe-test" / "version_0" / "results.json"
    fit = tmp_path / "probe" / "version_0" / "results.json"
    assert left_out.reason == (f"scores the checkpoint that {fit} scored, on the same split, with the same "
                               "score: one model, counted once")


def test_a_test_of_the_same_model_started_elsewhere_is_known_by_its_weights(tmp_path):
    """A ``test`` started in another folder names the checkpoint by another path: the model's fingerprint
    still says it is the fit's model (the fit's report row is kept, the test left out)."""
    scored(tmp_path / "probe" / "version_0", "fit", "runs/probe/version_0/checkpoints/best.ckpt", "d1", 0.8,
           weights="a1")
    scored(tmp_path / "elsewhere" / "version_0", "test", "/home/me/runs/probe/version_0/best.ckpt",
           "d1", 0.8, weights="a1")
    scored(tmp_path / "other" / "version_0", "fit", "runs/other/version_0/checkpoints/best.ckpt", "d1", 0.8,
           seed=1, weights="b2")  # another model of the same score: its own row
    collection = collect(tmp_path)
    fit = tmp_path / "probe" / "version_0" / "results.json"
    assert sorted(r.path for r in collection.records) == [tmp_path / "other" / "version_0" / "results.json",
                                                           fit]
    (left_out,) = collection.excluded
    assert left_out.path == tmp_path / "elsewhere" / "version_0" / "results.json"
    assert f"scores the checkpoint that {fit} scored" in left_out.reason


def test_a_metric_or_split_no_run_holds_is_refused_naming_what_they_hold(results_dir):
    """``--metric aucroc`` left every run out and wrote a report without a table, with exit status 0."""
    with pytest.raises(UnknownScoreError) as refused:
        collect(results_dir, metric="aucroc")
    assert str(refused.value) == (f"no results.json under {results_dir} holds test/aucroc (9 read): "
                                  "--metric and --split choose among what they hold: test/acc, test/auroc, "
                                  "val/acc, val/auroc")
    with pytest.raises(UnknownScoreError, match="holds a 'tset' split"):
        collect(results_dir, split="tset")
    assert len(collect(results_dir, metric="acc").records) == 9


def test_a_baseline_no_table_has_is_refused_unless_it_is_the_grid_s_own(results_dir, tmp_path):
    """``--baseline resnet50.tv_in1kk`` left every comparison out, said in one line of summary.md."""
    said = (r"--baseline 'resnet50.tv_in1kk' is not a backbone of these results; they have: "
            r"'resnet50.swav_in1k', 'resnet50.tv_in1k'")
    with pytest.raises(UnknownBaselineError, match=said):
        write_report(results_dir, out=tmp_path / "typo", baseline="resnet50.tv_in1kk")
    assert not (tmp_path / "typo").exists()
    grid = tmp_path / "grid"  # a grid's own report.baseline, from its manifest: its runs may not have run yet
    cfg = config(SUPERVISED, 1.0, 0)
    write_results(grid / "runs" / "a", SUPERVISED, 1.0, 0, 0.8)
    write_results(grid / "runs" / "b", SWAV, 1.0, 0, 0.9)
    labels = {"dataset": "synth", "protocol": "linear", "fraction": "full", "seed": "0"}
    runs = [{"id": name, "dir": f"runs/{name}", "fingerprint": run_fingerprint(c),
             "group": group_fingerprint(c), "labels": {**labels, "backbone": name}}
            for name, c in (("a", cfg), ("b", config(SWAV, 1.0, 0)))]
    write_json_atomic(grid / MANIFEST, {"schema": MANIFEST_SCHEMA, "name": "mine", "levels": {}, "runs": runs,
                                        "baseline": "not run yet", "metric": None, "split": "test"})
    report = write_report(grid)
    assert "baseline 'not run yet' is not a backbone here" in report.summary.read_text()
