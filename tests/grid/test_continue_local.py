"""The local launcher continues a killed run from its ``last.ckpt``, as the SLURM tasks do, and the continued
run ends with the metrics of an uninterrupted one. Real ``medtransfer fit`` subprocesses: the first is sent
SIGTERM once epoch 1's ``last.ckpt`` is written (``tests/faults/driver.py``), as Ctrl-C on the launcher or a
stopped machine ends it."""

from __future__ import annotations

import sys

import pytest

from medtransfer.grid import local
from medtransfer.grid.runner import describe_plan, make_plan, run_plan
from medtransfer.grid.state import INCOMPLETE, run_dir

from .bench_helpers import REPO, SYNTHETIC, read_json

FINETUNE = str(REPO / "configs" / "model" / "finetune.yaml")
DRIVER = REPO / "tests" / "faults" / "driver.py"


def one_run_grid(output_dir) -> dict:
    """One Finetune of test_resnet at 32 px, 3 epochs of 3 batches, with dropout (sensitive to the RNG)."""
    return {
        "name": "continued",
        "output_dir": str(output_dir),
        "overrides": {
            "trainer.accelerator": "cpu", "trainer.devices": 1, "trainer.max_epochs": 3,
            "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False,
            "data.init_args.num_train": 48, "data.init_args.num_val": 24, "data.init_args.num_test": 24,
            "data.init_args.batch_size": 16, "model.init_args.head_dropout": 0.3, "intervals.resamples": 0,
        },
        "axes": {"dataset": {"synthetic": SYNTHETIC}, "protocol": {"finetune": FINETUNE},
                 "backbone": {"resnet": "test_resnet"}, "seed": [0]},
    }


@pytest.mark.slow
def test_a_killed_local_run_continues_from_its_last_checkpoint(write_grid, resolver, tmp_path, monkeypatch):
    grid = write_grid(one_run_grid(tmp_path / "out"))
    plan = make_plan(grid, resolver=resolver)
    (run,) = plan.runs
    folder = run_dir(plan.spec.output_dir, run)
    with monkeypatch.context() as patch:  # SIGTERM once the second last.ckpt (epoch 1's) is in place
        patch.setattr(local, "cli_command",
                      lambda: [sys.executable, str(DRIVER), "replace:last.ckpt", "2", "TERM", "--"])
        assert run_plan(plan, say=lambda _: None) == 1
    assert not (folder / "results.json").exists()
    assert "stopped by SIGTERM at epoch 1" in (folder / "output.log").read_text()

    plan = make_plan(grid, resolver=resolver)
    assert plan.status[run.id] == INCOMPLETE
    planned = describe_plan(plan)
    assert "(1 killed or failed earlier: 1 continue from their last.ckpt)" in planned
    assert f"  cont  {run.id}" in planned
    said: list[str] = []
    assert run_plan(plan, say=said.append) == 0
    checkpoint = folder / "checkpoints" / "last.ckpt"
    assert f"[1/1] {run.id}: continuing from {checkpoint} (epoch 1, step 6)" in said
    log = (folder / "output.log").read_text()
    assert "stopped by SIGTERM" in log and f"--ckpt_path last: {checkpoint}" in log  # appended to
    assert not (plan.spec.output_dir / "moved").exists()

    whole = make_plan(write_grid(one_run_grid(tmp_path / "whole"), name="whole.yaml"), resolver=resolver)
    assert run_plan(whole, say=lambda _: None) == 0
    continued = read_json(folder / "results.json")
    uninterrupted = read_json(run_dir(whole.spec.output_dir, whole.runs[0]) / "results.json")
    for split in ("train", "val", "test"):
        assert continued["metrics"][split] == pytest.approx(uninterrupted["metrics"][split], abs=1e-6), split
