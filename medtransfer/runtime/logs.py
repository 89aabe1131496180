"""Logging of the ``medtransfer`` command, set up once at its entry point (``configure_logging``).

medtransfer's modules log through ``logging.getLogger(__name__)`` and configure nothing at import, so using
medtransfer as a library stays as quiet as the application using it wants. The command shows the
``medtransfer.*`` messages (carved splits, the label fraction kept, downloads, decompression, unpacking) at
INFO on stderr, one compact line each, on DDP rank zero only (other ranks show warnings and errors);
``MEDTRANSFER_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR, CRITICAL) changes the level. Chatty libraries are held
at WARNING. Lightning's own messages keep Lightning's handler, less its advertisement for a cloud logger
printed on every run. See docs/logging.md.
"""

from __future__ import annotations

import logging
import sys
import warnings

from tqdm import tqdm

from ..errors import MedTransferError
from .ranks import process_rank
from .settings import log_level_name

LEVEL_ENV = "MEDTRANSFER_LOG_LEVEL"  # read through runtime.settings
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LEVEL = "INFO"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
LIGHTNING_INFO = "pytorch_lightning.utilities.rank_zero"  # the logger of Lightning's rank_zero_info
ADVERT_PREFIX = "💡 Tip:"
# warnings libraries print on every run that no user can act on: Lightning's use of a torch API that torch
# deprecated (each command printed it once)
UNACTIONABLE_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)
QUIET_LIBRARIES = ("PIL", "matplotlib", "urllib3", "fsspec", "h5py", "filelock", "huggingface_hub",
                   "timm", "numexpr", "asyncio", "git", "mlflow", "alembic", "wandb")


class LogLevelError(MedTransferError, ValueError):
    """``MEDTRANSFER_LOG_LEVEL`` names no logging level."""


class _NoAdverts(logging.Filter):
    """Drops Lightning's tips advertising products ("💡 Tip: ... try installing litlogger"), one per run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVERT_PREFIX)


class _StderrThroughTqdm(logging.Handler):
    """Writes each record to the current ``sys.stderr`` through ``tqdm.write``, so a line logged while a
    progress bar runs is printed above the bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never end the run
            self.handleError(record)


def log_level() -> int:
    """The level ``MEDTRANSFER_LOG_LEVEL`` asks for (a name, any case), INFO when unset."""
    name = log_level_name() or DEFAULT_LEVEL
    if name not in LEVELS:
        raise LogLevelError(f"{LEVEL_ENV}={name!r} is not a log level; set it to one of "
                            f"{', '.join(LEVELS)} (or unset it for {DEFAULT_LEVEL})")
    return getattr(logging, name)


def configure_logging() -> logging.Logger:
    """Give the ``medtransfer`` logger its stderr handler and level, and quiet chatty libraries. Called by
    the command's entry points (``medtransfer.cli.main`` and each tool verb's ``main``); calling it again
    only re-reads the level. Non-zero DDP ranks log warnings and errors only."""
    level = log_level()
    if process_rank() != 0:
        level = max(level, logging.WARNING)
    logger = logging.getLogger("medtransfer")
    handler = next((h for h in logger.handlers if isinstance(h, _StderrThroughTqdm)), None)
    if handler is None:
        handler = _StderrThroughTqdm()
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level)
    lightning = logging.getLogger(LIGHTNING_INFO)
    if not any(isinstance(f, _NoAdverts) for f in lightning.filters):
        lightning.addFilter(_NoAdverts())
    for pattern in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in QUIET_LIBRARIES:
        if logging.getLogger(name).level < logging.WARNING:
            logging.getLogger(name).setLevel(logging.WARNING)
    return logger
