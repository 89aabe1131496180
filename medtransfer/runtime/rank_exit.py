"""Every DDP rank stops when one stops on a user error, and the command still ends with exit status 2.

Under DDP on one machine (``--trainer.devices N``), Lightning's launcher starts ranks 1..N-1 as child
processes of rank 0. A rank that meets a ``MedTransferError`` prints its message and exits 2 (``cli.main``);
rank 0 then fails in its next collective with a "connection closed" traceback (gloo) or waits for it forever
(NCCL), and Lightning's own child observer ends it with SIGKILL (status 137, no word). ``RankWatch`` takes
that observer's place: it notices the stopped rank, stops the others, and lets rank 0 end with one line and
the same status (``stopped_rank_message``), or ends it itself when it is stuck in a collective. Under srun or
torchrun the ranks are no children of rank 0: ``srun --kill-on-bad-exit=1`` (the benchmark's SLURM scripts)
and torchrun stop the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from pytorch_lightning import Callback

from .lightning_compat import stop_child_process_observer

USER_ERROR_STATUS = 2
CHILD_END_S = 3.0  # how long a failing rank takes at most to end after its message


class RankWatch(threading.Thread):
    """Rank 0's watch over the ranks it started (``children``, rank i+1 at index i)."""

    def __init__(self, children: list[subprocess.Popen], poll_s: float = 0.2,
                 stuck_after_s: float = 30.0) -> None:
        super().__init__(daemon=True, name="medtransfer-rank-watch")  # ends with the process
        self.children = children
        self.poll_s = poll_s
        self.stuck_after_s = stuck_after_s
        self.failed: tuple[int, int] | None = None  # (rank, exit status) of the first rank that failed
        self.noticed = threading.Event()

    def run(self) -> None:
        while self.failed is None:
            codes = [child.poll() for child in self.children]
            if all(code == 0 for code in codes):
                return
            self.failed = next(((i + 1, c) for i, c in enumerate(codes) if c not in (None, 0)), None)
            if self.failed is None:
                time.sleep(self.poll_s)
        for child in self.children:
            if child.poll() is None:
                child.kill()  # a rank waiting in a collective for the one that stopped would never return
        self.noticed.set()
        if self.failed[1] < 0:  # killed by a signal: by rank 0 itself (Lightning on rank 0's own error)
            return
        # rank 0 normally ends by itself (its collective fails, cli.main says why); one that is stuck in a
        # collective (NCCL) is ended here
        time.sleep(self.stuck_after_s)
        sys.stderr.write(self.message() + "\n")
        sys.stderr.flush()
        os._exit(USER_ERROR_STATUS if self.failed[1] == USER_ERROR_STATUS else 1)

    def message(self) -> str:
        rank, status = self.failed
        if status == USER_ERROR_STATUS:
            return f"medtransfer: error: rank {rank} stopped on the error above; every rank stopped"
        return f"medtransfer: rank {rank} ended with exit status {status}; every rank stopped"


_watch: RankWatch | None = None


class StopAllRanks(Callback):
    """Starts rank 0's ``RankWatch`` once its launcher has started the other ranks (a default callback of
    every command, that configs cannot remove: ``cli.trainer_defaults``)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        global _watch
        children = getattr(trainer.strategy.launcher, "procs", None)
        if _watch is None and trainer.global_rank == 0 and children:
            stop_child_process_observer()
            _watch = RankWatch(list(children))
            _watch.start()


    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Rank 0 failing stops the ranks it started (left alone, they would wait for it in a collective); a
        rank whose own error made rank 0's collective fail is given the moment it needs to end with its
        status (``stopped_rank_message`` reads it)."""
        if _watch is not None and trainer.global_rank == 0:
            for child in _watch.children:
                try:
                    child.wait(timeout=CHILD_END_S)
                except subprocess.TimeoutExpired:
                    child.kill()


def stopped_rank_message(wait_s: float = 5.0) -> str | None:
    """On rank 0, after an error that is no user error: the line saying that another rank stopped on a user
    error (the cause of rank 0's own, a failed collective), waiting up to ``wait_s`` for that rank's exit
    status; None otherwise."""
    if _watch is None or not _watch.noticed.wait(wait_s):
        return None
    return _watch.message() if _watch.failed[1] == USER_ERROR_STATUS else None
