"""The one place where medtransfer relies on how Lightning works inside rather than on its public API.

Everything else subclasses Lightning and jsonargparse only through public hooks and arguments. What is here
depends on behaviour that Lightning does not document as API; ``tests/test_lightning_compat.py`` pins that
behaviour and fails, naming this module, when an upgrade changes it, and pyproject.toml bounds the versions
it was checked against.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytorch_lightning as pl

# The thread that Lightning's subprocess launcher starts on rank 0 to watch the ranks it started (its
# ``_ChildProcessObserver``): when one ends badly, it SIGKILLs every process, rank 0 included.
CHILD_OBSERVER_THREAD = "child-process-observer"


def stop_child_process_observer() -> bool:
    """Stop Lightning's child-process observer on this process (``medtransfer.runtime.rank_exit.RankWatch``
    does its job and lets rank 0 end with a message and the failed rank's status instead of SIGKILL); whether
    one was running."""
    found = False
    for thread in threading.enumerate():
        if thread.name == CHILD_OBSERVER_THREAD and hasattr(thread, "_child_processes"):
            thread._child_processes = []  # its next poll finds every (no) child finished, kills nothing, ends
            found = True
    return found


# The flag Lightning sets on a module while TorchScript traces or scripts it (its ``_jit_is_scripting``): the
# ``trainer`` property then returns None instead of raising outside a Trainer (the tracer reads every
# attribute of the module).
TRACING_FLAG = "_jit_is_scripting"


@contextmanager
def lightning_tracing(model: pl.LightningModule):
    """Mark ``model`` as being traced for as long as the block runs (``medtransfer export`` traces trained
    modules that no Trainer holds)."""
    setattr(model, TRACING_FLAG, True)
    try:
        yield
    finally:
        setattr(model, TRACING_FLAG, False)


def starts_ranks_by_multiprocessing(trainer: pl.Trainer) -> bool:
    """Whether ``trainer``'s strategy runs each fit and test in worker processes that multiprocessing starts
    and ends (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``, XLA: Lightning's ``_MultiProcessingLauncher``)
    rather than in the processes that run the command."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def multiprocessing_strategy(strategy: object) -> bool:
    """Whether ``strategy`` (``trainer.strategy`` as a config gives it: a registered name, or a class path
    with init_args, a dict or a parsed namespace) starts its ranks by multiprocessing (``start_method`` spawn,
    fork or forkserver), for checks that build nothing."""
    from pytorch_lightning.strategies import StrategyRegistry

    if hasattr(strategy, "get"):  # a dict or a namespace (a str has no get)
        init_args = strategy.get("init_args")
        start_method = init_args.get("start_method") if init_args is not None else None
        return start_method not in (None, "popen")
    if not isinstance(strategy, str) or strategy not in StrategyRegistry:
        return False
    return StrategyRegistry[strategy].get("init_params", {}).get("start_method", "popen") != "popen"
