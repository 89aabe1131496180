"""Reading results.json files into table cells: the runs (seeds) of each dataset x protocol x backbone x
label fraction (x any other axis), with their mean and standard deviation over seeds; the report adds each
cell's confidence interval over seeds and test images (``uncertainty.py``).

A results.json joins a table only if it is readable, complete and, when it lies inside a grid's folder, one
of that grid's runs (by config fingerprint). Everything else is listed with the reason it was left out.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..outputs.results import SCHEMA
from .fingerprint import group_fingerprint, run_fingerprint
from .state import MANIFEST, RESULTS_FILE, RUN_FILE, GridStateError, read_manifest

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
    interval: tuple[float, float] | None = None
    interval_note: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

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
    for path in sorted(root.rglob(RESULTS_FILE)):
        out.files += 1
        manifest_dir = _manifest_dir(path.parent, manifests)
        manifest = manifests.get(manifest_dir) if manifest_dir else None
        try:
            record = _record(path, manifest, metric, split)
        except _LeftOut as why:
            out.excluded.append(Excluded(path, str(why)))
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
    for manifest in (m for m in manifests.values() if m is not None):
        _merge_order(out.level_order, manifest.get("levels") or {})
        out.baseline = out.baseline or manifest.get("baseline")
        missing = [r["id"] for r in manifest["runs"] if r["fingerprint"] not in found[manifest["name"]]]
        if missing:
            out.unfinished[manifest["name"]] = missing
    return out


class _LeftOut(Exception):
    """Why a results.json does not join the table."""


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
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _LeftOut(f"unreadable: {err}") from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise _LeftOut(f"not a medtransfer results file (schema {SCHEMA!r} expected)")
    missing = [
        k for k in ("metrics", "config", "data", "model", "task") if not isinstance(results.get(k), dict)
    ]
    if missing:
        raise _LeftOut(f"incomplete: no {', '.join(missing)}")
    config = results["config"]
    verb = str(results.get("verb"))
    fingerprint = run_fingerprint(config, verb)
    planned = None
    if manifest is not None:
        planned = next((r for r in manifest["runs"] if r["fingerprint"] == fingerprint), None)
        if planned is None:
            raise _LeftOut(_other_grid(path, manifest, fingerprint))
    split = split or (manifest or {}).get("split") or "test"
    metric = metric or (manifest or {}).get("metric") or results["task"].get("primary_metric") or "auroc"
    value = (results["metrics"].get(split) or {}).get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _LeftOut(f"no {split}/{metric} in its metrics (verb {results.get('verb')!r})")
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


def _other_grid(path: Path, manifest: dict, fingerprint: str) -> str:
    try:
        owner = json.loads((path.parent / RUN_FILE).read_text()).get("grid")
    except (OSError, ValueError, AttributeError):
        owner = None
    if owner and owner != manifest["name"]:
        return f"from another grid ({owner!r}, inside grid {manifest['name']!r})"
    return (
        f"not a run of grid {manifest['name']!r}: its config (fingerprint {fingerprint}) matches none of the "
        f"grid's {len(manifest['runs'])} runs (another grid, or an older version of this one)"
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
    """One cell per configuration (runs differing only in their seeds); configurations that share all labels
    but differ in another setting stay apart, marked ``#2``, ``#3`` in their backbone label."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in collection.records:
        groups[record.group].append(record)
    result: list[Cell] = []
    taken: dict[tuple, int] = defaultdict(int)
    for members in groups.values():
        members.sort(key=lambda r: (r.seed is None, r.seed or 0))
        labels = dict(members[0].labels)
        key = (tuple(sorted(labels.items())), members[0].metric)
        taken[key] += 1
        if taken[key] > 1:
            labels["backbone"] += f" #{taken[key]}"
        result.append(
            Cell(
                labels,
                members[0].fraction,
                members[0].metric,
                [r.value for r in members],
                [r.seed for r in members],
                members,
            )
        )
    return result
