"""A run's configuration, read the same way by the command, the Python API and the benchmark grid.

One parser per verb, in LightningCLI's layout (``seed_everything``, ``trainer``, ``model``, ``data``,
``ckpt_path``, config files with ``--config``, ``--print_config``), built with Lightning's argument parser and
no CLI object around it: parsing, reading the checkpoint that ``--ckpt_path`` names, and instantiating are
three plain steps (``parse_run``, then ``instantiate``). The task is never a model setting: it is linked
from the data (``data.task``) when the classes are built."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from jsonargparse import ActionConfigFile, Namespace, set_loader
from pytorch_lightning.cli import LightningArgumentParser

from .. import __version__
from ..callbacks import (
    LearningRates,
    PredictionWriter,
    TaskCheckpoint,
    TestPlots,
    TestPredictionWriter,
    TrainingImageGrid,
)
from ..datamodules import MedicalDataModule
from ..errors import first_line
from ..lightning_modules import MedTransferModule
from ..runtime.checkpoints import (
    CHECKPOINT_MODEL_KEY,
    VERSION_KEY,
    CheckpointFileError,
    read_checkpoint,
)
from ..runtime.ckpt_path import (
    fill_data_from_checkpoint,
    resolve_last_checkpoint,
    settings_unknown_to_model,
    with_checkpoint_model,
)
from ..runtime.seeding import drawn_seed
from ..runtime.training_bar import training_bar
from ..utils.yaml_files import jsonargparse_yaml_loader
from .guards import fixed_callbacks
from .inference import CheckpointRecord, recorded_by_checkpoint
from .options import RunOptions
from .parse_errors import ConfigError, config_error
from .trainer_values import check_sync_batchnorm, check_trainer_values

log = logging.getLogger(__name__)
VERBS = ("fit", "validate", "test", "predict")
# Trainer method arguments that are the model and data themselves, not settings
METHOD_SKIPS = {"model", "datamodule", "train_dataloaders", "val_dataloaders", "dataloaders"}
DESCRIPTIONS = {
    "fit": "Train a model, then validate and test its best checkpoint; writes results.json.",
    "validate": "Score a checkpoint on the validation split; writes results.json.",
    "test": "Score a checkpoint on the test split, with confidence intervals; writes results.json.",
    "predict": "Score images with a checkpoint; writes predictions.csv.",
}


@dataclass
class ParsedRun:
    """A verb's arguments, parsed: the resolved ``config`` (what results.json records), the ``parser`` that
    instantiates and saves it, and the task a checkpoint was trained for (checked against the data's)."""

    verb: str
    parser: LightningArgumentParser
    config: Namespace
    checkpoint: CheckpointRecord | None = None  # what --ckpt_path's checkpoint records of its training

    @property
    def ckpt_path(self) -> str | None:
        return self.config.get("ckpt_path")

    def options(self) -> RunOptions:
        return RunOptions.from_config(self.config)

    def as_dict(self) -> dict:
        return self.config.as_dict()

    def dump(self) -> str:
        """The resolved config as YAML, as ``--print_config`` prints it (the run folder's config.yaml)."""
        return self.parser.dump(self.config, skip_none=False)


def build_parser(verb: str) -> LightningArgumentParser:
    """``medtransfer <verb>``'s parser; it raises errors instead of exiting (``parse_run`` words them)."""
    # a repeated key in a config file is an error, not silently lost (DuplicateKeyError stays out of
    # ``exceptions``: listed, jsonargparse would retry the value as a plain string and hide the message)
    set_loader("yaml", jsonargparse_yaml_loader, exceptions=(yaml.YAMLError,))
    parser = LightningArgumentParser(
        prog=f"medtransfer {verb}", description=DESCRIPTIONS[verb], exit_on_error=False, default_env=False,
        dump_header=[f"medtransfer=={__version__}", f"pytorch_lightning=={pl.__version__}"],
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile,
                        help="a YAML config file (data, model and trainer pieces); repeatable, later ones "
                             "win")
    parser.add_argument("--seed_everything", type=bool | int, default=0,
                        help="the run's seed (0 by default; true: a random one, recorded in results.json)")
    parser.add_lightning_class_args(pl.Trainer, "trainer")
    parser.set_defaults({"trainer.logger": default_logger(), "trainer.callbacks": default_callbacks()})
    parser.add_lightning_class_args(MedTransferModule, "model", subclass_mode=True)
    parser.add_lightning_class_args(MedicalDataModule, "data", subclass_mode=True)
    parser.link_arguments("data.task", "model.init_args.task", apply_on="instantiate")
    parser.add_method_arguments(pl.Trainer, verb, skip=METHOD_SKIPS)
    RunOptions.add_arguments(parser)
    return parser


def default_logger() -> dict:
    """TensorBoard under ``runs/``; a run naming no logger is named after its configs (``ad_hoc_name``)."""
    return {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "runs", "name": None}}


