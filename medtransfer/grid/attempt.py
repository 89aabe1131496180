"""A run's folder before an attempt: skip a finished run, continue the run a killed or requeued attempt left,
or start afresh.

A folder whose results.json has the run's fingerprint and is no failed run's (``state.status``) is finished:
the attempt is skipped (exit status 3). A folder whose results.json is a failed run's (stopped by the
divergence guard, or with NaN or infinite test metrics or predictions) is moved aside to
``<output_dir>/moved/`` and the run starts afresh: its last checkpoint may hold the diverged weights. A folder
whose ``checkpoints/last.ckpt`` reads as a checkpoint and whose ``run.json`` has the run's config fingerprint
is continued (the attempt runs ``fit --ckpt_path last``, which goes on in that folder), unless the launcher
says it is stale (trained on the export of a pretraining run that runs again). A folder whose checkpoint
belongs to another config, is stale or does not read is moved aside too (never deleted: it may be all that
is left of days of training) and the run starts afresh; leftovers of an attempt that saved no checkpoint are
removed. The local launcher calls ``prepare_attempt`` before it starts a run; the SLURM array tasks call
this module before each attempt:

    python -m medtransfer.grid.attempt <run folder> <commands/<run>.json>
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from ..errors import MedTransferError
from ..outputs.results import write_json_atomic
from ..utils.atomic import write_failure
from .failures import run_failure
from .state import (
    FINISHED_STATUS,
    RESULTS_FILE,
    RUN_FILE,
    GridStateError,
    attempt_failure,
    move_aside,
    read_results,
    results_fingerprint,
)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def prepare_attempt(folder: Path, run: dict, stale: str | None = None) -> str:
    """Make ``folder`` ready for an attempt at ``run`` (``run.json``'s content: id, fingerprint, argv...);
    returns what was done, for the job's log. ``stale``: why a matching checkpoint must not be continued.
    A folder the file system will not create, move or clear (a full disk) is an ``OutputWriteError`` naming
    it: the launcher stops there, and every run it stopped continues on the next launch."""
    try:
        return _prepare(folder, run, stale)
    except OSError as error:
        if isinstance(error, MedTransferError):
            raise
        raise write_failure(folder, error) from error


def _prepare(folder: Path, run: dict, stale: str | None) -> str:
    if folder.exists() and not (folder / RUN_FILE).is_file():
        raise GridStateError(f"{folder} exists but was not made by medtransfer benchmark (no {RUN_FILE}); "
                             "move it away or choose another output_dir")
    checkpoint = folder / LAST_CHECKPOINT
    if (folder / RESULTS_FILE).exists():  # an attempt that ended: its checkpoint is no place to go on from
        why = ended_problem(folder)
        said = f"{why}: moved the folder to {move_aside(folder)}; starting afresh"
    elif checkpoint.is_file():
        problem = stale or continue_problem(folder, run)
        if problem is None:
            write_json_atomic(folder / RUN_FILE, run)
            return f"continuing from {checkpoint} ({saved_at(checkpoint)})"
        moved = move_aside(folder)
        said = f"{checkpoint} {problem}: moved the folder to {moved}; starting afresh"
    elif folder.exists():
        shutil.rmtree(folder)  # an attempt killed before its first checkpoint: nothing to continue
        said = "no checkpoint from an earlier attempt; starting afresh"
    else:
        said = "starting"
    folder.mkdir(parents=True)
    write_json_atomic(folder / RUN_FILE, run)
    return said


def continue_problem(folder: Path, run: dict) -> str | None:
    """None when ``folder``'s last checkpoint can continue ``run``, else why not."""
    try:
        previous = json.loads((folder / RUN_FILE).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != run.get("fingerprint"):
        return f"was written for config fingerprint {previous}, not {run.get('fingerprint')}"
    if saved_at(folder / LAST_CHECKPOINT) is None:
        return "does not read as a checkpoint (truncated or not one)"
    return None


def continues(folder: Path, run: dict) -> bool:
    """Whether an attempt at ``run`` continues from ``folder``'s last checkpoint (``prepare_attempt``'s rule,
    read only: for the plan the launcher prints)."""
    return (not (folder / RESULTS_FILE).exists() and (folder / LAST_CHECKPOINT).is_file()
            and continue_problem(folder, run) is None)


def saved_at(checkpoint: Path) -> str | None:
    """Where training stood when a checkpoint was saved (``epoch 4, step 40``), or None when it does not read
    (weights only, memory-mapped)."""
    try:
        saved = torch.load(checkpoint, weights_only=True, mmap=True, map_location="cpu")
    except Exception:  # a truncated or foreign file fails in many ways: all mean "cannot continue from it"
        return None
    epoch = saved.get("epoch") if isinstance(saved, dict) else None
    if not isinstance(epoch, int) or "state_dict" not in saved:
        return None
    step = saved.get("global_step")
    return f"epoch {epoch}" + (f", step {step}" if isinstance(step, int) else "")


def ended_problem(folder: Path) -> str:
    """Why the results.json an earlier attempt left in ``folder`` does not finish the run (``main`` skips the
    runs it does finish)."""
    failure = attempt_failure(folder)
    if failure is not None:
        return f"the earlier attempt failed ({failure.describe()})"
    return f"the earlier attempt's {RESULTS_FILE} is unreadable or another config's"


def finished(folder: Path, run: dict) -> bool:
    """Whether ``folder`` holds the results of ``run``'s config that no failure spoils."""
    results = read_results(folder / RESULTS_FILE)
    return (results is not None and results_fingerprint(results) == run.get("fingerprint")
            and run_failure(results, folder) is None)


def main(argv: list[str] | None = None) -> int:
    folder, command = (Path(a) for a in (argv if argv is not None else sys.argv[1:]))
    run = json.loads(command.read_text())
    if finished(folder, run):
        print(f"{run.get('id', folder.name)}: finished already", flush=True)
        return FINISHED_STATUS
    try:
        print(f"{run.get('id', folder.name)}: {prepare_attempt(folder, run)}", flush=True)
    except MedTransferError as err:
        print(f"medtransfer: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
