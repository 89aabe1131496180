"""DDP on CPU (gloo): a 2-process ``medtransfer fit`` whose test metrics equal a single process's on the same
checkpoint, on an odd-sized test split where padded duplicates would show."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from medtransfer.cli import main

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed for DDP on CPU")


DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


def run_ddp(verb: str, args: list[str], cwd: Path) -> None:
    """``medtransfer <verb>`` on 2 CPU processes (Lightning re-launches the command for rank 1)."""
    command = [sys.executable, "-m", "medtransfer.cli", verb, *args, *DDP]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def read_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_two_process_ddp_metrics_and_predictions_equal_single_process(tiny_cli, tmp_path):
    # 25 val/test samples at eval batch 4: rank 0 gets 13 (4 batches), rank 1 gets 12 (3 batches); a padded
    # duplicate would change acc by 1/26 and the loss and AUROC too, and uneven batch counts must not hang
    args = [*tiny_cli(tmp_path / "runs", num_val=25, num_test=25), "--data.init_args.eval_batch_size", "4"]
    run_ddp("fit", args, tmp_path)

    ddp_results = json.loads((tmp_path / "runs" / "tiny" / "version_0" / "results.json").read_text())
    assert str(ddp_results["config"]["trainer"]["devices"]) == "2"
    assert ddp_results["data"]["num_samples"]["test"] == 25

    main(["test", *args, "--ckpt_path", ddp_results["checkpoint"]])
    single = json.loads((tmp_path / "runs" / "tiny" / "version_1" / "results.json").read_text())
    assert single["checkpoint"] == ddp_results["checkpoint"]
    assert single["metrics"]["test"] == pytest.approx(ddp_results["metrics"]["test"], abs=1e-6)
    assert Path(ddp_results["checkpoint"]).is_file()
    # the test predictions of both ranks, gathered: each sample once, in order, as one process writes them
    ddp_rows, single_rows = (read_rows(tmp_path / "runs" / "tiny" / f"version_{v}" / "test_predictions.csv")
                             for v in (0, 1))
    assert [row["id"] for row in ddp_rows] == [f"test-{i:06d}" for i in range(25)]
    assert [row["group"] for row in ddp_rows] == [row["group"] for row in single_rows]
    for name in ("prob_lesion", "loss"):
        np.testing.assert_allclose([float(r[name]) for r in ddp_rows], [float(r[name]) for r in single_rows],
                                   atol=1e-6)
    assert ddp_results["intervals"]["test"]["metrics"]["auroc"] == pytest.approx(
        single["intervals"]["test"]["metrics"]["auroc"], abs=1e-6)
    # the decision threshold is chosen on the whole validation split, both ranks' uneven shards gathered
    ddp_decision, single_decision = ddp_results["extra"]["decision"], single["extra"]["decision"]
    assert ddp_decision["validation_samples"] == single_decision["validation_samples"] == 25
    assert ddp_decision["thresholds"] == pytest.approx(single_decision["thresholds"], abs=1e-6)

    run_ddp("predict", [*args, "--ckpt_path", ddp_results["checkpoint"]], tmp_path)
    with open(tmp_path / "runs" / "tiny" / "version_2" / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [f"test-{i:06d}" for i in range(25)]  # each once, in order
    probs = np.array([float(row["prob_lesion"]) for row in rows])
    labels = np.array([int(row["label"]) for row in rows])
    accuracy = float(((probs > 0.5) == labels).mean())
    assert accuracy == pytest.approx(single["metrics"]["test"]["acc"], abs=1e-6)


def test_two_process_sweep_scores_every_head_on_the_whole_validation_split(tiny_cli, tmp_path):
    # 25 validation samples split 13 / 12 over the ranks: every head must be scored on all 25 (gathered once),
    # exactly as one process scores them, and both ranks must select the same head
    sweep = [
        "--config", str(REPO / "configs" / "model" / "linear_sweep.yaml"),
        "--model.init_args.backbone", "test_resnet",
        "--model.init_args.lrs", "[0.001, 0.01, 0.1]",
        "--model.init_args.weight_decays", "[0.0]",
        "--model.init_args.features_dir", str(tmp_path / "features"),
    ]
    args = [*tiny_cli(tmp_path / "runs", num_val=25, num_test=25, max_epochs=2), *sweep]
    run_ddp("fit", args, tmp_path)
    ddp = json.loads((tmp_path / "runs" / "tiny" / "version_0" / "results.json").read_text())

    main(["validate", *args, "--ckpt_path", ddp["checkpoint"]])
    single = json.loads((tmp_path / "runs" / "tiny" / "version_1" / "results.json").read_text())
    single_sweep, ddp_sweep = single["extra"]["sweep"], ddp["extra"]["sweep"]
    assert single_sweep["selected"] == ddp_sweep["selected"]
    assert len(single_sweep["heads"]) == len(ddp_sweep["heads"]) == 3
    for alone, distributed in zip(single_sweep["heads"], ddp_sweep["heads"], strict=True):
        assert alone == pytest.approx(distributed, abs=1e-6)
    assert single["metrics"]["val"] == pytest.approx(ddp["metrics"]["val"], abs=1e-6)


def test_two_process_exact_solver_equals_one_process(tiny_cli, tmp_path):
    # every rank holds the whole training and validation features: the solves, the selection and the head
    # must be those of one process, and the train/test metrics must count every sample once
    probe = [
        "--config", str(REPO / "configs" / "model" / "linear_probe.yaml"),
        "--model.init_args.backbone", "test_resnet",
        "--model.init_args.features_dir", str(tmp_path / "features"),
        "--data.init_args.augmentation", "none",
    ]
    runs = {}
    for name, launch in (("ddp", run_ddp), ("single", None)):
        args = [*tiny_cli(tmp_path / "runs", num_train=49, num_val=25, num_test=25, name=name), *probe]
        if launch is None:
            main(["fit", *args])
        else:
            launch("fit", args, tmp_path)
        runs[name] = json.loads((tmp_path / "runs" / name / "version_0" / "results.json").read_text())
    ddp, single = runs["ddp"], runs["single"]
    assert ddp["extra"]["solver"]["selected"] == single["extra"]["solver"]["selected"]
    for a, b in zip(ddp["extra"]["solver"]["path"], single["extra"]["solver"]["path"], strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)
    for split in ("train", "val", "test"):
        assert ddp["metrics"][split] == pytest.approx(single["metrics"][split], abs=1e-6), split
    heads = [torch.load(run["checkpoint"], weights_only=True)["state_dict"] for run in (ddp, single)]
    for key in ("head.weight", "head.bias", "standardizers.0.mean", "standardizers.0.std"):
        torch.testing.assert_close(heads[0][key], heads[1][key], rtol=1e-6, atol=1e-7)


def test_the_command_ends_its_process_group_before_exiting(tmp_path, capsys):
    # left to the interpreter's exit, a DDP process group's threads sometimes outlived their objects and the
    # process aborted with status 134 after writing its results
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with pytest.raises(SystemExit):
            main(["fit", "--help"])
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():  # leave no group behind for the tests that follow
            dist.destroy_process_group()