def default_callbacks() -> list[dict]:
    """The default of ``trainer.callbacks``, as ``--print_config`` shows it: a config that sets
    ``trainer.callbacks`` replaces the whole list (copy it from ``--print_config`` to change one), and
    ``--trainer.callbacks+=<class>`` adds one. Without ``TaskCheckpoint``, ``fit`` tests the last weights and
    ``--ckpt_path last`` finds nothing; without ``TestPredictionWriter``, results.json has no per-sample
    predictions or confidence intervals. Callbacks no config can remove: ``guards.fixed_callbacks``."""
    return [
        _class_config(TaskCheckpoint),
        _class_config(LearningRates, logging_interval="epoch"),
        _class_config(TrainingImageGrid),
        _class_config(TestPlots),
        _class_config(TestPredictionWriter),
        _class_config(PredictionWriter),
    ]


def _class_config(cls: type, **init_args) -> dict:
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def parse_run(verb: str, args: Sequence[str] | dict) -> ParsedRun:
    """``verb``'s arguments (a command line after the verb, or a config dict) parsed and completed: a
    checkpoint's model settings applied, ``--ckpt_path last`` found, an ad-hoc run named, every value
    checked. Errors are one-line ``MedTransferError``s."""
    if verb not in VERBS:
        raise ConfigError(f"unknown verb {verb!r}; one of {', '.join(VERBS)}")
    parser = build_parser(verb)
    try:
        if isinstance(args, dict):
            config = parser.parse_object(args)
        else:
            config = parser.parse_args(with_checkpoint_model(verb, list(args)))
    except SystemExit:
        raise
    except Exception as error:  # jsonargparse's ArgumentError and the assorted errors it wraps
        raise config_error(error, verb, _known_keys(parser)) from None
    name_ad_hoc_run(config, verb)
    parsed = ParsedRun(verb, parser, config)
    apply_checkpoint(parsed)
    check_trainer_values(parsed.config.trainer, verb)
    return parsed


def _known_keys(parser) -> list[str]:
    """Every option's dotted key (for "did you mean" suggestions)."""
    return list(parser.get_defaults().keys())


def name_ad_hoc_run(config: Namespace, verb: str) -> None:
    """Name a run whose logger has no name after what it runs (``ad_hoc_name``), so ad-hoc runs are findable
    in ``runs/`` instead of piling up in one ``version_<n>`` sequence."""
    logger = config.trainer.get("logger")
    init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
    if init_args is not None and "name" in init_args and init_args.get("name") is None:
        init_args.name = ad_hoc_name(config, verb)


def ad_hoc_name(config: Namespace, verb: str) -> str:
    """The stems of the run's config files (``pneumonia-linear_probe``), else its data and model classes
    (``syntheticmedical-finetune``); other verbs than fit add their name (``...-test``)."""
    files = [Path(str(path)).stem for path in config.get("config") or []]
    parts = files or [_class_name(config.get("data")), _class_name(config.get("model"))]
    name = "-".join(part for part in parts if part) or "run"
    return name if verb == "fit" else f"{name}-{verb}"


def _class_name(group) -> str:
    class_path = group.get("class_path") if isinstance(group, Namespace) else None
    return class_path.rsplit(".", 1)[-1].lower() if class_path else ""


