"""Reading results.json files into table cells: the runs (seeds) of each dataset x protocol x backbone x
label fraction (x any other axis), with their mean and standard deviation over seeds; the report adds each
cell's confidence interval over seeds and test images (``uncertainty.py``).

A results.json joins a table only if it is readable, complete and, when it lies inside a grid's folder, one
of that grid's runs (by config fingerprint). A grid's pretraining runs join no table: they are listed apart
with what they exported (``stages.py``), as are pretraining runs outside any grid. A failed run
(``failures.py``: stopped by the divergence guard, or with NaN or infinite test metrics or predictions) is
never scored: it is listed apart and marks its configuration's cell. Everything else is listed with the
reason it was left out. Folders a launcher moved aside (``<grid>/moved/``: earlier attempts) are not read.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MedTransferError
from ..outputs.results import SCHEMA
from .decisions import Decisions
from .failures import PRETRAINING_RANGES, Failure, run_failure
from .fingerprint import group_fingerprint, run_fingerprint
from .stages import PretrainingRun, pretraining_run, records_pretraining
from .state import MANIFEST, MOVED_DIR, RESULTS_FILE, RUN_FILE, GridStateError, read_manifest

TABLE_AXES = ("dataset", "protocol", "backbone", "fraction")


@dataclass
class Record:
    """One finished run in a table."""

    path: Path
    results: dict
    fingerprint: str
    group: str
    grid: str | None
    run_id: str | None
    labels: dict[str, str]  # dataset, protocol, backbone, fraction and any other axis except the seed
    fraction: float
    seed: int | None
    metric: str
    split: str
    value: float
    # balanced accuracy and degenerate decisions, from the test predictions (set by the report's statistics)
    decisions: Decisions | None = None
    # how results.json's score differs from what the run's own test predictions give (set likewise)
    disagreement: str | None = None

    @property
    def flag(self) -> str | None:
        return None if self.decisions is None else self.decisions.flag


@dataclass
class FailedRun:
    """A run that ended without a score to trust: listed apart, never scored, averaged or ranked; it marks the
    cell of its configuration (``Cell.failed``)."""

    path: Path
    fingerprint: str
    group: str
    grid: str | None
    run_id: str | None
    labels: dict[str, str] | None  # None: its results.json says too little to place it in a table
    fraction: float
    seed: int | None
    metric: str
    failure: Failure


@dataclass
class Excluded:
    path: Path
    reason: str


@dataclass
class Cell:
    """The repeats (seeds) of one configuration. ``interval``: 95% interval of the mean over seeds from the
    test predictions (set by the report), or None with the reason in ``interval_note``."""

    labels: dict[str, str]
    fraction: float
    metric: str
    values: list[float]
    seeds: list[int | None]
    records: list[Record]
    failed: list[FailedRun] = field(default_factory=list)  # the configuration's seeds that failed
    interval: tuple[float, float] | None = None
    interval_note: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over the finished runs; NaN when every run failed."""
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def flagged(self) -> list[Record]:
        """The runs whose test decisions are degenerate (``decisions.py``)."""
        return [r for r in self.records if r.flag is not None]

    @property
    def disputed(self) -> list[Record]:
        """The runs whose results.json records another score than their test predictions give."""
        return [r for r in self.records if r.disagreement is not None]

    @property
    def rankable(self) -> bool:
        """Whether the cell may be called best: every run finished, none with degenerate decisions or a score
        its own predictions do not give."""
        return self.n > 0 and not self.failed and not self.flagged and not self.disputed

    @property
    def balanced_accuracies(self) -> list[float]:
        return [r.decisions.balanced_accuracy for r in self.records if r.decisions is not None]

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); NaN for a single run."""
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))



@dataclass
class Collection:
    root: Path
    records: list[Record] = field(default_factory=list)
    failed: list[FailedRun] = field(default_factory=list)
    pretraining: list[PretrainingRun] = field(default_factory=list)  # finished pretraining runs: no cells
    excluded: list[Excluded] = field(default_factory=list)
    unfinished: dict[str, list[str]] = field(default_factory=dict)  # grid name -> run ids without results
    level_order: dict[str, list[str]] = field(default_factory=dict)
    baseline: str | None = None
    files: int = 0


def collect(root: str | Path, metric: str | None = None, split: str | None = None) -> Collection:
    """Every results.json under ``root``, checked, labelled and given its score (``split``/``metric``; by
    default the grid's, else ``test`` and each task's primary metric)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of results (expected e.g. runs/benchmark/smoke)")
    out = Collection(root)
    manifests: dict[Path, dict | None] = {}
    seen: dict[str, Path] = {}
    found: dict[str, set[str]] = defaultdict(set)
    failed: list[tuple[FailedRun, dict | None]] = []
    unscored: list[dict] = []
    for path in sorted(root.rglob(RESULTS_FILE)):
        manifest_dir = _manifest_dir(path.parent, manifests)
        if manifest_dir is not None and path.relative_to(manifest_dir).parts[0] == MOVED_DIR:
            continue
        out.files += 1
        manifest = manifests.get(manifest_dir) if manifest_dir else None
        try:
            record = _record(path, manifest, metric, split)
        except _LeftOut as why:
            out.excluded.append(Excluded(path, str(why)))
            if isinstance(why, _Unscored):
                unscored.append(why.results)
            continue
        except _Failed as stopped:
            failed.append((stopped.run, manifest))
            continue
        except _Pretraining as stage:
            out.pretraining.append(stage.run)
            if manifest is not None:
                found[manifest["name"]].add(stage.run.fingerprint)
            continue
        if record.fingerprint in seen:
            out.excluded.append(
                Excluded(path, f"duplicate of {seen[record.fingerprint]} (same config and seed)")
            )
            continue
        seen[record.fingerprint] = path
        if manifest is not None:
            found[manifest["name"]].add(record.fingerprint)
        out.records.append(record)
    _leave_out_rescores(out)
    _add_failed(out, failed, seen, found)
    _check_score_found(out, metric, split, unscored)
    for manifest in (m for m in manifests.values() if m is not None):
        _merge_order(out.level_order, manifest.get("levels") or {})
        out.baseline = out.baseline or manifest.get("baseline")
        planned = [*manifest.get("pretraining", []), *manifest["runs"]]
        missing = [r["id"] for r in planned if r["fingerprint"] not in found[manifest["name"]]]
        if missing:
            out.unfinished[manifest["name"]] = missing
    out.pretraining.sort(key=_plan_order([m for m in manifests.values() if m is not None]))
    return out


