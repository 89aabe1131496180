"""A finished grid run's ``last.ckpt`` is deleted (it only served to continue the run) and its best checkpoint
kept, by the local launcher and by the SLURM array task; unfinished and failed runs keep theirs; a grid file's
``checkpoints.keep_last`` keeps every one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medtransfer.grid.retention import drop_last_checkpoint, main
from medtransfer.grid.runner import make_plan, run_plan
from medtransfer.grid.spec import GridSpecError, load_grid
from medtransfer.grid.state import run_dir

from .bench_helpers import ArrayTask, InstantRun, results_document, small_grid


def run_folder(tmp_path: Path, status: str | None = "finished", tested: str = "best-epoch=003.ckpt") -> Path:
    """A run folder as a finished (or failed, or killed: ``status`` None) attempt leaves it."""
    folder = tmp_path / "runs" / "r"
    (folder / "checkpoints").mkdir(parents=True)
    for name in ("last.ckpt", "best-epoch=003.ckpt"):
        (folder / "checkpoints" / name).write_bytes(b"weights")
    if status is not None:
        document = results_document({"seed_everything": 0}, {"auroc": 0.8, "acc": 0.7})
        document.update(status=status, checkpoint=str(folder / "checkpoints" / tested))
        if status == "failed":
            document["failure"] = {"kind": "diverged", "error": "the loss is NaN", "epoch": 2, "step": 20}
        (folder / "results.json").write_text(json.dumps(document))
    return folder


def test_a_finished_run_keeps_only_the_checkpoint_it_was_tested_with(tmp_path, capsys):
    folder = run_folder(tmp_path)
    assert main([str(folder)]) == 0
    assert f"deleted {folder / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best-epoch=003.ckpt"]


@pytest.mark.parametrize("status", [None, "failed"])
def test_a_killed_or_failed_run_keeps_its_last_checkpoint(tmp_path, status):
    folder = run_folder(tmp_path, status=status)
    assert drop_last_checkpoint(folder) is None
    assert (folder / "checkpoints" / "last.ckpt").is_file()


def test_a_run_tested_with_its_last_checkpoint_keeps_it(tmp_path):
    folder = run_folder(tmp_path, tested="last.ckpt")
    assert drop_last_checkpoint(folder) is None and (folder / "checkpoints" / "last.ckpt").is_file()


def test_a_refused_deletion_is_said_and_the_task_still_succeeds(tmp_path, capsys, monkeypatch):
    folder = run_folder(tmp_path)

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    assert main([str(folder)]) == 0
    assert "cannot delete it (Permission denied)" in capsys.readouterr().err
    assert (folder / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("keep_last", [False, True])
def test_the_local_launcher_deletes_finished_runs_last_checkpoints_unless_kept(
    write_grid, resolver, keep_last
):
    grid = small_grid(checkpoints={"keep_last": True}) if keep_last else small_grid()
    plan = make_plan(write_grid(grid), resolver=resolver)
    first = InstantRun(kill_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, start=first, say=lambda _: None)
    runs = {r.id: r for r in plan.runs}
    kept = {i: (run_dir(plan.spec.output_dir, runs[i]) / "checkpoints" / "last.ckpt").is_file()
            for i in first.started}
    assert kept == {**dict.fromkeys(first.started[:2], keep_last), first.started[2]: True}  # the killed one


def test_a_slurm_task_whose_run_finishes_deletes_its_last_checkpoint(write_grid, resolver, tmp_path):
    # grid.sbatch run by bash as SLURM runs array task 0, with an srun that finishes the run at once
    task = ArrayTask.prepare(make_plan(write_grid(small_grid()), resolver=resolver), tmp_path)
    finished = run_folder(tmp_path / "finished")  # what the run leaves: results.json and two checkpoints
    done = task.run(f"cp -r {finished}/. {task.folder}/", tmp_path / "bin")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (task.folder / "checkpoints").iterdir()) == ["best-epoch=003.ckpt"]
    assert f"deleted {task.folder / 'checkpoints' / 'last.ckpt'}" in (task.folder / "output.log").read_text()


@pytest.mark.parametrize("keep_last", [False, True])
def test_the_slurm_task_deletes_the_last_checkpoint_after_its_run_unless_kept(
    write_grid, resolver, tmp_path, keep_last
):
    grid = small_grid(checkpoints={"keep_last": True}) if keep_last else small_grid()
    plan = make_plan(write_grid(grid), resolver=resolver)
    run_plan(plan, launcher="slurm", say=lambda _: None, cwd=tmp_path)
    script = (plan.spec.output_dir / "slurm" / "grid.sbatch").read_text().splitlines()
    after_run = script[[i for i, line in enumerate(script) if line.startswith("srun ")][0] + 1:]
    retention = '"$PYTHON" -m medtransfer.grid.retention "$RUN_DIR" >> "$RUN_DIR/output.log" 2>&1'
    assert (retention in after_run) is not keep_last


def test_keep_last_must_be_a_boolean(write_grid):
    with pytest.raises(GridSpecError, match="checkpoints.keep_last: expected true or false, got 'yes'"):
        load_grid(write_grid(small_grid(checkpoints={"keep_last": "yes"})))
