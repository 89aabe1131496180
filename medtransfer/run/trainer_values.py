"""Trainer settings checked before anything is built: a value Lightning would refuse with a traceback from
deep inside its loops, or accept and then train nothing (so the "best" checkpoint would be the initial
weights, scored as a result), is a named error that says which key and what would do. ``check_launch``
checks what only a built Trainer knows (its launcher, its cluster environment) before a run starts, for
Trainers from a config and built in Python alike."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import ConfigValueError
from ..runtime.lightning_compat import multiprocessing_strategy, starts_ranks_by_multiprocessing
from .whole_run import check_whole_splits

# what a run needs of its processes, which ddp_spawn, ddp_fork and ddp_notebook do not give
MULTIPROCESSING_STRATEGY = (
    "trainer.strategy={strategy}: it runs each fit and each test in processes it starts and ends, while a "
    "run carries its state from one to the next in the processes the command started (the best checkpoint's "
    "test, the decision thresholds, results.json; such a run hangs after fit). Use strategy ddp "
    "(trainer.devices N on one machine, configs/trainer/ddp.yaml) or start the ranks with torchrun or srun "
    "(docs/clusters.md)"
)

LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def check_trainer_values(trainer, verb: str) -> None:
    """Raise ``ConfigValueError`` for the first trainer setting out of range, or under which the run would
    score part of what it reports (``whole_run``; ``trainer`` as parsed)."""
    _at_least("max_epochs", trainer.get("max_epochs"), -1, "-1 (no limit) or a number of epochs")
    _at_least("max_steps", trainer.get("max_steps"), -1, "-1 (no limit) or a number of optimizer steps")
    _at_least("min_epochs", trainer.get("min_epochs"), 0, "0 or more epochs")
    _at_least("accumulate_grad_batches", trainer.get("accumulate_grad_batches"), 1, "1 or more batches")
    _at_least("log_every_n_steps", trainer.get("log_every_n_steps"), 1, "1 or more steps")
    _at_least("check_val_every_n_epoch", trainer.get("check_val_every_n_epoch"), 1, "1 or more epochs")
    _at_least("num_nodes", trainer.get("num_nodes"), 1, "1 or more nodes")
    _at_least("gradient_clip_val", trainer.get("gradient_clip_val"), 0, "0 (no clipping) or more")
    for key in LIMITS:
        _check_limit(key, trainer.get(key))
    devices = trainer.get("devices")
    if devices in (0, "0") or (isinstance(devices, int) and devices < -1):
        raise ConfigValueError(f"trainer.devices={devices}: expected 'auto', -1 (all), a number >= 1 or a "
                               "list of device ids")
    if trainer.get("accelerator") == "cpu":  # "auto" may mean a GPU on the node that runs it
        check_sync_batchnorm(trainer.get("sync_batchnorm"), "cpu")
    strategy = trainer.get("strategy")
    if multiprocessing_strategy(strategy):
        name = strategy if isinstance(strategy, str) else strategy.get("class_path")
        raise ConfigValueError(MULTIPROCESSING_STRATEGY.format(strategy=name))
    if verb == "fit":
        _trains_something(trainer)
    check_whole_splits(trainer, verb)


def check_sync_batchnorm(sync_batchnorm: object, device_type: str) -> None:
    """torch's SyncBatchNorm runs on CUDA only: on a CPU, DDP fails with a traceback wrapping the model."""
    if sync_batchnorm is True and device_type == "cpu":
        raise ConfigValueError("trainer.sync_batchnorm=true: torch's SyncBatchNorm runs on GPUs only and "
                               "this run is on the CPU; set trainer.sync_batchnorm: false "
                               "(configs/trainer/ddp.yaml sets it for GPUs)")


def check_launch(trainer, env: Mapping[str, str] = os.environ) -> None:
    """Refuse a built ``trainer`` whose ranks would not run the whole run: a multiprocessing launcher (a
    Trainer built in Python; a config's is refused when parsed), or nodes that nothing starts."""
    if starts_ranks_by_multiprocessing(trainer):
        raise ConfigValueError(MULTIPROCESSING_STRATEGY.format(strategy=type(trainer.strategy).__name__))
    check_other_nodes_can_join(trainer, env)