def _plan_order(manifests: list[dict]):
    """Sort key of pretraining runs: the order their grids plan them, then runs started by hand by path."""
    planned = {(manifest["name"], stage["id"]): position for manifest in manifests
               for position, stage in enumerate(manifest.get("pretraining", []))}
    return lambda run: (planned.get((run.grid, run.run_id), len(planned)), str(run.path))


def _leave_out_rescores(out: Collection) -> None:
    """A ``test`` (or ``validate``) run of a checkpoint that a run in the collection already scored on the
    same split (the fit that tested it, or an earlier such run) is one model, not another row of the table:
    it is left out, naming the run kept. Fits are never left out here (their seeds are the repeats)."""
    kept: dict[tuple, Path] = {}
    rescores: set[Path] = set()
    for record in sorted(out.records, key=lambda r: r.results.get("verb") != "fit"):  # fits first
        keys = _scorings(record)
        earlier = next((kept[key] for key in keys if key in kept), None)
        owner = record.path
        if earlier is not None and record.results.get("verb") != "fit":
            why = (f"scores the checkpoint that {earlier} scored, on the same split, with the same "
                   "score: one model, counted once")
            out.excluded.append(Excluded(record.path, why))
            rescores.add(record.path)
            owner = earlier  # the run kept, named again for a later re-score known by another key
        for key in keys:
            kept.setdefault(key, owner)
    out.records = [r for r in out.records if r.path not in rescores]


def _scorings(record: Record) -> list[tuple]:
    """What two scorings of one model on one split share: the model, named by the fingerprint of its whole
    state as scored (``model.weights.scored``, wherever its checkpoint was read from) and by the checkpoint
    as results.json names it (the path the run was given: all results written before ``scored`` have), the
    split's digest, the metric and the score; none without a split digest."""
    splits = record.results.get("data", {}).get("splits")
    digest = splits.get(record.split) if isinstance(splits, dict) else None
    weights = record.results.get("model", {}).get("weights")
    names = [("checkpoint", record.results.get("checkpoint")),
             ("weights", weights.get("scored") if isinstance(weights, dict) else None)]
    return [(kind, name, digest, record.metric, record.value) for kind, name in names
            if isinstance(name, str) and digest]


def _add_failed(out: Collection, failed: list[tuple[FailedRun, dict | None]], seen: dict[str, Path],
                found: dict[str, set[str]]) -> None:
    """The failed runs into ``out.failed``, but for one whose run finished in another folder, or failed in
    one already (left out, with that folder named)."""
    failed_in: dict[str, Path] = {}
    for run, manifest in failed:
        if run.fingerprint in seen:
            out.excluded.append(Excluded(run.path, f"a failed attempt ({run.failure.kind}) of the run in "
                                                   f"{seen[run.fingerprint]}, which finished"))
        elif run.fingerprint in failed_in:
            out.excluded.append(Excluded(run.path, f"duplicate of {failed_in[run.fingerprint]} (same config "
                                                   "and seed, failed too)"))
        else:
            failed_in[run.fingerprint] = run.path
            if manifest is not None:
                found[manifest["name"]].add(run.fingerprint)
            out.failed.append(run)


