"""The folder of one run, whatever its logger: where results.json, the test plots, the predictions and the
explanation maps are written, next to the run's ``checkpoints/``.

``trainer.log_dir`` is not that folder for every logger: for TensorBoard and CSV it is the run's version
folder, but for W&B, MLflow and any other logger it is the logger's ``save_dir``, shared by every run, so
successive runs overwrote each other's results.json. ``run_directory`` gives each run its own folder, the
one Lightning puts its checkpoints in:

- TensorBoard, CSV: ``<save_dir>/<name>/version_<n>`` (the version folder, as before);
- W&B: ``<save_dir>/<project>/<run id>``; MLflow: ``<save_dir>/<experiment id>/<run id>`` (with a file store
  this is the run's own folder in ``mlruns``); any other logger: ``<save_dir>/<name>/<version>``;
- no logger: ``trainer.default_root_dir``.
"""

from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger


def run_directory(trainer: pl.Trainer) -> str:
    """This run's folder (see the module docstring), rank zero's under DDP: a collective broadcast like
    ``trainer.log_dir``, so every rank must call it; it creates nothing."""
    return trainer.strategy.broadcast(local_run_directory(trainer))


def checkpoint_directory(trainer: pl.Trainer) -> str:
    """Where the run's checkpoint callback writes: its ``dirpath`` when set, else Lightning's choice,
    ``<run folder>/checkpoints``. Rank zero's view; reads no collective."""
    callback = trainer.checkpoint_callback
    if callback is not None and getattr(callback, "dirpath", None):
        return str(callback.dirpath)
    return os.path.join(local_run_directory(trainer), "checkpoints")


def logger_description(logger: Logger) -> str:
    """One phrase naming where ``logger`` writes, for the line a run prints when it starts."""
    kind = type(logger).__name__
    if isinstance(logger, (TensorBoardLogger, CSVLogger)):
        return f"{kind} {logger.log_dir}"
    where = logger.save_dir if logger.save_dir is not None else "a remote store"  # MLflow over HTTP: None
    return f"{kind} {where}, run {_version_of(logger)}"


def local_run_directory(trainer: pl.Trainer) -> str:
    """``run_directory`` as this process sees it, without the broadcast: for code that runs on rank zero
    only (there it is the run's folder)."""
    if not trainer.loggers:
        return str(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = _version_of(logger)
    version = version if isinstance(version, str) else f"version_{version}"
    if isinstance(logger, (TensorBoardLogger, CSVLogger)):
        return os.path.join(logger.root_dir, version)
    save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
    return os.path.join(str(save_dir), str(logger.name), version)


def _version_of(logger: Logger) -> str | int | None:
    """The logger's version (run id); loggers that know it only once their run exists (W&B) start it, as
    Lightning does when a run sets up (on rank zero; other ranks get rank zero's folder by broadcast)."""
    version = logger.version
    if version is None:
        _ = logger.experiment
        version = logger.version
    return version