def apply_checkpoint(parsed: ParsedRun) -> None:
    """Resolve ``--ckpt_path last`` to the newest ``last.ckpt`` of this logger's runs (``fit`` then
    continues in that run's folder), and apply the checkpoint's model settings, except the task, which always
    comes from the data and is checked against the checkpoint's once the classes exist."""
    config, verb = parsed.config, parsed.verb
    if config.get("ckpt_path") == "last":
        config.ckpt_path = resolve_last_checkpoint(config, continue_run=verb == "fit")
    ckpt_path = config.get("ckpt_path")
    if ckpt_path in (None, "best", "hpc", "registry"):
        return
    if not Path(ckpt_path).is_file():
        raise CheckpointFileError(f"--ckpt_path: no checkpoint file at {ckpt_path!r} (give a .ckpt written "
                                  "by `medtransfer fit`, e.g. runs/<name>/version_<n>/checkpoints/last.ckpt, "
                                  "or `last`)")
    checkpoint = read_checkpoint(ckpt_path)
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    hparams.pop("_instantiator", None)
    hparams.pop("task", None)
    parsed.checkpoint = recorded_by_checkpoint(checkpoint, str(ckpt_path))
    fill_data_from_checkpoint(config, checkpoint, str(ckpt_path))
    if hparams:
        parsed.config = _with_model_settings(parsed, checkpoint, hparams, str(ckpt_path))


def _with_model_settings(parsed: ParsedRun, checkpoint: dict, hparams: dict, ckpt_path: str) -> Namespace:
    class_path = hparams.pop("_class_path", None) or checkpoint.get(CHECKPOINT_MODEL_KEY)
    written_by = checkpoint.get(VERSION_KEY, "a medtransfer version that did not record itself")
    if unknown := settings_unknown_to_model(class_path, hparams):
        raise CheckpointFileError(
            f"{ckpt_path} holds model settings this medtransfer ({__version__}) does not know: {unknown}; "
            f"the checkpoint was written by {written_by}. Use it with that version"
        )
    check_model_class(class_path, parsed.config.get("model"), ckpt_path)
    warn_settings_replaced(class_path, parsed.config.get("model"), hparams, ckpt_path)
    class_path = _same_class_spelling(class_path, parsed.config.get("model"))
    model = {"class_path": class_path, "dict_kwargs": hparams} if class_path is not None else hparams
    try:
        return parsed.parser.parse_object({"model": model}, parsed.config)
    except Exception as error:
        raise CheckpointFileError(
            f"the model settings saved in {ckpt_path} do not fit this medtransfer ({__version__}; the "
            f"checkpoint was written by {written_by}): {first_line(error)}. Use a checkpoint written by this "
            "version, or the version that wrote it"
        ) from None


def check_model_class(class_path: str | None, model, ckpt_path: str) -> None:
    """The model class the config names (``--model``, a config file's ``model``) is the checkpoint's: the
    checkpoint's class used to replace it without a word, so a LinearProbe's scores were recorded for a run
    the user had asked to test as a Finetune."""
    given = model.get("class_path") if isinstance(model, Namespace) else None
    if class_path is None or given is None or _import(given) is _import(class_path):
        return
    raise CheckpointFileError(
        f"--ckpt_path {ckpt_path} holds a {class_path.rsplit('.', 1)[-1]} model, but the config names "
        f"{given.rsplit('.', 1)[-1]} ({given}): leave the model out of the config (the checkpoint's is "
        "rebuilt from it), or give a checkpoint of that model"
    )


