"""What ``--ckpt_path`` names, read before any class is built: ``last`` resolved to a run's newest
``last.ckpt``, the model class a checkpoint needs when no ``--model`` is given, the datamodule arguments it
fills (``NewImages``), and the saved settings a model of this version no longer takes."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path

import torch

from .checkpoints import CHECKPOINT_MODEL_KEY, CheckpointFileError


def resolve_last_checkpoint(config, continue_run: bool) -> str | None:
    """The newest ``last*.ckpt`` among this config's runs (``<save_dir>/<name>/version_*/checkpoints``, or the
    pinned ``version``). With ``continue_run`` the logger is pinned to that run's version, so logs,
    checkpoints and results.json continue in one directory, and no checkpoint yet means a fresh start (said on
    stderr), which lets a SLURM job script always pass ``--ckpt_path last``."""
    runs_dir, pattern, logger_args = _last_checkpoint_glob(config.trainer)
    candidates = sorted(runs_dir.glob(pattern), key=lambda path: path.stat().st_mtime)
    if not candidates:
        if continue_run:
            sys.stderr.write(f"--ckpt_path last: no {runs_dir / pattern}; starting a new run\n")
            return None
        raise CheckpointFileError(f"--ckpt_path last: no {runs_dir / pattern}; give the checkpoint file, or "
                                  "the --trainer.logger settings of the run that wrote it")
    newest = candidates[-1]
    if continue_run and logger_args is not None and logger_args.get("version") is None:
        logger_args.version = newest.parent.parent.name
    sys.stderr.write(f"--ckpt_path last: {newest}\n")
    return str(newest)


def _last_checkpoint_glob(trainer_config) -> tuple[Path, str, object | None]:
    """(runs directory, glob of last checkpoints in it, the logger's init_args when its version can be
    pinned)."""
    root = Path(trainer_config.get("default_root_dir") or os.getcwd())
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else False
    if logger is False:
        return root, "checkpoints/last*.ckpt", None
    init_args = logger.get("init_args") if hasattr(logger, "get") else None
    if init_args is None or init_args.get("save_dir") is None:
        return root / "lightning_logs", "*/checkpoints/last*.ckpt", None
    name, version = init_args.get("name", "lightning_logs"), init_args.get("version")
    runs_dir = Path(init_args.get("save_dir")) / name if name else Path(init_args.get("save_dir"))
    run = "*" if version is None else (version if isinstance(version, str) else f"version_{version}")
    return runs_dir, f"{run}/checkpoints/last*.ckpt".lstrip("/"), init_args  # version "": save_dir itself


def with_checkpoint_model(verb: str, args: list[str]) -> list[str]:
    """``validate``/``test``/``predict`` arguments with ``--model <the checkpoint's model class>`` first when
    they name a checkpoint file and no ``--model``: the checkpoint's hyperparameters rebuild the model, so
    ``medtransfer predict --ckpt_path model.ckpt --data ...`` needs no model config."""
    if verb not in ("validate", "test", "predict") or not args:
        return args
    paths = [value for flag, value in zip(args[:-1], args[1:], strict=True) if flag == "--ckpt_path"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path=")]
    model_given = any(a == "--model" or a.startswith("--model=") for a in args)
    if model_given or not paths or not Path(paths[-1]).is_file():
        return args
    try:
        checkpoint = torch.load(paths[-1], weights_only=True, map_location="cpu")
    except Exception:  # not a checkpoint: reading it again in run.config.apply_checkpoint says so
        return args
    hparams = checkpoint.get("hyper_parameters", {})
    class_path = hparams.get("_class_path") or checkpoint.get(CHECKPOINT_MODEL_KEY)
    return args if class_path is None else ["--model", class_path, *args]


def fill_data_from_checkpoint(config, checkpoint: dict, path: str) -> None:
    """Let a datamodule that takes its task from the model (``NewImages``: ``from_checkpoint``) fill the
    arguments the user left out from the checkpoint, before it is instantiated."""
    data = config.get("data")
    class_path = data.get("class_path") if data is not None else None
    if not class_path:
        return
    module, _, name = class_path.rpartition(".")
    fill = getattr(getattr(importlib.import_module(module), name, None), "from_checkpoint", None)
    if fill is not None:
        fill(data.init_args, checkpoint, path)


def settings_unknown_to_model(class_path: str | None, hparams: dict) -> list[str]:
    """The saved hyperparameters that ``class_path``'s constructor does not take (a checkpoint of another
    medtransfer version), or the class itself when it no longer exists."""
    if not class_path:
        return []
    module, _, name = class_path.rpartition(".")
    try:
        model_class = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return [f"model class {class_path}"]
    parameters = inspect.signature(model_class.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    return sorted(k for k in hparams if not k.startswith("_") and k not in parameters)
