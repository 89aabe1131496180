"""Runs ``medtransfer`` with a deterministic SIGKILL inside one write, for the fault matrix's process-ending
cases: ``python tests/faults/driver.py POINT [NTH] -- <medtransfer arguments>``.

POINT is where the process kills itself, at the NTH time it gets there (default 1):

- ``replace:NAME``: renaming a finished temporary file onto a file whose name contains NAME (results.json,
  last.ckpt, summary.md...), after cutting the temporary file to half its size: the state a kill in the middle
  of the write leaves;
- ``store``: writing a feature store's manifest, its arrays already written;
- ``extract``: once the first batch of an extraction is embedded.
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def counter(nth: int):
    calls = {"n": 0}

    def reached() -> bool:
        calls["n"] += 1
        return calls["n"] >= nth

    return reached


def install(point: str, nth: int) -> None:
    reached = counter(nth)
    if point.startswith("replace:"):
        name = point.split(":", 1)[1]
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if name in os.path.basename(os.fspath(dst)) and reached():
                os.truncate(src, os.path.getsize(src) // 2)
                die()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    elif point == "store":
        from medtransfer.features import store

        real_write = store._write_synced

        def write_synced(file, data):
            if reached():
                die()
            return real_write(file, data)

        store._write_synced = write_synced
    elif point == "extract":
        from medtransfer.datamodules.base import MedicalDataModule

        real_loader = MedicalDataModule.extraction_dataloader

        def extraction_dataloader(self, *args, **kwargs):
            for batch in real_loader(self, *args, **kwargs):
                yield batch
                if reached():  # the batch was embedded; the next one is asked for
                    die()

        MedicalDataModule.extraction_dataloader = extraction_dataloader
    else:
        raise SystemExit(f"driver: unknown point {point!r}")


if __name__ == "__main__":
    split = sys.argv.index("--")
    point, *rest = sys.argv[1:split]
    install(point, int(rest[0]) if rest else 1)
    from medtransfer.cli import main

    main(sys.argv[split + 1 :])
