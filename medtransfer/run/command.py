"""``medtransfer fit|validate|test|predict`` after the verb: parse, run, and the exit status of the ways a run
ends that are no error (a SLURM requeue: 0; a signal: 128 + the signal, with how to continue)."""

from __future__ import annotations

import sys

from ..runtime.ranks import is_rank_zero
from ..runtime.requeue import Requeued
from ..runtime.signals import RunStopped
from .api import execute_parsed
from .config import parse_run


def run_command(verb: str, args: list[str]) -> int:
    """Run ``verb`` on its command-line ``args``; the exit status."""
    try:
        execute_parsed(parse_run(verb, args))
    except Requeued as requeued:  # not a failure: the job runs again, continuing from last.ckpt
        if is_rank_zero():
            print(requeued, file=sys.stderr)
    except RunStopped as stop:
        if is_rank_zero():
            print(stop, file=sys.stderr)
        return stop.status
    return 0
