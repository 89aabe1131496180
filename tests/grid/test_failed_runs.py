"""Failed runs (stopped by the divergence guard, or with NaN or infinite test metrics or predictions) are
never scored, averaged or ranked: the report lists them apart and marks their configuration's cell; the
launchers redo them after moving the failed folder to ``<output_dir>/moved/``."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from medtransfer.grid.aggregate import collect
from medtransfer.grid.attempt import prepare_attempt
from medtransfer.grid.failures import Failure, run_failure
from medtransfer.grid.report import write_report
from medtransfer.grid.runner import describe_plan, make_plan, run_plan
from medtransfer.grid.state import INCOMPLETE, MOVED_DIR, run_dir
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.results import write_json_atomic
from medtransfer.task import Task

from .bench_helpers import InstantRun, diverged, read_json, results_document, small_grid
from .test_report_statistics import binary_predictions, config, row_of, write_run

BINARY = Task("binary", ("normal", "lesion"))


def write_failed(folder, backbone: str, seed: int, **document) -> None:
    """A results.json as the divergence guard leaves it (or with ``document``'s keys instead)."""
    results = results_document(config(backbone, seed), {}, seed=seed, backbones=[backbone],
                               task=BINARY.to_dict())
    results.update(document or diverged())
    write_json_atomic(folder / "results.json", results)


def write_nan_predictions(folder, backbone: str, seed: int) -> None:
    """A run whose test AUROC is finite (0.99) while some of its test probabilities are NaN."""
    predictions = binary_predictions(1.0, seed)
    predictions.probs[:5] = np.nan
    predictions.write_csv(folder / "test_predictions.csv")
    write_failed(folder, backbone, seed, metrics={"test": {"auroc": 0.99}},
                 predictions={"test": "test_predictions.csv"})


def test_a_run_that_failed_or_trained_to_nan_is_listed_apart_and_never_scored(tmp_path):
    for seed in range(3):
        write_run(tmp_path / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
    write_failed(tmp_path / "collapsed-0", "collapsed", 0)
    # no status, but a NaN loss beside an AUROC that would have been the best
    write_failed(tmp_path / "collapsed-1", "collapsed", 1, metrics={"test": {"auroc": 0.99, "loss": np.nan}})
    write_nan_predictions(tmp_path / "collapsed-2", "collapsed", 2)

    collection = collect(tmp_path)
    assert not collection.excluded and len(collection.records) == 3
    assert [(f.path.parent.name, f.failure) for f in collection.failed] == [
        ("collapsed-0", Failure("diverged", "the training loss is nan at step 41", 3, 41)),
        ("collapsed-1", Failure("non-finite metrics", "test/loss is nan")),
        ("collapsed-2", Failure("non-finite predictions", "test_predictions.csv: 5 of 300 test samples have "
                                                          "a NaN or infinite probability or loss")),
    ]
    summary = write_report(tmp_path, baseline="supervised", resamples=100).summary.read_text()
    assert "3 runs from 6 results.json files; 3 failed (listed below, never scored)." in summary
    assert "| collapsed | failed (3 of 3 runs) †1 |" in summary
    assert ("- †1 collapsed, SyntheticMedical · 100%: 3 of 3 runs failed, no score (seed 0: diverged at "
            "epoch 3, step 41: the training loss is nan at step 41; seed 1: non-finite metrics: test/loss is "
            "nan; seed 2: non-finite predictions: test_predictions.csv: 5 of 300 test samples have a NaN or "
            "infinite probability or loss); not ranked") in summary
    assert row_of(summary, "supervised")[1].startswith("**")  # the only cell that may be best
    assert row_of(summary, "collapsed † − supervised")[-1] == "not tested: every run of collapsed failed"
    assert "## Failed runs" in summary
    assert "| collapsed-0 | diverged | 3 | 41 | the training loss is nan at step 41 |" in summary
    assert "| collapsed-1 | non-finite metrics | — | — | test/loss is nan |" in summary
    results_csv = (tmp_path / "report" / "results.csv").read_text()
    assert "collapsed" not in results_csv  # one row per finished run only


def test_a_cell_that_lost_a_seed_is_marked_and_never_bold(tmp_path):
    for seed in range(3):
        write_run(tmp_path / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
        write_run(tmp_path / f"strong-{seed}", "strong", seed, binary_predictions(3.0, 10 + seed))
    write_failed(tmp_path / "strong-3", "strong", 3)

    summary = write_report(tmp_path, baseline="supervised", resamples=100).summary.read_text()
    strong, supervised = row_of(summary, "strong")[1], row_of(summary, "supervised")[1]
    # strong's mean over its 3 finished seeds is higher, but a mean over the seeds that survived is no best
    assert strong.endswith(" †1") and not strong.startswith("**") and supervised.startswith("**")
    assert ("- †1 strong, SyntheticMedical · 100%: 1 of 4 runs failed, the mean is over the other 3 (seed 3: "
            "diverged at epoch 3, step 41: the training loss is nan at step 41); not ranked") in summary
    assert row_of(summary, "strong † − supervised")[-1] == "better"


def test_what_makes_a_run_failed(tmp_path):
    finished = results_document(config("a", 0), {"auroc": 0.8, "auroc/lesion": np.nan}, seed=0)
    assert run_failure(finished, tmp_path) is None  # an undefined per-class AUROC is recorded as NaN
    assert run_failure({**finished, "status": "finished"}, tmp_path) is None
    infinite = results_document(config("a", 0), {"auroc": 0.8, "loss": np.inf}, seed=0)
    assert run_failure(infinite, tmp_path) == Failure("non-finite metrics", "test/loss is inf")
    assert run_failure({"status": "failed"}, tmp_path) == Failure("failed", "no error recorded")
    missing = {**finished, "predictions": {"test": "gone.csv"}}  # said where the report reads the file
    assert run_failure(missing, tmp_path) is None


@pytest.mark.parametrize(("metrics", "said"), [
    ({"auroc": 7.5}, "test/auroc is 7.5, outside [0.0, 1.0]"),
    ({"auroc": 0.8, "auroc/lesion": -0.2}, "test/auroc/lesion is -0.2, outside [0.0, 1.0]"),
    ({"kappa": -1.5}, "test/kappa is -1.5, outside [-1.0, 1.0]"),
    ({"auroc": 0.8, "loss": -0.1}, "test/loss is -0.1, outside [0.0, inf]"),
], ids=["auroc above 1", "a class's auroc below 0", "kappa below -1", "negative loss"])
def test_a_metric_no_model_can_score_makes_the_run_failed(tmp_path, metrics, said):
    """A results.json edited by hand to an AUROC of 7.5 once made its cell the bold best."""
    edited = results_document(config("a", 0), metrics, seed=0)
    assert run_failure(edited, tmp_path) == Failure(
        "impossible metrics", f"{said}: results.json was edited or damaged")
    at_the_bounds = results_document(config("a", 0), {"kappa": -1.0, "acc": 1.0}, seed=0)
    assert run_failure(at_the_bounds, tmp_path) is None


def test_a_failed_run_is_redone_after_its_folder_is_moved_aside(write_grid, resolver):
    grid = write_grid(small_grid())
    plan = make_plan(grid, resolver=resolver)
    first_id = plan.runs[0].id
    messages: list[str] = []
    assert run_plan(plan, start=InstantRun(diverge={first_id}), say=messages.append) == 1
    assert any(m.startswith(f"FAILED {first_id} (diverged at epoch 3, step 41: the training loss is nan at "
                            "step 41; exit code 0") for m in messages)
    summary = (plan.spec.output_dir / "report" / "summary.md").read_text()
    assert f"| {first_id} | diverged | 3 | 41 | the training loss is nan at step 41 |" in summary
    assert "Not finished" not in summary

    plan = make_plan(grid, resolver=resolver)
    assert plan.status[first_id] == INCOMPLETE
    assert "(1 killed or failed earlier: 1 redone from scratch)" in describe_plan(plan)
    again = InstantRun()
    assert run_plan(plan, start=again, say=lambda _: None) == 0
    assert again.started == [first_id]
    folder = run_dir(plan.spec.output_dir, plan.runs[0])
    assert "status" not in read_json(folder / "results.json")
    moved = list((plan.spec.output_dir / MOVED_DIR).glob(f"{folder.name}-*"))
    assert len(moved) == 1 and read_json(moved[0] / "results.json")["status"] == "failed"  # never deleted
    summary = (plan.spec.output_dir / "report" / "summary.md").read_text()
    assert "8 runs from 8 results.json files." in summary and "Failed runs" not in summary


def test_an_attempt_never_continues_a_failed_run(tmp_path):
    folder = tmp_path / "grid" / "runs" / "r"
    (folder / "checkpoints").mkdir(parents=True)
    run = {"id": "r", "fingerprint": "f00d", "argv": ["fit"]}
    write_json_atomic(folder / "run.json", run)
    torch.save({"epoch": 3, "state_dict": {"w": torch.full((2,), float("nan"))}},
               folder / "checkpoints" / "last.ckpt")  # of the same config: it would be continued
    write_failed(folder, "a", 0)
    said = prepare_attempt(folder, run)
    moved = list((tmp_path / "grid" / MOVED_DIR).glob("r-*"))
    assert said == (f"the earlier attempt failed (diverged at epoch 3, step 41: the training loss is nan at "
                    f"step 41): moved the folder to {moved[0]}; starting afresh")
    assert (moved[0] / "checkpoints" / "last.ckpt").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]


@pytest.mark.parametrize("ending", ["failed", "finished"])
def test_a_slurm_task_redoes_a_failed_run_and_skips_a_finished_one(write_grid, resolver, tmp_path, ending):
    plan = make_plan(write_grid(small_grid()), resolver=resolver)
    run_plan(plan, launcher="slurm", say=lambda _: None, cwd=tmp_path)
    run = next(r for r in plan.runs if r.dir_name == (plan.spec.output_dir / "slurm" / "runs.txt")
               .read_text().split()[0])
    folder = run_dir(plan.spec.output_dir, run)
    folder.mkdir(parents=True)
    write_json_atomic(folder / "run.json", {"id": run.id, "fingerprint": run.fingerprint})
    results = results_document(run.config, {"auroc": 0.8}, verb=run.verb)
    write_json_atomic(folder / "results.json", {**results, **(diverged() if ending == "failed" else {})})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\necho "srun $*"\n')
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
           "SLURM_JOB_NODELIST": "node7", "MEDTRANSFER_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(plan.spec.output_dir / "slurm" / "grid.sbatch")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if ending == "finished":
        assert done.stdout == f"{run.id}: finished already\n"
        assert (folder / "results.json").exists()
    else:
        assert f"{run.id}: the earlier attempt failed (diverged at epoch 3" in done.stdout
        assert "srun" in (folder / "output.log").read_text()
        assert len(list((plan.spec.output_dir / MOVED_DIR).glob(f"{folder.name}-*"))) == 1


def test_predictions_that_are_nan_make_a_grid_run_incomplete(write_grid, resolver):
    plan = make_plan(write_grid(small_grid()), resolver=resolver)
    run_plan(plan, start=InstantRun(), say=lambda _: None)
    run = plan.runs[0]
    folder = run_dir(plan.spec.output_dir, run)
    predictions = Predictions(BINARY, ["a", "b"], np.array([np.nan, 0.4], dtype=np.float32), np.array([0, 1]))
    predictions.write_csv(folder / "test_predictions.csv")
    results = read_json(folder / "results.json")
    write_json_atomic(folder / "results.json", {**results, "predictions": {"test": "test_predictions.csv"}})
    assert make_plan(write_grid(small_grid()), resolver=resolver).status[run.id] == INCOMPLETE