def warn_settings_replaced(class_path: str | None, model, hparams: dict, ckpt_path: str) -> None:
    """Say which model settings the config gives (not left at the class's default) that the checkpoint's
    replace: a ``--model.init_args.backbone resnet50`` beside a ResNet-18's checkpoint scored the ResNet-18,
    and only results.json told."""
    given = model.get("init_args") if isinstance(model, Namespace) else None
    model_class = _import(class_path) if class_path else None
    if given is None or model_class is None:
        return
    defaults = {name: p.default for name, p in inspect.signature(model_class.__init__).parameters.items()}
    replaced = [f"{key} {_shown(saved)} (the config gives {_shown(given.get(key))})"
                for key, saved in hparams.items()
                if key in given and _shown(given.get(key)) not in (_shown(saved), _shown(defaults.get(key)))]
    if replaced:
        log.warning("--ckpt_path %s: the checkpoint's model settings replace the config's: %s", ckpt_path,
                    "; ".join(replaced))


def _shown(value) -> str:
    """A setting as compared and shown: config values and saved hyperparameters as the same plain JSON."""
    plain = value.as_dict() if isinstance(value, Namespace) else value
    return json.dumps(plain, sort_keys=True, default=str)


def _same_class_spelling(class_path: str | None, model) -> str | None:
    """The config's own spelling of the model class when the checkpoint names the same class by its full
    module path (``...lightning_modules.Finetune`` for ``...lightning_modules.finetune.Finetune``): the
    resolved config, and so the run's fingerprint, stay as the user wrote them."""
    given = model.get("class_path") if isinstance(model, Namespace) else None
    if class_path is None or given is None or given == class_path:
        return class_path
    return given if _import(given) is _import(class_path) is not None else class_path


def _import(class_path: str):
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


@dataclass
class RunParts:
    """What a parsed run is made of, built: the model, the data and the trainer."""

    model: MedTransferModule
    data: pl.LightningDataModule
    trainer: pl.Trainer


def instantiate(parsed: ParsedRun) -> RunParts:
    """Seed (``seed_everything``: the model's initial weights depend on it), then build the data, the model
    and the trainer. A constructor's ``ValueError`` about a setting is a named error naming the group."""
    config = parsed.config
    seed = config.get("seed_everything")
    if seed is not False:
        config.seed_everything = pl.seed_everything(drawn_seed() if seed is True else seed, workers=True,
                                                    verbose=False)
    try:
        built = parsed.parser.instantiate_classes(config)
    except ValueError as error:
        if isinstance(error, ConfigError) or _is_user_error(error):
            raise
        cause = _first_cause(error)  # jsonargparse wraps the constructor's error in its own
        raise ConfigError(f"{_failing_group(cause)}: {first_line(cause)}") from error
    return RunParts(built.model, built.data, build_trainer(dict(built.trainer)))


def build_trainer(settings: dict[str, Any]) -> pl.Trainer:
    """A Trainer from parsed settings, with its progress bar (``runtime.training_bar``: an execution detail,
    not part of the config) and the callbacks no config can remove (``fixed_callbacks``); a setting Lightning
    refuses is a named error."""
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    callbacks = list(settings.pop("callbacks", None) or [])
    bar = training_bar(callbacks, settings.get("enable_progress_bar"))  # where the run's output goes
    try:
        trainer = pl.Trainer(**settings, callbacks=[*callbacks, *([bar] if bar else []), *fixed_callbacks()])
    except (MisconfigurationException, ValueError, ImportError) as error:  # ImportError: tpu, no torch_xla
        if _is_user_error(error):
            raise
        raise ConfigError(f"trainer: {first_line(error)}") from error
    check_sync_batchnorm(settings.get("sync_batchnorm"), trainer.strategy.root_device.type)
    return trainer


def _is_user_error(error: BaseException) -> bool:
    from ..errors import find_user_error

    return find_user_error(error) is not None


def _first_cause(error: BaseException) -> BaseException:
    """The error at the start of ``error``'s chain of causes (``raise ... from``)."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
    return error


def _failing_group(error: BaseException) -> str:
    """``model`` or ``data``: which configured class raised ``error`` (read from its traceback)."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    package = os.path.dirname(os.path.dirname(__file__))
    for filename in reversed(frames):
        if filename.startswith(os.path.join(package, "datamodules")):
            return "data.init_args"
        if filename.startswith(os.path.join(package, "lightning_modules")) or filename.startswith(
                os.path.join(package, "backbones")):
            return "model.init_args"
    return "the config"
