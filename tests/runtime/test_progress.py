"""The progress bar of long steps (medtransfer.runtime.progress): on stderr, only where someone watches (a
terminal, DDP rank zero), MEDTRANSFER_PROGRESS to force it; the PCam gunzip draws one."""

from __future__ import annotations

import gzip

import pytest

from medtransfer.datamodules.download import gunzip_file
from medtransfer.runtime.progress import PROGRESS_ENV, progress, show_progress


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", PROGRESS_ENV):
        monkeypatch.delenv(name, raising=False)


def test_bars_follow_the_terminal_the_rank_and_the_env_var(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert show_progress()
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not show_progress()
    monkeypatch.setenv(PROGRESS_ENV, "1")
    monkeypatch.setenv("SLURM_PROCID", "3")  # another rank: never, even when forced
    assert not show_progress()


def test_no_bar_in_a_log_file(capsys):
    assert sum(progress(range(4), desc="extract x train")) == 6  # the iterable passes through
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal


def test_gunzip_draws_a_bar_over_the_compressed_bytes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    source = tmp_path / "x.h5.gz"
    source.write_bytes(gzip.compress(bytes(range(256)) * 4096))
    gunzip_file(source, tmp_path / "x.h5")
    assert (tmp_path / "x.h5").read_bytes() == bytes(range(256)) * 4096
    err = capsys.readouterr().err
    assert "gunzip x.h5.gz" in err and "100%" in err


def test_the_trainer_gets_tqdms_bar_on_a_terminal_and_epoch_lines_elsewhere(monkeypatch):
    from pytorch_lightning.callbacks import TQDMProgressBar

    from medtransfer.runtime.training_bar import EpochLines, training_bar

    class OwnBar(TQDMProgressBar):  # a user's own bar (Rich's needs the optional rich package)
        pass

    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert isinstance(training_bar([], None), TQDMProgressBar)
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert isinstance(training_bar([], True), EpochLines)
    assert training_bar([], False) is None and training_bar([OwnBar()], True) is None
