"""``fit``, ``validate``, ``test``, ``predict`` and ``pretrain`` from Python, as the command runs them.

They do exactly what the command does: the same parsing, checks, run folder, pre-flight summary, test of the
best checkpoint, results.json with confidence intervals, and errors.

Give either a config (what ``--config`` takes: a file, several files, or a dict, plus command-line style
``args``), or the objects themselves (``model``, ``data`` and optionally a ``trainer``)::

    from medtransfer import run

    result = run.fit("configs/quickstart.yaml", args=["--trainer.max_epochs", "1"])
    result.metrics["test"]["auroc"], result.intervals["test"]["metrics"]["auroc"]

    result = run.fit(model=LinearProbe(backbone="resnet18", task=data.task), data=data)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.loggers import TensorBoardLogger

from ..lightning_modules import MedTransferModule, SSLPretrain
from .config import ParsedRun, build_trainer, default_callbacks, instantiate, parse_run
from .guards import fixed_callbacks
from .options import RunOptions
from .parse_errors import ConfigError
from .result import RunResult
from .session import Job, execute

ConfigSource = str | Path | Sequence[str | Path] | dict | None


def fit(config: ConfigSource = None, *, args: Sequence[str] = (), model: MedTransferModule | None = None,
        data: pl.LightningDataModule | None = None, trainer: pl.Trainer | None = None,
        ckpt_path: str | None = None, options: RunOptions | None = None) -> RunResult:
    """Train, then validate and test the best checkpoint (``options.test_after_fit``); write results.json.

    ``validate``, ``test``, ``predict`` and ``pretrain`` take the same arguments.

    Args:
        config: what ``--config`` takes: a YAML file, several files, or a dict.
        args: command-line style arguments after the config files (``["--trainer.max_epochs", "1"]``).
        model: the model, when the run is given objects instead of a config.
        data: the datamodule, with ``model``.
        trainer: optional, with ``model``: default ``default_trainer`` named after the data and the model. A
            trainer built elsewhere gets the callbacks every run has that it lacks.
        ckpt_path: the checkpoint to resume (``fit``) or to score (the other verbs).
        options: with objects, what the command takes as ``--test_after_fit``, ``--intervals.*``,
            ``--allow_untrained`` and ``--explain`` (a config holds its own).

    Returns:
        The run's metrics, confidence intervals, output paths and results.json.

    Raises:
        ConfigError: both a config and objects were given, or neither a config nor a model and data.
    """
    return run("fit", config, args, model, data, trainer, ckpt_path, options)


def validate(config: ConfigSource = None, *, args: Sequence[str] = (), model: MedTransferModule | None = None,
             data: pl.LightningDataModule | None = None, trainer: pl.Trainer | None = None,
             ckpt_path: str | None = None, options: RunOptions | None = None) -> RunResult:
    """Score a checkpoint on the validation split; write results.json."""
    return run("validate", config, args, model, data, trainer, ckpt_path, options)


def test(config: ConfigSource = None, *, args: Sequence[str] = (), model: MedTransferModule | None = None,
         data: pl.LightningDataModule | None = None, trainer: pl.Trainer | None = None,
         ckpt_path: str | None = None, options: RunOptions | None = None) -> RunResult:
    """Score a checkpoint on the test split, with confidence intervals; write results.json."""
    return run("test", config, args, model, data, trainer, ckpt_path, options)


test.__test__ = False  # a run function, not a test for pytest to collect from modules that import it


def predict(config: ConfigSource = None, *, args: Sequence[str] = (), model: MedTransferModule | None = None,
            data: pl.LightningDataModule | None = None, trainer: pl.Trainer | None = None,
            ckpt_path: str | None = None, options: RunOptions | None = None) -> RunResult:
    """Score images with a checkpoint; write predictions.csv (``RunResult.predictions_path``)."""
    return run("predict", config, args, model, data, trainer, ckpt_path, options)


def pretrain(config: ConfigSource = None, *, args: Sequence[str] = (), model: SSLPretrain | None = None,
             data: pl.LightningDataModule | None = None, trainer: pl.Trainer | None = None,
             ckpt_path: str | None = None, options: RunOptions | None = None) -> RunResult:
    """Self-supervised pretraining (an ``SSLPretrain`` model): ``fit``, which writes the backbone export.

    The export (``RunResult.exported``: its path and fingerprint) is for any protocol's
    ``model.init_args.checkpoint``. Arguments as for ``fit``.

    Raises:
        ConfigError: the model is not an ``SSLPretrain``.
    """
    return run("fit", config, args, model, data, trainer, ckpt_path, options, expect=SSLPretrain)


def run(verb: str, config: ConfigSource, args: Sequence[str], model, data, trainer, ckpt_path,
        options: RunOptions | None, expect: type | None = None) -> RunResult:
    """The run of ``verb`` from a config or from objects (see the module docstring)."""
    if config is not None or args:
        if model is not None or data is not None or trainer is not None or options is not None:
            raise ConfigError("give either a config (config=, args=) or the objects (model=, data=, "
                              "trainer=, options=), not both: a config already names them")
        return execute_parsed(parse_run(verb, config_arguments(config, args, ckpt_path)), expect)
    if model is None or data is None:
        raise ConfigError(f"run.{verb} needs a config, or a model and data")
    _check_model(model, expect)
    trainer = trainer if trainer is not None else default_trainer(f"{_name(data)}-{_name(model)}")
    add_fixed_callbacks(trainer)
    return execute(Job(verb, model, data, trainer, ckpt_path, options or RunOptions()))


def execute_parsed(parsed: ParsedRun, expect: type | None = None) -> RunResult:
    """Build a parsed run's parts and execute it (the command's path, and the API's with a config)."""
    parts = instantiate(parsed)
    _check_model(parts.model, expect)
    return execute(Job(
        parsed.verb, parts.model, parts.data, parts.trainer, parsed.ckpt_path, parsed.options(),
        parsed.as_dict(), parsed.dump(), parsed.checkpoint, method_kwargs(parsed),
    ))