class _LeftOut(Exception):
    """Why a results.json does not join the table."""


class _Unscored(_LeftOut):
    """A results.json without the split and metric tabulated; ``results`` says which it has."""

    def __init__(self, why: str, results: dict) -> None:
        super().__init__(why)
        self.results = results


class UnknownScoreError(MedTransferError, ValueError):
    """A ``--metric`` or ``--split`` that no results.json under the folder holds (a typo, say)."""


def _check_score_found(out: Collection, metric: str | None, split: str | None, unscored: list[dict]) -> None:
    """Refuse a report whose ``--metric``/``--split`` left every run out for lacking it: it would be a report
    without a table, written with exit status 0. Names the splits and metrics the results hold."""
    if out.records or out.failed or not unscored or (metric is None and split is None):
        return
    held = sorted({f"{name}/{key}" for results in unscored
                   for name, values in results["metrics"].items() if isinstance(values, dict)
                   for key in values if "/" not in key})
    asked = f"{split or 'test'}/{metric}" if metric else f"a {split!r} split"
    raise UnknownScoreError(f"no results.json under {out.root} holds {asked} ({len(unscored)} read): "
                            f"--metric and --split choose among what they hold: {', '.join(held)}")


class _Failed(Exception):  # noqa: N818 - an outcome, not an error of this code
    """A results.json of a failed run."""

    def __init__(self, run: FailedRun) -> None:
        super().__init__(run.failure.describe())
        self.run = run


class _Pretraining(Exception):  # noqa: N818 - an outcome, not an error of this code
    """A results.json of a finished pretraining run."""

    def __init__(self, run: PretrainingRun) -> None:
        super().__init__(str(run.path))
        self.run = run


def _manifest_dir(folder: Path, cache: dict[Path, dict | None]) -> Path | None:
    """The nearest folder at or above ``folder`` holding a grid manifest."""
    for candidate in [folder, *folder.parents]:
        if candidate not in cache:
            try:
                cache[candidate] = read_manifest(candidate / MANIFEST)
            except GridStateError:
                cache[candidate] = None
        if cache[candidate] is not None:
            return candidate
    return None


def _record(path: Path, manifest: dict | None, metric: str | None, split: str | None) -> Record:
    results = _read(path)
    missing = [
        k for k in ("metrics", "config", "data", "model", "task") if not isinstance(results.get(k), dict)
    ]
    if "config" in missing:
        raise _LeftOut(f"incomplete: no {', '.join(missing)}")
    config = results["config"]
    verb = str(results.get("verb"))
    fingerprint = run_fingerprint(config, verb)
    planned = None
    if manifest is not None:
        planned = next((r for r in manifest["runs"] if r["fingerprint"] == fingerprint), None)
        if planned is None:
            stages = manifest.get("pretraining", [])
            stage = next((r for r in stages if r["fingerprint"] == fingerprint), None)
            if stage is None:
                raise _LeftOut(_other_grid(path, manifest, fingerprint))
            raise _stage_outcome(path, results, fingerprint, manifest, stage["id"])
    elif records_pretraining(results):
        raise _stage_outcome(path, results, fingerprint, None, None)
    split = split or (manifest or {}).get("split") or "test"
    task = results.get("task") if isinstance(results.get("task"), dict) else {}
    metric = metric or (manifest or {}).get("metric") or task.get("primary_metric") or "auroc"
    failure = run_failure(results, path.parent)
    if failure is not None:
        raise _Failed(_failed_run(path, results, manifest, planned, missing, metric, failure))
    if missing:
        raise _LeftOut(f"incomplete: no {', '.join(missing)}")
    value = (results["metrics"].get(split) or {}).get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _Unscored(f"no {split}/{metric} in its metrics (verb {results.get('verb')!r})", results)
    if math.isnan(value):
        raise _LeftOut(f"{split}/{metric} is NaN")
    labels = derived_labels(results)
    if planned is not None:
        labels.update({k: v for k, v in planned["labels"].items() if k != "seed"})
    return Record(
        path=path,
        results=results,
        fingerprint=fingerprint,
        group=group_fingerprint(config, verb),
        grid=manifest["name"] if manifest else None,
        run_id=planned["id"] if planned else None,
        labels=labels,
        fraction=_fraction(results),
        seed=results.get("seed"),
        metric=metric,
        split=split,
        value=float(value),
    )


