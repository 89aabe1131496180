"""Root fixtures: a tiny run of the ``medtransfer`` CLI on synthetic data, writing only into pytest's
tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# Tiny models on a shared CPU: one intra-op thread is ~10x faster than several fighting for busy cores, and
# the suite's CLI subprocesses (DDP) inherit the setting through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
# Tiny datasets load faster in the test process than through worker processes that take a second to start; a
# test that needs workers asks for them (data.init_args.num_workers).
os.environ.setdefault("MEDTRANSFER_NUM_WORKERS", "0")

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def tiny_cli_args(runs: Path, kind: str = "binary", num_train: int = 48, num_val: int = 24,
                  num_test: int = 25, max_epochs: int = 1, name: str = "tiny") -> list[str]:
    """Overrides that shrink the quickstart to seconds: tiny synthetic splits at 32 px, timm's
    ``test_resnet``, no progress bar; logs, checkpoints and results.json go under ``runs/<name>``."""
    return [
        "--config", str(QUICKSTART),
        "--data.init_args.kind", kind,
        "--data.init_args.num_train", str(num_train),
        "--data.init_args.num_val", str(num_val),
        "--data.init_args.num_test", str(num_test),
        "--data.init_args.native_size", "32",
        "--data.init_args.batch_size", "16",
        "--model.init_args.backbone", "test_resnet",
        *quiet_trainer_args(runs, name, max_epochs),
    ]


def quiet_trainer_args(runs: Path, name: str, max_epochs: int) -> list[str]:
    """Trainer overrides of a short test run: no progress bar or summary, every step logged, logs,
    checkpoints and results.json under ``runs/<name>``."""
    return [
        "--trainer.max_epochs", str(max_epochs),
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(runs),
        "--trainer.logger.init_args.save_dir", str(runs),
        "--trainer.logger.init_args.name", name,
    ]


@pytest.fixture(scope="session")
def tiny_cli() -> Callable[..., list[str]]:
    """``tiny_cli(runs_dir, kind=..., num_test=..., max_epochs=..., name=...)``: CLI arguments (after the
    verb) for a tiny synthetic run whose outputs go under ``runs_dir``."""
    return tiny_cli_args
