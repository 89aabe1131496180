"""Ctrl-C (SIGINT) and SIGTERM end a run at once, with the status a shell expects (130, 143) and the way to
continue, never with half a file: every file medtransfer writes appears whole or not at all
(``utils.atomic``), so stopping in the middle of a write leaves the previous version.

Lightning turns Ctrl-C into ``sys.exit(1)`` after a "graceful shutdown", and SIGTERM into a stop at the next
batch's end with status 0; both looked like a finished or failed run. ``stop_on_signals`` raises
``RunStopped`` from the signal instead, which passes through Lightning's handlers like any other exception."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(BaseException):  # noqa: N818 - an outcome the user asked for, not a failure
    """The run was stopped by a signal; ``status`` is the command's exit status (128 + the signal)."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def status(self) -> int:
        return 128 + self.signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT and SIGTERM raise ``RunStopped``; a second signal
    while the run cleans up is ignored. The previous handlers come back after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOPPING_SIGNALS}

    def stop(signum, frame) -> None:
        for other in STOPPING_SIGNALS:
            signal.signal(other, signal.SIG_IGN)  # the cleanup runs to its end
        raise RunStopped(signum)

    for signum in STOPPING_SIGNALS:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
