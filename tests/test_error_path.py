"""One error path: a MedTransferError raised anywhere (setup, a DataLoader worker, a callback, one DDP rank)
ends the ``medtransfer`` command with its message on one line and exit status 2; the traceback only under
``MEDTRANSFER_TRACEBACK=1``; under DDP no rank is left waiting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from PIL import Image
from pytorch_lightning.callbacks import Callback
from torch._utils import ExceptionWrapper

from medtransfer.cli import main
from medtransfer.datamodules.errors import CorruptImageError
from medtransfer.errors import MedTransferError, find_user_error, user_error_message

REPO = Path(__file__).resolve().parents[1]


def reraised_by_a_worker(error: Exception) -> Exception:
    """``error`` as a DataLoader worker hands it to the main process (torch's ExceptionWrapper)."""
    try:
        try:
            raise OSError("image file is truncated (3 bytes not processed)")
        except OSError as cause:
            raise error from cause
    except Exception:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")
    try:
        wrapper.reraise()
    except Exception as reraised:
        return reraised
    raise AssertionError("reraise did not raise")


class NeedsTwoArguments(MedTransferError):
    """A user error that torch cannot rebuild from one string (it re-raises a RuntimeError instead)."""

    def __init__(self, path: str, expected: str) -> None:
        super().__init__(f"{path}: expected {expected}")


def test_a_worker_reraise_gives_back_the_original_message_without_the_traceback():
    reraised = reraised_by_a_worker(CorruptImageError("x-ray 7.jpg: unreadable or truncated image\nline 2"))
    assert type(reraised) is CorruptImageError and "Traceback" in str(reraised)
    assert user_error_message(reraised) == "x-ray 7.jpg: unreadable or truncated image\nline 2"

    reraised = reraised_by_a_worker(NeedsTwoArguments("labels.csv", "a column 'label'"))
    assert type(reraised) is RuntimeError
    assert user_error_message(reraised) == "labels.csv: expected a column 'label'"

    assert user_error_message(reraised_by_a_worker(ValueError("a bug"))) is None  # bugs keep their traceback
    assert user_error_message(RuntimeError("wrapped")) is None


def image_folder(root: Path, truncated: str) -> Path:
    """root/{train,val,test}/{healthy,sick}/*.jpg of 32 px noise; ``truncated`` (a train file) cut short."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4), ("test", 4)):
        for label in ("healthy", "sick"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{label}-{i}.jpg", quality=90)
    path = root / truncated
    path.write_bytes(path.read_bytes()[:200])
    return path


def folder_fit_args(root: Path, runs: Path) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "quickstart.yaml"),
        "--data", "medtransfer.datamodules.ImageFolder",
        "--data.init_args.root", str(root),
        "--data.init_args.image_size", "32",
        "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "1",  # the error comes from a worker process
        "--model.init_args.backbone", "test_resnet",
        "--trainer.max_epochs", "1",
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(runs),
        "--trainer.logger.init_args.save_dir", str(runs),
    ]


def test_a_truncated_jpeg_found_in_training_is_one_line_and_exit_status_2(tmp_path, capsys):
    bad = image_folder(tmp_path / "images", "train/sick/sick-3.jpg")
    args = folder_fit_args(tmp_path / "images", tmp_path / "runs")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("medtransfer: error:")]
    assert len(lines) == 1 and str(bad) in lines[0] and "truncated" in lines[0], err
    assert "Traceback" not in err and "DataLoader worker" not in err


def test_an_unknown_backbone_is_one_line_naming_it_and_where_the_names_are(tiny_cli, tmp_path, capsys,
                                                                           monkeypatch):
    args = ["fit", *tiny_cli(tmp_path / "runs"), "--model.init_args.backbone", "resnet5O"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("medtransfer: error:") == 1
    line = next(line for line in err.splitlines() if line.startswith("medtransfer: error:"))
    assert "unknown backbone 'resnet5O'" in line and "medtransfer weights list" in line
    assert "Namespace(" not in err and "Traceback" not in err

    monkeypatch.setenv("MEDTRANSFER_TRACEBACK", "1")  # the whole story (jsonargparse's wrapper too)
    with pytest.raises(Exception) as raised:
        main(args)
    assert "resnet5O" in str(find_user_error(raised.value))


class FailOnRank(Callback):
    """Raises a user error on one DDP rank only, in the middle of the first training epoch."""

    def __init__(self, rank: int = 1) -> None:
        self.rank = rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == 1 and trainer.global_rank == self.rank:
            raise MedTransferError(f"rank {self.rank} found bad input")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_a_user_error_on_one_ddp_rank_stops_every_rank_with_status_2(tiny_cli, tmp_path):
    command = [sys.executable, "-m", "medtransfer.cli", "fit", *tiny_cli(tmp_path / "runs", max_epochs=3),
               "--trainer.callbacks+=tests.test_error_path.FailOnRank",
               "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("medtransfer: error:")]
    assert errors and all("rank 1 found bad input" in line for line in errors[:1]), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def test_an_unreadable_traceback_setting_never_hides_the_error(monkeypatch, capsys):
    """``MEDTRANSFER_TRACEBACK=maybe`` was read only once an error had to be shown, and its own error then
    replaced that error with a traceback and exit status 1."""
    monkeypatch.setenv("MEDTRANSFER_TRACEBACK", "maybe")
    with pytest.raises(SystemExit) as ended:
        main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--trainer.max_epochs", "0"])
    warning, error = capsys.readouterr().err.strip().splitlines()[-2:]
    assert ended.value.code == 2
    assert warning.startswith("medtransfer: warning: MEDTRANSFER_TRACEBACK='maybe': expected one of 1, true")
    assert error.startswith("medtransfer: error: trainer.max_epochs=0: fit would train nothing")


def test_ctrl_c_in_a_tool_verb_is_status_130_and_one_line(monkeypatch, capsys):
    """``medtransfer extract`` interrupted ended with a KeyboardInterrupt traceback."""
    import medtransfer.verbs.weights

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(medtransfer.verbs.weights, "main", interrupted)
    with pytest.raises(SystemExit) as ended:
        main(["weights", "list"])
    err = capsys.readouterr().err.strip().splitlines()
    assert ended.value.code == 130 and len(err) == 1
    assert err[0].startswith("medtransfer: weights stopped by SIGINT; every file written is whole")
