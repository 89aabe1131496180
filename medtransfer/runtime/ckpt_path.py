"""What ``--ckpt_path`` names, read before any class is built: ``last`` resolved to a run's newest
``last.ckpt``, the model class a checkpoint needs when no ``--model`` is given, the datamodule arguments it
fills (``NewImages``), and the saved settings a model of this version no longer takes."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from .checkpoints import CHECKPOINT_MODEL_KEY, CheckpointFileError

MLFLOW_FILE_PREFIX = "file:"  # pytorch_lightning.loggers.mlflow.LOCAL_FILE_URI_PREFIX


def resolve_last_checkpoint(config, continue_run: bool) -> str | None:
    """The newest ``last*.ckpt`` among this config's runs (``LastCheckpoints`` says where each logger keeps
    them). With ``continue_run`` the logger is pinned to that run (its version, W&B's run id, MLflow's
    ``run_id``), so logs, checkpoints and results.json continue in one folder, and no checkpoint yet means a
    fresh start (said on stderr), which lets a SLURM job script always pass ``--ckpt_path last``."""
    runs = last_checkpoints(config.trainer)
    found = filter(runs.keep, runs.root.glob(runs.pattern))
    candidates = sorted(found, key=lambda path: path.stat().st_mtime)
    if not candidates:
        if continue_run:
            sys.stderr.write(f"--ckpt_path last: no {runs.root / runs.pattern}; starting a new run\n")
            return None
        raise CheckpointFileError(f"--ckpt_path last: no {runs.root / runs.pattern}; give the checkpoint "
                                  "file, or the --trainer.logger settings of the run that wrote it")
    check_one_run(runs, candidates)
    newest = candidates[-1]
    if continue_run and runs.pin is not None and runs.logger_args.get(runs.pin) is None:
        setattr(runs.logger_args, runs.pin, newest.parent.parent.name)
    sys.stderr.write(f"--ckpt_path last: {newest}\n")
    return str(newest)


def check_one_run(runs: LastCheckpoints, candidates: list[Path]) -> None:
    """Refuse a ``last`` that names several runs where the newest is no answer (``one_run_only``)."""
    folders = sorted({str(path.parent.parent.relative_to(runs.root)) for path in candidates})
    if runs.one_run_only and len(folders) > 1:
        raise CheckpointFileError(
            f"--ckpt_path last: {len(folders)} runs under {runs.root} have a last.ckpt "
            f"({', '.join(folders)}); pick one with --trainer.logger.init_args.{runs.pin} <run id>, or give "
            "the checkpoint file")


@dataclass
class LastCheckpoints:
    """Where a logger's runs keep their last checkpoints: ``root``/``pattern``, those ``keep`` keeps. ``pin``:
    the logger argument that names one run (None when the folder is fixed); ``one_run_only``: several runs
    found are an error, not a choice of the newest (W&B and MLflow runs share a project or store, and their
    ids say nothing of their order)."""

    root: Path
    pattern: str
    logger_args: object | None = None
    pin: str | None = None
    one_run_only: bool = False
    keep: Callable[[Path], bool] = bool


def last_checkpoints(trainer_config) -> LastCheckpoints:
    """The run folders Lightning's ``ModelCheckpoint`` writes to for this trainer config: ``<save_dir or
    default_root_dir>/<logger name>/<version>/checkpoints`` (``runtime.folder``), or
    ``<default_root_dir>/checkpoints`` without a logger."""
    root = Path(trainer_config.get("default_root_dir") or os.getcwd())
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else False
    if logger is False:
        return LastCheckpoints(root, "checkpoints/last*.ckpt")
    init_args = logger.get("init_args") if hasattr(logger, "get") else None
    class_name = str(logger.get("class_path") or "").rpartition(".")[2] if hasattr(logger, "get") else ""
    if init_args is not None and class_name == "WandbLogger":
        return _wandb_runs(init_args, root)
    if init_args is not None and class_name == "MLFlowLogger":
        return _mlflow_runs(init_args, root)
    if init_args is None or init_args.get("save_dir") is None:
        return LastCheckpoints(root / "lightning_logs", "*/checkpoints/last*.ckpt")
    name, version = init_args.get("name", "lightning_logs"), init_args.get("version")
    runs_dir = Path(init_args.get("save_dir")) / name if name else Path(init_args.get("save_dir"))
    run = "*" if version is None else (version if isinstance(version, str) else f"version_{version}")
    # version "": save_dir itself
    return LastCheckpoints(runs_dir, f"{run}/checkpoints/last*.ckpt".lstrip("/"), init_args, "version")


def _wandb_runs(init_args, root: Path) -> LastCheckpoints:
    """WandbLogger: ``<save_dir | dir | default_root_dir>/<project>/<run id>/checkpoints``; the run id is
    ``version`` (or ``id``), which W&B resumes."""
    save_dir = init_args.get("save_dir") or init_args.get("dir") or root
    project = init_args.get("project") or os.environ.get("WANDB_PROJECT") or "lightning_logs"
    run = init_args.get("version") or init_args.get("id")
    return LastCheckpoints(Path(save_dir) / project, f"{run or '*'}/checkpoints/last*.ckpt", init_args,
                           "version", one_run_only=run is None)


def _mlflow_runs(init_args, root: Path) -> LastCheckpoints:
    """MLFlowLogger: ``<store>/<experiment id>/<run_id>/checkpoints`` for a ``file:`` store (``save_dir``
    when no ``tracking_uri``), ``<default_root_dir>/...`` for any other. The experiment's id is the store's:
    of a file store's experiments, those whose meta.yaml names another ``experiment_name`` are left out."""
    uri = init_args.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    uri = uri or f"{MLFLOW_FILE_PREFIX}{init_args.get('save_dir') or './mlruns'}"
    store = Path(uri[len(MLFLOW_FILE_PREFIX):]) if uri.startswith(MLFLOW_FILE_PREFIX) else root
    name = init_args.get("experiment_name") or "lightning_logs"
    run = init_args.get("run_id")
    return LastCheckpoints(store, f"*/{run or '*'}/checkpoints/last*.ckpt", init_args, "run_id",
                           one_run_only=run is None,
                           keep=lambda path: _experiment_name(path.parents[2]) in (name, None))


def _experiment_name(folder: Path) -> str | None:
    """The experiment name in a file store's ``<experiment id>/meta.yaml``, or None where there is none."""
    try:
        meta = yaml.safe_load((folder / "meta.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return meta.get("name") if isinstance(meta, dict) else None


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
