"""Expanding a grid spec into runs: one ``medtransfer fit`` command per combination of axis levels."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from .spec import GridSpec, GridSpecError, Level, format_override, sort_axes

ID_PREFIX = {"fraction": "f", "seed": "s"}


@dataclass
class Run:
    """One run of a grid. ``fingerprint`` (of the resolved config) and ``config`` are set by ``resolve``."""

    id: str
    levels: list[Level]
    configs: list[str]
    overrides: list[tuple[str, Any]]
    verb: str = "fit"  # ``test`` for protocols with nothing to train (kNN)
    fingerprint: str = ""
    group: str = ""  # fingerprint without the seeds: the runs a table cell averages
    store_keys: tuple[str, ...] = ()  # the feature-store families a frozen-backbone run reads
    config: dict = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        return {level.axis: level.label for level in self.levels}

    @property
    def dir_name(self) -> str:
        return f"{self.id}-{self.fingerprint[:8]}" if self.fingerprint else self.id

    def fit_args(self, extra: list[tuple[str, Any]] = ()) -> list[str]:
        """Arguments after ``medtransfer``: verb, config pieces, then overrides (later ones win)."""
        args = [self.verb]
        for piece in self.configs:
            args += ["--config", piece]
        return args + [format_override(k, v) for k, v in [*self.overrides, *extra]]


def expand(spec: GridSpec) -> list[Run]:
    """Every run of the grid in a stable order: the union of the sub-grids, minus ``exclude``."""
    order = spec.axis_names()
    for i, rule in enumerate(spec.exclude):
        unknown = set(rule) - set(order)
        if unknown:
            raise GridSpecError(
                f"{spec.path}: exclude[{i}] names unknown axis {sorted(unknown)}; axes: {order}"
            )
    runs: dict[str, Run] = {}
    for block in spec.blocks:
        axes = sorted(block, key=lambda a: order.index(a.name))
        for combo in itertools.product(*(a.levels for a in axes)):
            labels = {level.axis: level.label for level in combo}
            if any(all(labels.get(k) == v for k, v in rule.items()) for rule in spec.exclude):
                continue
            run = _run(spec, list(combo))
            if run.id in runs:
                raise GridSpecError(
                    f"{spec.path}: two sub-grids both produce run {run.id}; give their levels "
                    "different labels"
                )
            runs[run.id] = run
    if not runs:
        raise GridSpecError(f"{spec.path}: the grid has no runs (no axes, or every combination excluded)")
    return list(runs.values())


def _run(spec: GridSpec, levels: list[Level]) -> Run:
    configs = list(spec.configs)
    overrides = list(spec.overrides)
    verb = "fit"
    for level in levels:
        configs += level.configs
        overrides += level.overrides
        verb = level.verb or verb
    return Run(run_id(levels), levels, configs, overrides, verb)


def run_id(levels: list[Level]) -> str:
    parts = []
    for level in levels:
        prefix = ID_PREFIX.get(level.axis, "")
        if "." in level.axis:
            prefix = level.axis.rsplit(".", 1)[-1] + "="
        parts.append(prefix + level.label)
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", "-".join(parts)) or "run"


def axis_order(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        names += [a for a in run.labels if a not in names]
    return sort_axes(names)


def level_order(spec: GridSpec) -> dict[str, list[str]]:
    """For each axis, its labels in the order the grid file gives them (tables and plots keep it)."""
    order: dict[str, list[str]] = {}
    for block in spec.blocks:
        for axis in block:
            order.setdefault(axis.name, [])
            order[axis.name] += [lv.label for lv in axis.levels if lv.label not in order[axis.name]]
    return order


def store_waits(runs: list[Run]) -> dict[str, set[str]]:
    """For each run, the runs it waits for so that every feature store is extracted once: the first user of
    each store key extracts it (single-backbone runs before fusions), every other user waits for that one."""
    order = sorted(range(len(runs)), key=lambda i: (len(runs[i].store_keys), i))
    leaders: dict[str, str] = {}
    for i in order:
        for key in runs[i].store_keys:
            leaders.setdefault(key, runs[i].id)
    return {run.id: {leaders[k] for k in run.store_keys} - {run.id} for run in runs}
