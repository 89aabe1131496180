"""Expanding a grid spec into runs: one ``medtransfer fit`` command per combination of axis levels, plus the
pretraining runs whose exported backbones some of them load (levels with ``pretrain:``)."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import BACKBONES_KEY, GridSpec, GridSpecError, Level, format_override

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
    pretraining: bool = False  # a pretraining run: its export is what other runs need, not a table cell
    requires: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, pretraining run id)

    @property
    def required_ids(self) -> list[str]:
        return [run_id for _, run_id in self.requires]

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
                    f"{spec.path}: two runs get the id {run.id} ({describe_levels(runs[run.id])}; "
                    f"{describe_levels(run)}): give their levels labels that differ in letters, digits or "
                    "'_.+=-' (a run id writes any other character as '_'), or leave out the repeated sub-grid"
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


def describe_levels(run: Run) -> str:
    """``backbone='res/net', seed='0'``: the labels that made a run's id."""
    return ", ".join(f"{level.axis}={level.label!r}" for level in run.levels)


def run_id(levels: list[Level]) -> str:
    parts = []
    for level in levels:
        prefix = ID_PREFIX.get(level.axis, "")
        if "." in level.axis:
            prefix = level.axis.rsplit(".", 1)[-1] + "="
        parts.append(prefix + level.label)
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", "-".join(parts)) or "run"


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


PRETRAIN_AXIS = "pretrain"


def pretraining_runs(spec: GridSpec, runs: list[Run]) -> list[Run]:
    """The pretraining runs that ``runs`` need, one per (level with ``pretrain``, levels of its ``share``
    axes); records in each run which one it needs (``requires``)."""
    stages: dict[str, Run] = {}
    for run in runs:
        for level, key in (need for lv in run.levels for need in _pretrained(lv)):
            shared = [lv for lv in run.levels if lv.axis in level.pretrain.share]
            missing = sorted(set(level.pretrain.share) - {lv.axis for lv in shared})
            if missing:
                raise GridSpecError(f"{spec.path}: axis {level.axis} = {level.label!r}: its pretraining "
                                    f"shares axis {missing}, which run {run.id} does not have")
            stage = _pretraining_run(spec, level, shared)
            known = stages.setdefault(stage.id, stage)
            if (known.configs, known.overrides) != (stage.configs, stage.overrides):
                raise GridSpecError(f"{spec.path}: two levels labelled {level.label!r} pretrain differently "
                                    f"(run {stage.id}); give them different labels")
            run.requires.append((key, stage.id))
    return list(stages.values())


# where a fusing level's run receives the export of its ``i``-th backbone: that entry's checkpoint
FUSED_CHECKPOINT = re.compile(re.escape(BACKBONES_KEY) + r"\.(\d+)\.checkpoint")


def _pretrained(level: Level) -> list[tuple[Level, str]]:
    """(level with ``pretrain``, the key its export goes to) for ``level`` itself or, for a level that fuses
    others, each fused level that pretrains (the export is that backbone entry's checkpoint)."""
    if level.pretrain is not None:
        return [(level, level.pretrain.checkpoint_key)]
    return [(member, f"{BACKBONES_KEY}.{i}.checkpoint")
            for i, member in enumerate(level.fused) if member.pretrain is not None]


def _pretraining_run(spec: GridSpec, level: Level, shared: list[Level]) -> Run:
    configs = list(spec.configs) + [c for lv in shared for c in lv.configs] + list(level.pretrain.configs)
    overrides = list(spec.overrides) + [o for lv in shared for o in lv.overrides]
    overrides += list(level.pretrain.overrides)
    marker = Level(PRETRAIN_AXIS, level.label, None)
    stage_id = "-".join(filter(None, [run_id(shared) if shared else "", "pretrain", run_id([marker])]))
    return Run(stage_id, [*shared, marker], configs, overrides, pretraining=True)


def export_path(stage: Run, output_dir: Path) -> Path:
    """Where a resolved pretraining run writes its backbone: ``model.init_args.export`` in its folder (or
    that absolute path)."""
    export = ((stage.config.get("model") or {}).get("init_args") or {}).get("export")
    if not export:
        raise GridSpecError(
            f"pretraining run {stage.id}: its model writes no backbone export (model.init_args.export); "
            "pretrain with medtransfer.lightning_modules.SSLPretrain, e.g. configs/pretrain/simclr.yaml"
        )
    if os.path.isabs(export):
        return Path(export)
    return output_dir / "runs" / stage.dir_name / export


def link_exports(runs: list[Run], stages: list[Run], output_dir: Path) -> None:
    """Give each run the export path of every pretraining run it needs, under the level's checkpoint key."""
    by_id = {stage.id: stage for stage in stages}
    for run in runs:
        for key, stage in run.requires:
            path = str(export_path(by_id[stage], output_dir))
            fused = FUSED_CHECKPOINT.fullmatch(key)
            if fused is None:
                run.overrides.append((key, path))
                continue
            at = max(i for i, (k, _) in enumerate(run.overrides) if k == BACKBONES_KEY)
            entries = [dict(entry) for entry in run.overrides[at][1]]
            entries[int(fused[1])]["checkpoint"] = path
            run.overrides[at] = (BACKBONES_KEY, entries)


def with_requirements(selected: set[str], runs: list[Run]) -> set[str]:
    """``selected`` plus the pretraining runs that the selected runs need."""
    return selected | {stage for run in runs if run.id in selected for stage in run.required_ids}


def run_waits(runs: list[Run]) -> dict[str, set[str]]:
    """For each of ``runs`` (those still to run), the runs it waits for: the pretraining runs it needs, and
    the run that extracts each feature store it reads (``store_waits``)."""
    todo = {run.id for run in runs}
    stores = store_waits([run for run in runs if not run.pretraining])
    return {run.id: stores.get(run.id, set()) | (set(run.required_ids) & todo) for run in runs}