def check_other_nodes_can_join(trainer, env: Mapping[str, str] = os.environ) -> None:
    """``trainer.num_nodes`` above 1 needs the other nodes' ranks started by a launcher (srun, torchrun, which
    Lightning detects) or each node told its place (``NODE_RANK`` and ``MASTER_ADDR``); without either, rank
    0 waits for ranks that never come, for Lightning's 30-minute timeout, deaf to SIGTERM (``trainer``
    built)."""
    from pytorch_lightning.plugins.environments import LightningEnvironment

    environment = getattr(trainer.strategy, "cluster_environment", None)
    told = {"NODE_RANK", "GROUP_RANK", "MASTER_ADDR"} & set(env)
    if trainer.num_nodes > 1 and type(environment) is LightningEnvironment and not told:
        raise ConfigValueError(
            f"trainer.num_nodes={trainer.num_nodes}: nothing starts the other nodes' ranks (no srun, "
            "torchrun or NODE_RANK/MASTER_ADDR), so this one would wait for them for 30 minutes; start the "
            "command on every node with srun (scripts/slurm_fit.sbatch) or torchrun --nnodes "
            "(scripts/torchrun_fit.sh), or leave num_nodes at 1 on one machine (docs/clusters.md)")


def missing_monitor(error: Exception) -> ConfigValueError | None:
    """A callback of the config (``EarlyStopping``, a ``ModelCheckpoint``) that monitors a metric the run
    does not log, as one line: Lightning raised it as a traceback after the first epoch. Its message lists
    the metrics the run logs; its hint to call ``log`` in the LightningModule is left out (the module is
    medtransfer's). None for any other error."""
    text = str(error).strip()
    if not text.startswith(("Early stopping conditioned on metric", "`ModelCheckpoint(monitor=")):
        return None
    text = text.split(" HINT:")[0]
    return ConfigValueError(f"trainer.callbacks: {text} (a callback's monitor names one of these)")


def _at_least(key: str, value, minimum: float, expected: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if value < minimum:
        raise ConfigValueError(f"trainer.{key}={value}: expected {expected}")


def _check_limit(key: str, value) -> None:
    """A ``limit_*_batches``: a fraction in [0, 1] or a number of batches >= 0 (the parser reads ``2`` as
    ``2.0``, which Lightning takes as 2 batches)."""
    if value is None or isinstance(value, bool):
        return
    whole = float(value).is_integer() and value >= 0
    if not (0 <= value <= 1 or whole):
        raise ConfigValueError(f"trainer.{key}={value}: expected a fraction of the batches in [0, 1] (a "
                               "float) or a number of batches (an int >= 0)")


def _trains_something(trainer) -> None:
    """``fit`` with no epoch, no step or no training batch would end at once and test the initial weights."""
    if trainer.get("max_epochs") == 0 or trainer.get("max_steps") == 0:
        key = "max_epochs" if trainer.get("max_epochs") == 0 else "max_steps"
        raise ConfigValueError(f"trainer.{key}=0: fit would train nothing and test the initial weights as if "
                               "trained; give 1 or more (or use `medtransfer test --allow_untrained true` to "
                               "score untrained weights on purpose)")
    if trainer.get("limit_train_batches") in (0, 0.0):
        raise ConfigValueError("trainer.limit_train_batches=0: fit would train on no batch; give a fraction "
                               "in (0, 1] or a number of batches >= 1")
    if trainer.get("max_epochs") == -1 and not _ends_otherwise(trainer):
        raise ConfigValueError("trainer.max_epochs=-1 (no limit) with no trainer.max_steps, max_time or "
                               "EarlyStopping callback: fit would train until it is killed and never test; "
                               "give max_epochs a number of epochs, or set one of the others to end training")


def _ends_otherwise(trainer) -> bool:
    """Whether a step limit, a time limit or an EarlyStopping callback ends training."""
    callbacks = trainer.get("callbacks") or []
    return (trainer.get("max_steps") not in (None, -1) or bool(trainer.get("max_time"))
            or any("EarlyStopping" in _class_path(callback) for callback in callbacks))


def _class_path(callback) -> str:
    """A callback's class path as the config gives it (a class_path entry, or an object built in Python)."""
    if isinstance(callback, Mapping) or hasattr(callback, "class_path"):
        return str(callback.get("class_path") or "")
    return type(callback).__name__