def config_arguments(config: ConfigSource, args: Sequence[str], ckpt_path: str | None) -> list[str] | dict:
    """What the parser reads from a config source, extra arguments and a checkpoint.

    A config dict (with ``ckpt_path`` in it), or the ``--config`` arguments of the files, then ``args``, then
    ``--ckpt_path``.
    """
    if isinstance(config, dict):
        if args:
            raise ConfigError("args= works with config files; a config dict holds every setting itself "
                              "(nested as in YAML: {'trainer': {'max_epochs': 1}, ...})")
        return config if ckpt_path is None else {**config, "ckpt_path": str(ckpt_path)}
    return [*config_files(config), *args, *(["--ckpt_path", str(ckpt_path)] if ckpt_path is not None else [])]


def config_files(config: ConfigSource) -> list[str]:
    """``--config`` arguments for a file or a sequence of files."""
    if config is None:
        return []
    files = [config] if isinstance(config, (str, Path)) else list(config)
    return [part for file in files for part in ("--config", str(file))]


def method_kwargs(parsed: ParsedRun) -> dict:
    """The Trainer method's own settings that the verb's config holds besides ``ckpt_path``."""
    wanted = {"validate": ("verbose",), "test": ("verbose",), "predict": ("return_predictions",)}
    return {key: parsed.config.get(key) for key in wanted.get(parsed.verb, ()) if key in parsed.config}


def default_trainer(name: str, save_dir: str | Path = "runs", **settings) -> pl.Trainer:
    """The command's trainer, for runs given objects instead of a config.

    It has TensorBoard under ``<save_dir>/<name>``, the default callbacks (``run.config.default_callbacks``:
    checkpoints on the task's metric, test predictions and plots, ...), its progress bar, and any other
    Trainer ``settings``.

    Args:
        name: the run's name: its folder under ``save_dir``.
        save_dir: the folder of runs.
        **settings: any other ``pl.Trainer`` arguments (``max_epochs=10``, ``accelerator="gpu"``).
    """
    callbacks = [_instantiate(entry) for entry in default_callbacks()]
    return build_trainer({"logger": TensorBoardLogger(save_dir, name=name), "callbacks": callbacks,
                          **settings})


def add_fixed_callbacks(trainer: pl.Trainer) -> None:
    """Give a trainer built elsewhere the callbacks every run has (``guards.fixed_callbacks``) that it lacks.

    They go before its checkpoint callbacks, which must save only what the guards let through.
    """
    present = {type(callback) for callback in trainer.callbacks}
    first_checkpoint = next((i for i, c in enumerate(trainer.callbacks) if isinstance(c, Checkpoint)),
                            len(trainer.callbacks))
    missing = [callback for callback in fixed_callbacks() if type(callback) not in present]
    trainer.callbacks[first_checkpoint:first_checkpoint] = missing


def _instantiate(entry: dict):
    module, _, name = entry["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**entry["init_args"])


def _name(thing) -> str:
    return type(thing).__name__.lower()


def _check_model(model, expect: type | None) -> None:
    if expect is not None and not isinstance(model, expect):
        raise ConfigError(f"run.pretrain trains an {expect.__name__} model, not {type(model).__name__}: use "
                          "run.fit for it")
