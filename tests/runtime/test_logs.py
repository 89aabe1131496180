"""The command's logging (medtransfer.runtime.logs): medtransfer's INFO messages on stderr,
MEDTRANSFER_LOG_LEVEL changing the level, an invalid level one clear error, chatty libraries quiet, nothing
configured at import."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from medtransfer.cli import main
from medtransfer.runtime.logs import LEVEL_ENV, LogLevelError, configure_logging

SPLITS_LOG = "medtransfer.datamodules.splits"
PACKAGE = Path(__file__).resolve().parents[2] / "medtransfer"


@pytest.fixture(autouse=True)
def restore_medtransfer_logger():
    """Each test configures the logger afresh; put its handlers and level back afterwards."""
    logger = logging.getLogger("medtransfer")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:], logger.level = handlers, level


def test_info_messages_appear_on_stderr_with_a_compact_format(monkeypatch, capsys):
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    configure_logging()
    configure_logging()  # idempotent: one handler, each line once
    logging.getLogger(SPLITS_LOG).info("Demo: carved val from the %d train samples", 120)
    logging.getLogger(SPLITS_LOG).debug("not shown at INFO")
    err = capsys.readouterr().err
    assert err.count("carved val") == 1 and "not shown" not in err
    assert f" INFO {SPLITS_LOG}: Demo: carved val from the 120 train samples" in err
    assert logging.getLogger("PIL").level == logging.WARNING  # chatty libraries held back


def test_lightnings_advert_is_dropped_and_its_other_messages_kept(caplog):
    from pytorch_lightning.utilities import rank_zero_info

    configure_logging()
    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing [litlogger](https://pypi.org/)")
        rank_zero_info("GPU available: False, used: False")
    assert "litlogger" not in caplog.text and "GPU available" in caplog.text


def test_the_env_var_changes_the_level(monkeypatch, capsys):
    monkeypatch.setenv(LEVEL_ENV, "warning")
    configure_logging()
    logging.getLogger(SPLITS_LOG).info("an info line")
    logging.getLogger(SPLITS_LOG).warning("a warning line")
    monkeypatch.setenv(LEVEL_ENV, "DEBUG")
    configure_logging()
    logging.getLogger(SPLITS_LOG).debug("a debug line")
    err = capsys.readouterr().err
    assert "an info line" not in err and "a warning line" in err and "a debug line" in err


def test_an_invalid_level_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setenv(LEVEL_ENV, "LOUD")
    with pytest.raises(LogLevelError, match="MEDTRANSFER_LOG_LEVEL='LOUD' is not a log level; set it to one "
                                            "of DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        configure_logging()
    with pytest.raises(SystemExit) as exit_info:  # the command: one line, exit status 2
        main(["weights", "list"])
    assert exit_info.value.code == 2
    assert "medtransfer: error: MEDTRANSFER_LOG_LEVEL='LOUD' is not a log level" in capsys.readouterr().err


def test_non_zero_ranks_log_warnings_only(monkeypatch):
    monkeypatch.delenv(LEVEL_ENV, raising=False)
    monkeypatch.setenv("RANK", "1")
    assert configure_logging().level == logging.WARNING


def test_no_module_configures_logging_at_import():
    """Library use stays silent: no module-level logging setup anywhere in medtransfer (a statement at the
    top of a module runs at import)."""
    configuring = {"configure_logging", "basicConfig", "addHandler", "dictConfig", "fileConfig"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level = [node for node in tree.body if not isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        for node in (n for statement in top_level for n in ast.walk(statement)):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in configuring:
                    found.append(f"{path.name}:{node.lineno} {name}")
    assert found == []
