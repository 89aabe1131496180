"""SLURM auto-requeue without SLURM: the signal before the time limit, ``scontrol requeue`` (a fake on PATH
that records its arguments), and the requeued job's ``medtransfer fit --ckpt_path last`` ending exactly where
an uninterrupted run ends (test metrics and weights); a benchmark task's run folder before an attempt."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace
from pytorch_lightning.callbacks import Callback

from medtransfer.cli import main
from medtransfer.errors import user_error_message
from medtransfer.grid.attempt import prepare_attempt
from medtransfer.grid.fingerprint import run_fingerprint
from medtransfer.run import config as run_config
from medtransfer.runtime.ckpt_path import resolve_last_checkpoint
from medtransfer.runtime.requeue import GRACE_ENV, finish_epoch
from medtransfer.utils.atomic import OutputWriteError


class SignalAt(Callback):
    """Sends this process the requeue signal after one training batch, as SLURM does before the limit."""

    def __init__(self, epoch: int = 1, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """The environment of SLURM array task 4242_3 with one task, and a ``scontrol`` that logs its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name, value in {"SLURM_JOB_ID": "4245", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "3",
                        "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "mt-grid", "SLURM_PROCID": "0",
                        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(GRACE_ENV, "3600")  # time enough to finish the signalled epoch
    return calls


def test_a_requeued_fit_continues_to_the_uninterrupted_result(tiny_cli, tmp_path, fake_slurm, monkeypatch,
                                                               capsys):
    # 48 training samples in batches of 16: the signal comes after the first of epoch 1's three batches
    extra = ["--model.init_args.head_dropout", "0.3", "--intervals.resamples", "0"]
    args = [*tiny_cli(tmp_path / "job", max_epochs=3), *extra,
            "--trainer.logger.init_args.version", "job", "--ckpt_path", "last"]
    fixed = run_config.fixed_callbacks
    with monkeypatch.context() as patch:  # the signal, outside the config (whose fingerprint is compared)
        patch.setattr(run_config, "fixed_callbacks", lambda: [SignalAt(epoch=1, batch=0), *fixed()])
        main(["fit", *args])  # the first attempt: requeued at the end of epoch 1, status 0
    err = capsys.readouterr().err
    assert "finishing epoch 1 (2 batches)" in err and "requeued SLURM job 4242_3" in err
    assert fake_slurm.read_text().split() == ["requeue", "4242_3"]
    run_dir = tmp_path / "job" / "tiny" / "job"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert not (run_dir / "results.json").exists()
    assert not list((tmp_path / "job").rglob("hpc_ckpt_*.ckpt"))  # Lightning's own handler never ran

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    main(["fit", *args])  # the requeued job: the same command
    assert f"--ckpt_path last: {run_dir / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().err
    assert fake_slurm.read_text().split() == ["requeue", "4242_3"]  # once

    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS",
                 "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name)
    main(["fit", *tiny_cli(tmp_path / "whole", max_epochs=3), *extra])
    whole_dir = tmp_path / "whole" / "tiny" / "version_0"
    requeued, whole = (json.loads((d / "results.json").read_text()) for d in (run_dir, whole_dir))
    for split in ("train", "val", "test"):
        assert requeued["metrics"][split] == pytest.approx(whole["metrics"][split], abs=1e-6), split
    # a benchmark recognises the continued run as the run it planned
    assert requeued["config"]["ckpt_path"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert run_fingerprint(requeued["config"]) == run_fingerprint(whole["config"])
    last = [torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (run_dir, whole_dir)]
    assert last[0]["global_step"] == last[1]["global_step"] == 9
    for key, value in last[1]["state_dict"].items():
        torch.testing.assert_close(last[0]["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)


def test_the_signalled_epoch_is_finished_only_when_it_fits_in_the_grace_time():
    # 10 of 40 batches in 20 s: 60 s more, plus a 15 s validation
    assert finish_epoch(20.0, 10, 30, 15.0, grace_s=80.0)
    assert not finish_epoch(20.0, 10, 30, 15.0, grace_s=70.0)
    assert not finish_epoch(20.0, 10, 30, 15.0, grace_s=None)  # unknown: stop now, continue from last epoch


def saved(folder: Path, fingerprint: str, checkpoint: bytes | dict | None) -> Path:
    """A run folder as an earlier attempt left it: run.json, and a last.ckpt (a dict saved by torch, or raw
    bytes)."""
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"id": "r", "fingerprint": fingerprint}))
    (folder / "events.out").write_text("an earlier attempt's logs")
    if isinstance(checkpoint, dict):
        torch.save(checkpoint, folder / "checkpoints" / "last.ckpt")
    elif checkpoint is not None:
        (folder / "checkpoints" / "last.ckpt").write_bytes(checkpoint)
    return folder


RUN = {"id": "r", "fingerprint": "f00d", "argv": ["fit"]}
CHECKPOINT = {"epoch": 4, "global_step": 40, "state_dict": {"w": torch.ones(2)}}


def test_an_attempt_continues_a_matching_checkpoint_and_moves_any_other_aside(tmp_path):
    runs = tmp_path / "grid" / "runs"
    kept = saved(runs / "kept", "f00d", CHECKPOINT)
    said = prepare_attempt(kept, RUN)
    assert said == f"continuing from {kept / 'checkpoints' / 'last.ckpt'} (epoch 4, step 40)"
    assert (kept / "events.out").exists() and json.loads((kept / "run.json").read_text()) == RUN

    for name, fingerprint, checkpoint, why in [
        ("other", "beef", CHECKPOINT, "was written for config fingerprint beef, not f00d"),
        ("cut", "f00d", b"PK\x03\x04 truncated", "does not read as a checkpoint"),
    ]:
        folder = saved(runs / name, fingerprint, checkpoint)
        said = prepare_attempt(folder, RUN)
        assert why in said and "starting afresh" in said
        moved = list((tmp_path / "grid" / "moved").glob(f"{name}-*"))
        assert len(moved) == 1 and str(moved[0]) in said  # never deleted
        assert (moved[0] / "checkpoints" / "last.ckpt").exists() and (moved[0] / "events.out").exists()
        assert sorted(p.name for p in folder.iterdir()) == ["run.json"]

    early = saved(runs / "early", "f00d", None)  # killed before its first checkpoint: nothing to keep
    assert "no checkpoint" in prepare_attempt(early, RUN)
    assert sorted(p.name for p in early.iterdir()) == ["run.json"]
    assert prepare_attempt(runs / "new", RUN) == "starting"


def test_a_full_disk_while_readying_a_run_folder_is_a_one_line_error(tmp_path, monkeypatch):
    # the disk filled during a grid: creating the next run's folder (or moving a stale one aside) failed with
    # the bare OSError, and the launcher ended in a traceback
    refused = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_disk(*args, **kwargs):
        raise refused

    runs = tmp_path / "grid" / "runs"
    stale = saved(runs / "stale", "beef", CHECKPOINT)
    monkeypatch.setattr(Path, "mkdir", full_disk)
    monkeypatch.setattr(Path, "rename", full_disk)
    for folder in (runs / "new", stale):
        with pytest.raises(OutputWriteError, match="the disk is full") as caught:
            prepare_attempt(folder, RUN)
        assert str(folder) in str(caught.value) and user_error_message(caught.value) is not None
    assert (stale / "checkpoints" / "last.ckpt").is_file() and not (runs / "new").exists()


def test_ckpt_path_last_finds_the_checkpoint_of_a_benchmark_run_folder(tmp_path):
    # benchmark runs log straight into their folder (logger name and version ""): the tasks' --ckpt_path last
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    logger = Namespace(class_path="pytorch_lightning.loggers.TensorBoardLogger",
                       init_args=Namespace(save_dir=str(tmp_path), name="", version=""))
    config = Namespace(trainer=Namespace(default_root_dir=str(tmp_path), logger=logger))
    assert resolve_last_checkpoint(config, continue_run=True) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert logger.init_args.version == ""  # the folder stays the run's own
