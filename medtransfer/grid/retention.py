"""A finished grid run's ``last.ckpt`` is deleted: it exists so that a killed attempt can continue, and the
grid never continues a finished run (it skips it). ``best-*.ckpt``, the checkpoint the run's test metrics
came from, stays for ``test``, ``predict`` and ``export``. Until then a finetuned run holds two full
checkpoints (weights and optimizer state: about 0.6 GB for a ResNet-50 under Adam), which over a grid of
hundreds of runs fills a disk (it filled this project's 250 GB benchmark disk). A grid file's
``checkpoints: {keep_last: true}`` keeps them. The local launcher calls ``drop_last_checkpoint`` after each
run that ended well; a SLURM array task runs this module after its ``srun``:

    python -m medtransfer.grid.retention <run folder>
"""

from __future__ import annotations

import sys
from pathlib import Path

from .attempt import LAST_CHECKPOINT
from .failures import run_failure
from .state import RESULTS_FILE, read_results


def drop_last_checkpoint(folder: Path) -> Path | None:
    """Delete ``folder``'s ``checkpoints/last.ckpt`` when the run finished (a results.json that no failure
    spoils) and its evaluation did not load that very file; returns the deleted file, or None when it stays
    (no such file, an unfinished or failed run: its checkpoint is evidence). An ``OSError`` of the deletion
    is raised: the file stays, which costs disk space but never a result."""
    last = folder / LAST_CHECKPOINT
    results = read_results(folder / RESULTS_FILE)
    if not last.is_file() or results is None or run_failure(results, folder) is not None:
        return None
    tested = results.get("checkpoint")
    if tested and Path(tested).resolve() == last.resolve():
        return None
    last.unlink()
    return last


def kept_message(folder: Path, error: OSError) -> str:
    why = error.strerror or error
    return (f"kept {folder / LAST_CHECKPOINT} of a finished run: cannot delete it ({why}); "
            "it may be deleted by hand")


def main(argv: list[str] | None = None) -> int:
    """Always 0: a run that finished stays finished whether or not its last checkpoint could be deleted."""
    (folder,) = (Path(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        deleted = drop_last_checkpoint(folder)
    except OSError as error:
        print(kept_message(folder, error), file=sys.stderr, flush=True)
        return 0
    if deleted is not None:
        print(f"deleted {deleted}: the run finished, and a finished run is never continued", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
