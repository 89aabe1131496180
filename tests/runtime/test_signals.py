"""Ctrl-C and SIGTERM during ``fit``: the command ends at once with 130 / 143, says how to continue, and
leaves every file whole (the last checkpoint loads; no temporary file is left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medtransfer.runtime.signals import RunStopped, stop_on_signals
from tests.conftest import tiny_cli_args

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_fit_ends_it_with_its_status_and_how_to_continue(tmp_path, signum, status):
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "medtransfer.cli", "fit", *tiny_cli_args(runs, max_epochs=200)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MEDTRANSFER_NUM_WORKERS": "0"}
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    last = runs / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.is_file(), process.communicate()[1][-2000:]
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-2000:]
    final = err.strip().splitlines()[-1]
    assert final.startswith(f"medtransfer: fit stopped by {signal.Signals(signum).name} at epoch ")
    assert "--ckpt_path last" in final and str(last) in final
    folder = last.parent.parent
    assert not list(folder.rglob("*.tmp")) and not (folder / "results.json").exists()
    assert torch.load(last, weights_only=True)["epoch"] >= 0


def test_outside_a_run_the_previous_handlers_are_kept():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunStopped) as stopped:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert stopped.value.status == 130 and signal.getsignal(signal.SIGINT) is before
