"""A grid's folder on disk: the manifest (``grid.json``), one folder per run, and which runs are finished.

```
<output_dir>/grid.json          the grid's runs: id, folder, config fingerprint, axis labels
<output_dir>/runs/<id>-<fp>/    one run's log directory: run.json, results.json, checkpoints, TensorBoard
events
<output_dir>/features/          feature stores shared by the grid's frozen-backbone runs
<output_dir>/report/            results.csv, summary.md, plots/
<output_dir>/moved/             earlier attempts moved aside (failed runs, other configs' checkpoints)
```

A run is finished when its folder holds a readable results.json whose verb and config have the run's
fingerprint (results.json is written once, atomically, when the run ends) and that is no failed run's
(``failures.py``: stopped by the divergence guard, or NaN or infinite test metrics or predictions). A folder
without one is a killed attempt: the run continues from its ``last.ckpt`` when that is a checkpoint of the
same config, else it is redone from scratch (``attempt.py``); a failed run is redone from scratch, after its
folder is moved to ``<output_dir>/moved/`` (never deleted: it shows what went wrong). A run that loads a
pretraining run's backbone export is finished only while that pretraining run is, and only if the weights it
loaded are the ones that run exported (its results.json's backbone fingerprints hold the export's), so a
pretraining run done again redoes them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import MedTransferError
from ..outputs.results import SCHEMA, write_json_atomic
from .failures import Failure, run_failure
from .fingerprint import run_fingerprint
from .plan import Run
from .spec import GridSpec

MANIFEST = "grid.json"
MANIFEST_SCHEMA = "medtransfer.grid/1"
RUN_FILE = "run.json"
RESULTS_FILE = "results.json"
LOG_FILE = "output.log"
MOVED_DIR = "moved"  # <output_dir>/moved/: folders of earlier attempts, kept out of the way and of the report

DONE, INCOMPLETE, PENDING = "done", "incomplete", "pending"
FINISHED_STATUS = 3  # medtransfer.grid.attempt's exit status for a run finished already: grid.sbatch skips it


class GridStateError(MedTransferError, RuntimeError):
    """The output folder belongs to another grid."""


def run_dir(output_dir: Path, run: Run) -> Path:
    return output_dir / "runs" / run.dir_name


def status(output_dir: Path, run: Run, required: list[Run] = ()) -> str:
    """``run``'s state; ``required`` are the pretraining runs whose exports it loads."""
    folder = run_dir(output_dir, run)
    results = read_results(folder / RESULTS_FILE)
    if (results is not None and results_fingerprint(results) == run.fingerprint
            and run_failure(results, folder) is None):
        loaded = {b.get("fingerprint") for b in (results.get("model") or {}).get("backbones") or []
                  if isinstance(b, dict)}
        if all(export_fingerprint(output_dir, stage) in loaded for stage in required):
            return DONE
    return INCOMPLETE if folder.exists() else PENDING


def statuses(output_dir: Path, runs: list[Run]) -> dict[str, str]:
    """The state of every run of a grid (pretraining runs included), by id."""
    by_id = {run.id: run for run in runs}
    return {run.id: status(output_dir, run, [by_id[i] for i in run.required_ids]) for run in runs}


def read_results(path: Path) -> dict | None:
    """A results.json, or None when absent, unreadable or of another schema."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and results.get("schema") == SCHEMA else None


def attempt_failure(folder: Path) -> Failure | None:
    """Why the attempt whose results.json is in ``folder`` failed, or None (no results, or not failed)."""
    results = read_results(folder / RESULTS_FILE)
    return None if results is None else run_failure(results, folder)


def results_fingerprint(results: dict) -> str | None:
    config = results.get("config")
    return run_fingerprint(config, str(results.get("verb"))) if isinstance(config, dict) else None


def finished_fingerprint(path: Path) -> str | None:
    """The run fingerprint (verb and config) of a results.json, or None when absent or unreadable."""
    results = read_results(path)
    return None if results is None else results_fingerprint(results)


def export_fingerprint(output_dir: Path, stage: Run) -> str | None:
    """The fingerprint of the backbone a finished pretraining run exported (``SSLPretrain`` records it in
    results.json under ``extra.pretraining.export``), or None."""
    if status(output_dir, stage) != DONE:
        return None
    results = read_results(run_dir(output_dir, stage) / RESULTS_FILE) or {}
    export = ((results.get("extra") or {}).get("pretraining") or {}).get("export") or {}
    return export.get("fingerprint")


def run_record(spec: GridSpec, run: Run, argv: list[str]) -> dict:
    """What run.json holds: the grid, the run's id, fingerprint and labels, and the command's arguments (the
    fingerprint decides whether a later attempt may continue the folder's checkpoint, ``attempt.py``)."""
    return {"grid": spec.name, "id": run.id, "fingerprint": run.fingerprint, "labels": run.labels,
            "argv": argv}


def move_aside(folder: Path) -> Path:
    """``<output_dir>/moved/<run folder>-<time>``, outside ``runs/`` (the report never reads it)."""
    target = folder.parent.parent / MOVED_DIR / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 0
    while target.exists():
        suffix += 1
        target = target.with_name(f"{target.name}-{suffix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(target)
    return target


def write_manifest(
    output_dir: Path, spec: GridSpec, runs: list[Run], level_order: dict[str, list[str]]
) -> Path:
    """grid.json: which results belong to this grid (by fingerprint) and their labels, for the report;
    pretraining runs are listed apart (``pretraining``): their results are no table cells."""
    path = output_dir / MANIFEST
    existing = read_manifest(path)
    if existing is not None and existing.get("name") != spec.name:
        raise GridStateError(
            f"{output_dir} holds grid {existing.get('name')!r}, not {spec.name!r}: set output_dir "
            f"in {spec.path} (or pass --output_dir) to a folder of its own"
        )
    document = {
        "schema": MANIFEST_SCHEMA,
        "name": spec.name,
        "spec": str(spec.path),
        "levels": level_order,
        "baseline": spec.report.baseline,
        "metric": spec.report.metric,
        "split": spec.report.split,
        "runs": [_manifest_entry(output_dir, r) for r in runs if not r.pretraining],
    }
    stages = [_manifest_entry(output_dir, r) for r in runs if r.pretraining]
    if stages:
        document["pretraining"] = stages
    if existing != document:
        write_json_atomic(path, document)
    return path


def _manifest_entry(output_dir: Path, run: Run) -> dict:
    entry = {
        "id": run.id,
        "dir": str(run_dir(output_dir, run).relative_to(output_dir)),
        "fingerprint": run.fingerprint,
        "group": run.group,
        "labels": run.labels,
    }
    if run.requires:
        entry["requires"] = run.required_ids
    return entry


def read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise GridStateError(
            f"{path} is not a readable grid manifest ({err}); delete it to start over"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise GridStateError(f"{path} is not a medtransfer grid manifest (schema {MANIFEST_SCHEMA})")
    return manifest
