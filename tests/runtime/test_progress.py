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


def test_the_trainer_gets_tqdms_bar_unless_the_config_turns_it_off_or_names_its_own():
    from jsonargparse import Namespace
    from pytorch_lightning.callbacks import TQDMProgressBar

    from medtransfer.runtime.progress import TRAINING_BAR, choose_training_bar

    class OwnBar(TQDMProgressBar):  # a user's own bar (Rich's needs the optional rich package)
        pass

    given = Namespace(class_path="medtransfer.callbacks.TaskCheckpoint", init_args=Namespace())
    plain = Namespace(enable_progress_bar=True, callbacks=[given])
    choose_training_bar(plain)
    assert [c.class_path for c in plain.callbacks] == ["medtransfer.callbacks.TaskCheckpoint", TRAINING_BAR]

    for config in (Namespace(enable_progress_bar=False, callbacks=[given]),
                   Namespace(enable_progress_bar=True, callbacks=[given, OwnBar()]),
                   Namespace(enable_progress_bar=True, callbacks=[Namespace(
                       class_path="pytorch_lightning.callbacks.RichProgressBar", init_args=Namespace())])):
        before = list(config.callbacks)
        choose_training_bar(config)
        assert config.callbacks == before
