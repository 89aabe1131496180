"""Resuming a grid: finished runs are skipped by fingerprint, a killed run whose checkpoint does not read is
moved aside and redone from scratch, and a grid run twice does nothing new. Runs are stood in for by
``InstantRun`` (the real subprocess path is in test_smoke.py; a run continued from its checkpoint in
test_continue_local.py)."""

from __future__ import annotations

import pytest

from medtransfer.grid.lock import GridBusyError, exclusive
from medtransfer.grid.runner import make_plan, run_plan
from medtransfer.grid.state import DONE, INCOMPLETE, PENDING, run_dir

from .bench_helpers import InstantRun, read_json, small_grid


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_run_is_redone_and_finished_runs_are_not(write_grid, resolver, tmp_path):
    grid = write_grid(small_grid())
    plan = make_plan(grid, resolver=resolver)
    first = InstantRun(kill_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, start=first, say=lambda _: None)
    done, killed_id = first.started[:2], first.started[2]

    plan = make_plan(grid, resolver=resolver)
    runs = {r.id: r for r in plan.runs}
    assert [plan.status[i] for i in first.started] == [DONE, DONE, INCOMPLETE]
    assert sum(s == PENDING for s in plan.status.values()) == 5
    killed = run_dir(plan.spec.output_dir, runs[killed_id])
    assert (killed / "checkpoints" / "last.ckpt").exists() and not (killed / "results.json").exists()
    finished = {i: read_json(run_dir(plan.spec.output_dir, runs[i]) / "results.json") for i in done}

    (killed / "stale.txt").write_text("from the killed attempt")
    second = InstantRun()
    assert run_plan(plan, start=second, say=lambda _: None) == 0
    assert len(second.started) == 6 and killed_id in second.started and not set(done) & set(second.started)
    for i, results in finished.items():
        assert read_json(run_dir(plan.spec.output_dir, runs[i]) / "results.json") == results
    # the killed attempt's leftovers were cleared before the run started again
    assert not (killed / "stale.txt").exists()
    assert read_json(killed / "run.json")["id"] == killed_id and (killed / "results.json").exists()

    # once everything is finished, running the grid again starts nothing and rewrites nothing
    before = snapshot(tmp_path / "out")
    plan = make_plan(grid, resolver=resolver)
    assert set(plan.status.values()) == {DONE}
    third = InstantRun()
    messages = []
    assert run_plan(plan, start=third, say=messages.append) == 0
    assert third.started == []
    assert snapshot(tmp_path / "out") == before
    assert any("nothing to run" in m for m in messages) and any("unchanged" in m for m in messages)


def test_a_changed_config_is_a_new_run(write_grid, resolver):
    grid = small_grid()
    plan = make_plan(write_grid(grid), resolver=resolver)
    run_plan(plan, start=InstantRun(), say=lambda _: None)
    grid["overrides"]["trainer.max_epochs"] = 2
    changed = make_plan(write_grid(grid), resolver=resolver)
    assert set(changed.status.values()) == {PENDING}
    # the old results stay on disk, but the report of this grid leaves them out as not belonging to it
    started = InstantRun()
    run_plan(changed, start=started, say=lambda _: None)
    summary = (changed.spec.output_dir / "report" / "summary.md").read_text()
    assert "8 runs from 16 results.json files" in summary
    assert summary.count("not a run of grid 'small'") == 8


def test_only_selects_runs_but_the_manifest_keeps_the_whole_grid(write_grid, resolver):
    plan = make_plan(write_grid(small_grid()), only="*-ssl-ffull-*", resolver=resolver)
    started = InstantRun()
    run_plan(plan, start=started, say=lambda _: None)
    assert started.started == ["synthetic-linear-ssl-ffull-s0", "synthetic-linear-ssl-ffull-s1"]
    manifest = read_json(plan.spec.output_dir / "grid.json")
    assert len(manifest["runs"]) == 8
    summary = (plan.spec.output_dir / "report" / "summary.md").read_text()
    assert "## Not finished (small: 6 runs)" in summary


def test_a_second_benchmark_on_the_same_folder_is_refused_while_the_first_runs(write_grid, resolver):
    plan = make_plan(write_grid(small_grid()), resolver=resolver)
    blocked = InstantRun()
    with exclusive(plan.spec.output_dir), pytest.raises(GridBusyError, match="another --output_dir"):
        run_plan(plan, start=blocked, say=lambda _: None)
    assert blocked.started == []
    assert run_plan(plan, start=InstantRun(), say=lambda _: None) == 0  # free again once the first ends
