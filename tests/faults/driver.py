"""Runs ``medtransfer`` with a deterministic signal at a named point, for the fault matrix's cases that end a
process: ``python tests/faults/driver.py POINT [NTH [SIGNAL]] -- <medtransfer arguments>``.

POINT is where the signal comes, the NTH time the process gets there (default 1):

- ``replace:NAME``: renaming a finished temporary file onto a file whose name contains NAME (results.json,
  last.ckpt, summary.md...);
- ``store``: writing a feature store's manifest, its arrays already written;
- ``extract``: once the first batch of an extraction is embedded;
- ``test_step``, ``predict_step``: at the start of a test or predict batch.

SIGNAL is ``KILL`` (default), ``TERM`` or ``INT``. ``KILL``: the process kills itself there, and in a rename
first cuts the temporary file to half its size: the state a kill in the middle of the write leaves. ``TERM``
and ``INT`` (a scheduler's stop, a user's Ctrl-C): the process sends itself the signal once the operation at
POINT is done, and medtransfer handles it as it would one from outside.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def counter(nth: int) -> Callable[[], bool]:
    """True the ``nth`` time it is called, and only then."""
    calls = {"n": 0}

    def reached() -> bool:
        calls["n"] += 1
        return calls["n"] == nth

    return reached


def install(point: str, nth: int, signum: int) -> None:
    reached = counter(nth)
    kill = signum == signal.SIGKILL

    def signal_self() -> None:
        os.kill(os.getpid(), signum)

    act = die if kill else signal_self  # where the operation cannot be cut in half

    if point.startswith("replace:"):
        name = point.split(":", 1)[1]
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if not (name in os.path.basename(os.fspath(dst)) and reached()):
                return real_replace(src, dst, *args, **kwargs)
            if kill:
                os.truncate(src, os.path.getsize(src) // 2)
                die()
            real_replace(src, dst, *args, **kwargs)
            signal_self()
            return None

        os.replace = replace
    elif point == "store":
        from medtransfer.features import store

        real_write = store._write_synced

        def write_synced(file, data):
            if not reached():
                return real_write(file, data)
            if kill:
                die()
            real_write(file, data)
            signal_self()
            return None

        store._write_synced = write_synced
    elif point == "extract":
        from medtransfer.datamodules.base import MedicalDataModule

        real_loader = MedicalDataModule.extraction_dataloader

        def extraction_dataloader(self, *args, **kwargs):
            for batch in real_loader(self, *args, **kwargs):
                yield batch
                if reached():  # the batch was embedded; the next one is asked for
                    act()

        MedicalDataModule.extraction_dataloader = extraction_dataloader
    elif point in ("test_step", "predict_step"):
        from medtransfer.lightning_modules.base import TaskModule

        real_step = getattr(TaskModule, point)

        def step(self, batch, batch_idx):
            if reached():
                act()
            return real_step(self, batch, batch_idx)

        setattr(TaskModule, point, step)
    else:
        raise SystemExit(f"driver: unknown point {point!r}")


if __name__ == "__main__":
    split = sys.argv.index("--")
    point, *rest = sys.argv[1:split]
    nth = int(rest[0]) if rest else 1
    signum = signal.Signals[f"SIG{rest[1]}"] if len(rest) > 1 else signal.SIGKILL
    install(point, nth, signum)
    from medtransfer.cli import main

    main(sys.argv[split + 1 :])
