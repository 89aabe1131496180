"""How the ``medtransfer`` command ends besides success: a user error as one line and exit status 2 (every
DDP rank at once), a signal as one line and 128 + the signal, a bug with its traceback
(``MEDTRANSFER_TRACEBACK=1`` shows tracebacks of user errors too), and a DDP run's process group closed before
the interpreter exits."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def stopped(verb: str, signum: int, status: int) -> NoReturn:
    """Ctrl-C or SIGTERM where no run says more (a tool verb such as ``extract``, or a run still being set
    up): 128 + the signal and one line instead of a traceback. Every file medtransfer writes appears whole or
    not at all, so the same command finishes the work."""
    import signal

    name = signal.Signals(signum).name
    print(f"medtransfer: {verb} stopped by {name}; every file written is whole. Run the same command again "
          "to finish (what was written is reused)", file=sys.stderr)
    sys.exit(status)


def end_on_error(error: Exception) -> NoReturn:
    """A user error's message and exit status 2; a rank stopped by another rank's user error likewise; any
    other error is a bug, and its traceback is shown."""
    from ..errors import user_error_message

    if traceback_on_error():
        raise error
    if (message := user_error_message(error)) is not None:
        exit_on_user_error(f"medtransfer: error: {message}")
    rank_exit = sys.modules.get("medtransfer.runtime.rank_exit")  # imported only by a run that started ranks
    if rank_exit is not None and (other_rank := rank_exit.stopped_rank_message()) is not None:
        exit_on_user_error(other_rank)
    raise error


def traceback_on_error() -> bool:
    """Whether ``MEDTRANSFER_TRACEBACK`` asks for tracebacks. A value it cannot read is said on a line of its
    own and read as unset: it must not hide the error it was set to show (it was a traceback of its own)."""
    from .settings import SettingError, traceback_wanted

    try:
        return traceback_wanted()
    except SettingError as unreadable:
        print(f"medtransfer: warning: {unreadable}; the error below is shown without its traceback",
              file=sys.stderr)
        return False


def exit_on_user_error(line: str) -> NoReturn:
    """Print ``line`` and end with status 2. A DDP rank ends at once once its process group is closed: the
    interpreter's own exit after a failed collective took from 10 s to over a minute (in the teardown of the
    communication objects), while the rank's launcher waited."""
    print(line, file=sys.stderr)
    if close_process_group():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    sys.exit(2)


def close_process_group() -> bool:
    """End a DDP run's process group before the interpreter exits; whether it had more than one rank. Left
    to the exit handlers, its communication threads were sometimes still alive when their objects were
    destroyed, and the process aborted ("terminate called without an active exception", exit status 134)
    after writing its results."""
    dist = sys.modules.get("torch.distributed")  # no torch imported: no process group
    if dist is None or not (dist.is_available() and dist.is_initialized()):
        return False
    several = dist.get_world_size() > 1
    dist.destroy_process_group()
    return several
