"""A grid from spec to report: expand, check every run's config, skip finished runs, launch the rest.

Pretraining runs go before the runs that load their backbones.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..runtime.cpu_precision import emulated_half_precision, planned_device_type, slow_precision_advice
from .attempt import continues
from .local import Process, Starter, log_overrides, run_local
from .lock import exclusive
from .plan import Run, expand, level_order, link_exports, pretraining_runs, with_requirements
from .report import write_report
from .resolve import ConfigResolver, resolve
from .slurm import write_slurm
from .spec import GridSpec, LocalSettings, load_grid
from .state import DONE, INCOMPLETE, run_dir, statuses, write_manifest


@dataclass
class Plan:
    """A grid expanded and checked (``make_plan``): its runs, whether each is finished, which to launch."""

    spec: GridSpec
    runs: list[Run]  # the whole grid: pretraining runs first
    status: dict[str, str]  # run id -> done / incomplete / pending
    selected: set[str]  # the run ids to launch (all, or those matching --only)

    def todo(self) -> list[Run]:
        return [r for r in self.runs if r.id in self.selected and self.status[r.id] != DONE]


def make_plan(
    grid_file: str | Path,
    output_dir: str | Path | None = None,
    only: str | None = None,
    cwd: Path | None = None,
    resolver: ConfigResolver | None = None,
) -> Plan:
    """Load, expand and check the grid: every run's config is parsed by the real CLI parser.

    Pretraining runs are resolved first: their fingerprints name the folders whose backbone exports the other
    runs load.

    Args:
        grid_file: the grid's YAML spec.
        output_dir: where the runs and the report go, instead of the spec's.
        only: a glob of run ids to launch (the runs they need come along).
        cwd: what relative paths are relative to (default: the current directory).
        resolver: parses each run's config; one may be shared between plans.

    Raises:
        ValueError: ``only`` matches none of the grid's run ids.
    """
    cwd = cwd or Path.cwd()
    spec = load_grid(grid_file, cwd)
    if output_dir is not None:
        spec.output_dir = (cwd / output_dir).resolve()
    runs = expand(spec)
    stages = pretraining_runs(spec, runs)
    selected = {r.id for r in stages + runs if only is None or fnmatch.fnmatch(r.id, only)}
    if not selected:
        raise ValueError(f"--only {only!r} matches none of the grid's run ids (see --dry_run)")
    selected = with_requirements(selected, runs)
    resolver = resolver or ConfigResolver()
    stores = spec.output_dir / "features"

    def logging(run: Run) -> list:
        return log_overrides(spec.output_dir / "runs" / run.id)

    resolve(stages, stores, resolver, logging)
    link_exports(runs, stages, spec.output_dir)
    resolve(runs, stores, resolver, logging)
    every = stages + runs
    return Plan(spec, every, statuses(spec.output_dir, every), selected)


def describe_plan(plan: Plan, show_runs: bool = True) -> str:
    """The plan as ``--dry_run`` prints it: axes, pretraining, feature stores, runs done and to run."""
    spec, runs = plan.spec, plan.runs
    counts = Counter(plan.status.values())
    lines = [f"grid {spec.name} ({spec.path}): {len(runs)} runs into {spec.output_dir}"]
    for axis, labels in level_order(spec).items():
        lines.append(f"  {axis} ({len(labels)}): {', '.join(labels)}")
    stages = [r for r in runs if r.pretraining]
    if stages:
        users = sum(1 for r in runs if r.requires)
        lines.append(f"  pretraining: {len(stages)} runs ({', '.join(r.id for r in stages)}) before the "
                     f"{users} runs that load their backbones")
    keys = {k for r in runs for k in r.store_keys}
    if keys:
        users = sum(1 for r in runs if r.store_keys)
        lines.append(
            f"  feature stores: {users} frozen-backbone runs share {len(keys)} (dataset, backbone) "
            f"extractions in {spec.output_dir / 'features'}"
        )
    resumed = continuing(plan)
    lines.append(f"  finished: {counts[DONE]}, to run: {len(runs) - counts[DONE]}"
                 + earlier_attempts(counts[INCOMPLETE], len(resumed)))
    if len(plan.selected) < len(runs):
        lines.append(f"  --only selects {len(plan.selected)} runs, {len(plan.todo())} of them to run")
    if show_runs:
        tag = {DONE: "done", INCOMPLETE: "redo", "pending": "todo"}
        tags = {r.id: "cont" if r.id in resumed else tag[plan.status[r.id]] for r in runs}
        lines += [f"  {tags[r.id]:<5} {r.id}  [{r.fingerprint[:8]}]"
                  + (f"  <- {', '.join(r.required_ids)}" if r.requires else "") for r in runs]
    todo = plan.todo()
    lines += slow_precision_notes(todo)
    if todo:
        lines.append("  first command: medtransfer " + " ".join(todo[0].fit_args()))
    return "\n".join(lines)


def slow_precision_notes(runs: list[Run]) -> list[str]:
    """Notes for runs to launch here that would train in bfloat16 on a CPU that emulates it.

    Their numbers would be right, only many times later than in 32-true (``runtime.cpu_precision``).
    """
    precisions = Counter(
        str(r.config["trainer"].get("precision")) for r in runs
        if emulated_half_precision(r.config["trainer"].get("precision"),
                                   planned_device_type(r.config["trainer"].get("accelerator"))))
    return [f"  note: {count} runs to run: {slow_precision_advice(precision)}; to run them here, set "
            "trainer.precision: 32-true in the grid's overrides" for precision, count in precisions.items()]


def continuing(plan: Plan) -> set[str]:
    """The unfinished runs that continue a killed attempt's checkpoint (``local.begin_attempt``'s rule)."""
    return {r.id for r in plan.runs if plan.status[r.id] == INCOMPLETE
            and all(plan.status[i] == DONE for i in r.required_ids)
            and continues(run_dir(plan.spec.output_dir, r), {"fingerprint": r.fingerprint})}


def earlier_attempts(incomplete: int, resumed: int) -> str:
    """`` (3 killed or failed earlier: 2 continue from their last.ckpt, 1 redone from scratch)``, or ''."""
    if not incomplete:
        return ""
    parts = [f"{resumed} continue from their last.ckpt" if resumed else "",
             f"{incomplete - resumed} redone from scratch" if incomplete > resumed else ""]
    return f" ({incomplete} killed or failed earlier: {', '.join(filter(None, parts))})"


def run_plan(
    plan: Plan,
    launcher: str = "local",
    local: LocalSettings | None = None,
    start: Starter = Process,
    say: Callable[[str], None] = print,
    cwd: Path | None = None,
) -> int:
    """Launch the unfinished runs (local) or write the sbatch array (slurm); report when local runs end.

    Args:
        plan: what ``make_plan`` planned.
        launcher: ``local`` or ``slurm``.
        local: parallel runs and their GPUs, instead of the spec's.
        start: starts one run.
        say: where progress messages go.
        cwd: the folder the sbatch array runs from (default: the current directory).

    Returns:
        The exit code: 0, or 1 when a run failed.

    Raises:
        GridBusyError: another benchmark process works on the same output folder.
    """
    with exclusive(plan.spec.output_dir):
        plan.status = statuses(plan.spec.output_dir, plan.runs)  # as of now, not of planning
        return _launch(plan, launcher, local, start, say, cwd)


def _launch(
    plan: Plan,
    launcher: str,
    local: LocalSettings | None,
    start: Starter,
    say: Callable[[str], None],
    cwd: Path | None,
) -> int:
    spec = plan.spec
    write_manifest(spec.output_dir, spec, plan.runs, level_order(spec))
    todo = plan.todo()
    if launcher == "slurm":
        if not todo:
            say(f"all {len(plan.runs)} runs finished already; nothing to submit")
        else:
            submit = write_slurm(spec, spec.output_dir, todo, cwd or Path.cwd())
            say(
                f"wrote an sbatch array of {len(todo)} runs: submit with `bash {submit}`; once it is done, "
                f"`medtransfer benchmark --report {spec.output_dir}` writes the tables"
            )
        return 0
    if not todo:
        say(
            f"nothing to run: all {len(plan.selected)} selected runs are finished"
            if len(plan.selected) < len(plan.runs)
            else f"all {len(plan.runs)} runs finished already; nothing to run"
        )
    outcomes = (
        run_local(spec, spec.output_dir, todo, local or spec.local, start=start, say=say) if todo else []
    )
    failed = [o for o in outcomes if o.failed]
    report = write_report(spec.output_dir)  # the baseline: its manifest's report.baseline, unchecked
    say(
        f"report: {report.summary} ({len(report.collection.records)} runs"
        + (f", {len(report.written)} files updated)" if report.written else ", unchanged)")
    )
    if failed:
        say(
            f"{len(failed)} runs failed: "
            + ", ".join(o.run.id for o in failed)
            + "; fix the cause and run the same command again (finished runs are kept)"
        )
        return 1
    return 0