def _stage_outcome(path: Path, results: dict, fingerprint: str, manifest: dict | None,
                   run_id: str | None) -> _Failed | _Pretraining:
    """A pretraining run as the report takes it: failed (stopped by the divergence guard, or a NaN or infinite
    training loss), in no table cell, or finished."""
    grid = manifest["name"] if manifest else None
    failure = run_failure(results, path.parent, splits=("train",), ranges=PRETRAINING_RANGES)
    if failure is None:
        return _Pretraining(pretraining_run(path, results, fingerprint, grid, run_id))
    config, verb = results["config"], str(results.get("verb"))
    return _Failed(FailedRun(
        path=path, fingerprint=fingerprint, group=group_fingerprint(config, verb), grid=grid, run_id=run_id,
        labels=None, fraction=math.nan, seed=results.get("seed"), metric="loss", failure=failure,
    ))


def _read(path: Path) -> dict:
    """A medtransfer results.json document."""
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _LeftOut(f"unreadable: {err}") from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise _LeftOut(f"not a medtransfer results file (schema {SCHEMA!r} expected)")
    return results


def _failed_run(path: Path, results: dict, manifest: dict | None, planned: dict | None, missing: list[str],
                metric: str, failure: Failure) -> FailedRun:
    """A failed run, placed in its configuration's table cell where its results say enough to place it."""
    config, verb = results["config"], str(results.get("verb"))
    labels = None  # in no cell without its data (the label fraction) or, when not planned, its model
    if "data" not in missing and (planned is not None or "model" not in missing):
        labels = derived_labels(results) if "model" not in missing else {}
        labels.update({k: v for k, v in (planned or {}).get("labels", {}).items() if k != "seed"})
    return FailedRun(
        path=path,
        fingerprint=run_fingerprint(config, verb),
        group=group_fingerprint(config, verb),
        grid=manifest["name"] if manifest else None,
        run_id=planned["id"] if planned else None,
        labels=labels,
        fraction=math.nan if "data" in missing else _fraction(results),
        seed=results.get("seed"),
        metric=metric,
        failure=failure,
    )


def _other_grid(path: Path, manifest: dict, fingerprint: str) -> str:
    try:
        owner = json.loads((path.parent / RUN_FILE).read_text()).get("grid")
    except (OSError, ValueError, AttributeError):
        owner = None
    if owner and owner != manifest["name"]:
        return f"from another grid ({owner!r}, inside grid {manifest['name']!r})"
    stages = len(manifest.get("pretraining", []))
    planned = f"{len(manifest['runs'])} runs" + (f" and {stages} pretraining runs" if stages else "")
    return (
        f"not a run of grid {manifest['name']!r}: its config (fingerprint {fingerprint}) matches none of the "
        f"grid's {planned} (another grid, or an older version of this one)"
    )


def derived_labels(results: dict) -> dict[str, str]:
    """Labels from the results themselves, for runs started by hand."""
    backbones = results["model"].get("backbones") or []
    init_args = (results["config"].get("model") or {}).get("init_args") or {}
    backbone = "+".join(b.get("name", "?") for b in backbones) or str(init_args.get("backbone", "?"))
    return {
        "dataset": str(results["data"].get("name", "?")),
        "protocol": str(results["model"].get("name", "?")),
        "backbone": backbone,
        "fraction": f"{_fraction(results):g}",
    }


def _fraction(results: dict) -> float:
    value = results["data"].get("train_fraction", 1.0)
    return float(value) if isinstance(value, (int, float)) else math.nan


def _merge_order(order: dict[str, list[str]], levels: dict[str, list[str]]) -> None:
    for axis, labels in levels.items():
        order.setdefault(axis, [])
        order[axis] += [label for label in labels if label not in order[axis]]


def cells(collection: Collection) -> list[Cell]:
    """One cell per configuration (runs differing only in their seeds), with the configuration's failed runs
    (a cell whose runs all failed has no values); configurations that share all labels but differ in another
    setting stay apart, marked ``#2``, ``#3`` in their backbone label."""
    groups: dict[str, list[Record]] = defaultdict(list)
    failures: dict[str, list[FailedRun]] = defaultdict(list)
    for record in collection.records:
        groups[record.group].append(record)
    for run in collection.failed:
        if run.labels is not None:
            failures[run.group].append(run)
            groups.setdefault(run.group, [])
    result: list[Cell] = []
    taken: dict[tuple, int] = defaultdict(int)
    for group, members in groups.items():
        members.sort(key=_by_seed)
        failed = sorted(failures[group], key=_by_seed)
        first = members[0] if members else failed[0]
        labels = dict(first.labels)
        key = (tuple(sorted(labels.items())), first.metric)
        taken[key] += 1
        if taken[key] > 1:
            labels["backbone"] += f" #{taken[key]}"
        result.append(
            Cell(
                labels,
                first.fraction,
                first.metric,
                [r.value for r in members],
                [r.seed for r in members],
                members,
                failed,
            )
        )
    return result


def _by_seed(run: Record | FailedRun) -> tuple:
    return (run.seed is None, run.seed or 0)
