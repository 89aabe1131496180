"""A redirected ``medtransfer fit`` writes no progress-bar redraws: one line per epoch with its metrics and
time instead (what a SLURM output.log holds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import QUICKSTART

REPO = Path(__file__).resolve().parents[2]


def test_a_fit_sent_to_a_file_writes_one_line_per_epoch_and_no_redraws(tmp_path):
    runs = tmp_path / "runs"
    log = tmp_path / "fit.log"
    args = ["--config", str(QUICKSTART), "--data.init_args.num_train", "48", "--data.init_args.num_val", "24",
            "--data.init_args.num_test", "24", "--data.init_args.native_size", "32",
            "--model.init_args.backbone", "test_resnet", "--trainer.max_epochs", "3",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_model_summary", "false"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop("MEDTRANSFER_PROGRESS", None)
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-m", "medtransfer.cli", "fit", *args], cwd=REPO, env=environment,
                       stdout=handle, stderr=subprocess.STDOUT, check=True)
    text = log.read_text()
    assert "\r" not in text and "it/s" not in text
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("train/loss " in line and "val/auroc " in line and line.endswith(" s)") for line in epochs)
