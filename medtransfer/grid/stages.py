"""A grid's pretraining runs in its report: stages whose exported backbones other runs of the grid load. They
have no test split and nothing to score, so they join no table; the report lists what each trained and
exported (``summary.md``, "Pretraining runs"), so that a table row such as ``simclr`` can be traced to the
weights it evaluated.

A results.json is a pretraining run when its grid's manifest plans it as one (``grid.json``, ``pretraining``)
or, outside any grid, when it records pretraining (``extra.pretraining``, written by ``SSLPretrain``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..backbones.export import read_export


@dataclass
class PretrainingRun:
    """One finished pretraining run: its last training loss, the optimiser steps and wall time it took, its
    kNN monitor's validation score, and the fingerprint of the backbone it exported."""

    path: Path
    fingerprint: str  # of its config, as for every run
    grid: str | None
    run_id: str | None
    method: str
    loss: float | None
    steps: int | None  # as the export records them (None: see ``export_note``)
    wall_time_s: float | None
    monitor: tuple[str, float] | None  # (metric, value) of the kNN monitor on the validation split
    export: str | None  # fingerprint of the exported backbone
    export_note: str = ""  # why the steps are unknown: the export is missing, unreadable or replaced


def records_pretraining(results: dict) -> bool:
    """Whether a results.json is a pretraining run's (``SSLPretrain`` records ``extra.pretraining``)."""
    return isinstance(_mapping(results.get("extra")).get("pretraining"), dict)


def pretraining_run(path: Path, results: dict, fingerprint: str, grid: str | None,
                    run_id: str | None) -> PretrainingRun:
    """What the report lists of the pretraining run whose results.json is ``path`` (of ``grid``'s run
    ``run_id``, or started by hand)."""
    pretraining = _mapping(_mapping(results.get("extra")).get("pretraining"))
    export = _mapping(pretraining.get("export"))
    recorded = export.get("fingerprint") if isinstance(export.get("fingerprint"), str) else None
    steps, note = export_steps(_export_files(path.parent, results), recorded)
    return PretrainingRun(
        path=path,
        fingerprint=fingerprint,
        grid=grid,
        run_id=run_id,
        method=str(pretraining.get("method") or _mapping(results.get("model")).get("name") or "?"),
        loss=_number(_mapping(_mapping(results.get("metrics")).get("train")).get("loss")),
        steps=steps,
        wall_time_s=_number(results.get("wall_time_s")),
        monitor=_monitor(results),
        export=recorded,
        export_note=note,
    )


def export_steps(candidates: list[Path], fingerprint: str | None) -> tuple[int | None, str]:
    """(optimiser steps, "") from the first existing export file, which records how it was trained; (None,
    why) when there is none, it does not read as an export, or it holds other weights than the run exported
    (a later run wrote over it)."""
    if fingerprint is None:
        return None, "no export recorded"
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        return None, "export file missing"
    try:
        exported = read_export(torch.load(found, map_location="cpu", weights_only=True, mmap=True), found)
    except Exception:  # a truncated or foreign file fails in many ways: all mean "no steps to show"
        exported = None
    if exported is None:
        return None, "export file unreadable"
    if exported.fingerprint != fingerprint:
        return None, f"export file replaced since (now {exported.fingerprint})"
    steps = exported.trained_with.get("steps")
    return (steps, "") if isinstance(steps, int) and not isinstance(steps, bool) else (None, "")


def _export_files(folder: Path, results: dict) -> list[Path]:
    """Where the export may be: the path relative to the run's folder (it survives a moved grid folder),
    then the absolute path the run wrote."""
    produced = _mapping(_mapping(_mapping(results.get("model")).get("weights")).get("produced")).get("path")
    written = _mapping(_mapping(_mapping(results.get("extra")).get("pretraining")).get("export")).get("path")
    files = [folder / produced] if isinstance(produced, str) else []
    return files + ([Path(written)] if isinstance(written, str) else [])


def _monitor(results: dict) -> tuple[str, float] | None:
    """The kNN monitor's last validation score in the task's primary metric (none without labels)."""
    metric = _mapping(results.get("task")).get("primary_metric")
    value = _number(_mapping(_mapping(results.get("metrics")).get("val")).get(metric))
    return None if value is None else (str(metric), value)


def _number(value) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return None
    return float(value)


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}
