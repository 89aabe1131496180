"""The SLURM launcher: writes an sbatch array script (one array task per unfinished run, DDP across the task's
GPUs through srun) and ``submit.sh``, which the user runs on the cluster's login node.

Runs are listed so that frozen-backbone runs that would extract the same feature stores come in three waves:
the first run of each store group, the runs that use no store, then the remaining store users, submitted with
``--dependency=afterany`` on the first wave so each (backbone, dataset) is extracted once. Pretraining runs
come before all of them, in a job of their own that the others wait for with ``--dependency=afterok`` (their
backbone exports must exist; a failed pretraining leaves the waiting jobs pending, for ``scancel``).
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from .local import log_overrides
from .plan import Run, run_waits
from .spec import GridSpec, SlurmSettings
from .state import FINISHED_STATUS, run_record

REQUEUE_MARGIN_S = 60  # of the signal's lead, kept for scontrol requeue and the processes' ends
GRACE_ENV = "MEDTRANSFER_REQUEUE_GRACE_S"  # medtransfer.runtime.requeue.GRACE_ENV (which imports Lightning)


def ddp_overrides(settings: SlurmSettings) -> list[tuple[str, Any]]:
    """One process per GPU: srun starts ``gpus_per_node`` tasks on each of ``nodes`` nodes."""
    if settings.gpus_per_node < 1:
        return [("trainer.num_nodes", settings.nodes)]
    overrides: list[tuple[str, Any]] = [
        ("trainer.accelerator", "gpu"),
        ("trainer.devices", settings.gpus_per_node),
        ("trainer.num_nodes", settings.nodes),
    ]
    if settings.gpus_per_node * settings.nodes > 1:
        overrides.append(("trainer.strategy", "ddp"))
    return overrides


def waves(runs: list[Run]) -> list[list[Run]]:
    """[pretraining runs], [runs that extract feature stores], [runs without stores], [runs that wait for the
    extracting ones]."""
    stages = [r for r in runs if r.pretraining]
    others = [r for r in runs if not r.pretraining]
    waits = run_waits(others)
    extracting = set().union(*waits.values())
    leaders = [r for r in others if r.id in extracting and not waits[r.id]]
    independent = [r for r in others if not r.store_keys]
    followers = [r for r in others if r.store_keys and r not in leaders]
    return [stages, leaders, independent, followers]


def write_slurm(spec: GridSpec, output_dir: Path, runs: list[Run], cwd: Path) -> Path:
    """Write ``<output_dir>/slurm/`` for ``runs`` (the unfinished ones); returns the path of submit.sh."""
    settings = spec.slurm
    folder = output_dir / "slurm"
    commands = folder / "commands"
    commands.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    stages, leaders, independent, followers = waves(runs)
    ordered = stages + leaders + independent + followers
    for run in ordered:
        run_folder = output_dir / "runs" / run.dir_name
        # ckpt_path last: a requeued or resubmitted task continues its run (medtransfer.grid.attempt)
        extra = [*log_overrides(run_folder), *ddp_overrides(settings), ("ckpt_path", "last")]
        argv = run.fit_args(extra=extra)
        (commands / f"{run.dir_name}.sh").write_text(command_script(spec, run, argv))
        record = json.dumps(run_record(spec, run, argv), indent=2)
        (commands / f"{run.dir_name}.json").write_text(record + "\n")
    (folder / "runs.txt").write_text("".join(f"{run.dir_name}\n" for run in ordered))
    (folder / "grid.sbatch").write_text(sbatch_script(spec, output_dir, len(ordered), cwd))
    submit = folder / "submit.sh"
    submit.write_text(submit_script(spec, [len(stages), len(leaders), len(independent), len(followers)]))
    submit.chmod(0o755)
    return submit


def command_script(spec: GridSpec, run: Run, argv: list[str]) -> str:
    python = shlex.quote(sys.executable)
    return (
        f"#!/usr/bin/env bash\n# run {run.id} of grid {spec.name} (config fingerprint {run.fingerprint}); "
        "started by grid.sbatch through srun, once per GPU\n"
        f'exec "${{MEDTRANSFER_PYTHON:-{python}}}" -m medtransfer.cli {shlex.join(argv)}\n'
    )


def sbatch_script(spec: GridSpec, output_dir: Path, count: int, cwd: Path) -> str:
    s = spec.slurm
    throttle = f"%{s.max_parallel}" if s.max_parallel else ""
    lines = [
        "#!/bin/bash",
        f"# grid {spec.name}: {count} runs, one array task each (written by medtransfer benchmark from "
        f"{spec.path}).",
        "# Submit with submit.sh, which orders the feature-extraction runs first; submitting this file "
        "directly runs all at once.",
        f"#SBATCH --job-name=mt-{spec.name}",
        f"#SBATCH --array=0-{count - 1}{throttle}",
        f"#SBATCH --nodes={s.nodes}",
        f"#SBATCH --ntasks-per-node={max(1, s.gpus_per_node)}",
        f"#SBATCH --cpus-per-task={s.cpus_per_task}",
        f"#SBATCH --time={s.time}",
        f"#SBATCH --chdir={cwd}",
        f"#SBATCH --output={output_dir}/slurm/logs/%A_%a.out",
    ]
    if s.gpus_per_node > 0:
        lines.append(f"#SBATCH --gpus-per-node={s.gpus_per_node}")
    if s.mem:
        lines.append(f"#SBATCH --mem={s.mem}")
    if s.partition:
        lines.append(f"#SBATCH --partition={s.partition}")
    if s.account:
        lines.append(f"#SBATCH --account={s.account}")
    if s.requeue_signal_s is not None:
        # the signal goes to every task of the srun step (no B:), i.e. every rank; the log goes on after a
        # requeue
        lines += ["#SBATCH --requeue", f"#SBATCH --signal=USR1@{s.requeue_signal_s}",
                  "#SBATCH --open-mode=append"]
    lines += [f"#SBATCH {option}" for option in s.sbatch_options]
    lines += [
        "set -euo pipefail",
        *s.setup,
        f"GRID_DIR={shlex.quote(str(output_dir))}",
        f'PYTHON="${{MEDTRANSFER_PYTHON:-{shlex.quote(sys.executable)}}}"',
        'RUN=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$GRID_DIR/slurm/runs.txt")',
        'if [ -z "$RUN" ]; then echo "no run at index $SLURM_ARRAY_TASK_ID of runs.txt" >&2; exit 1; fi',
        'RUN_DIR="$GRID_DIR/runs/$RUN"',
        "# a run that finished meanwhile is skipped; an earlier attempt's last.ckpt of this config is",
        "# continued; a failed attempt's folder or another config's checkpoint is moved aside",
        "ATTEMPT=0",
        '"$PYTHON" -m medtransfer.grid.attempt "$RUN_DIR" "$GRID_DIR/slurm/commands/$RUN.json" || ATTEMPT=$?',
        f'if [ "$ATTEMPT" -eq {FINISHED_STATUS} ]; then exit 0; fi',
        'if [ "$ATTEMPT" -ne 0 ]; then exit "$ATTEMPT"; fi',
        *grace_lines(s),
        'echo "$RUN: attempt ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST"',
        'srun --kill-on-bad-exit=1 bash "$GRID_DIR/slurm/commands/$RUN.sh" >> "$RUN_DIR/output.log" 2>&1',
        *retention_lines(spec),
        "",
    ]
    return "\n".join(lines)


def retention_lines(spec: GridSpec) -> list[str]:
    """After a run that ended well: delete its ``last.ckpt`` unless the grid keeps it (``retention``)."""
    if spec.checkpoints.keep_last:
        return []
    return ["# the run finished: its last.ckpt only served to continue it (checkpoints.keep_last keeps it)",
            '"$PYTHON" -m medtransfer.grid.retention "$RUN_DIR" >> "$RUN_DIR/output.log" 2>&1']


def grace_lines(settings: SlurmSettings) -> list[str]:
    """Time the requeue signal leaves to finish an epoch: its lead less a minute to requeue and stop."""
    if settings.requeue_signal_s is None:
        return []
    return [f"export {GRACE_ENV}={max(0, settings.requeue_signal_s - REQUEUE_MARGIN_S)}"]


def submit_script(spec: GridSpec, sizes: list[int]) -> str:
    throttle = f"%{spec.slurm.max_parallel}" if spec.slurm.max_parallel else ""
    pretrain, lead, independent, follow = sizes
    lines = [
        "#!/usr/bin/env bash",
        f"# submit grid {spec.name}: {sum(sizes)} runs in up to four array jobs",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
    ]
    start = 0
    after = ""  # every later job waits for the pretraining job to succeed
    if pretrain:
        lines += [
            f"pre=$(sbatch --parsable --array={start}-{start + pretrain - 1}{throttle} grid.sbatch)",
            "pre=${pre%%;*}",
            'echo "pretraining runs (their backbones are loaded by the others): job $pre"',
        ]
        start += pretrain
        after = "afterok:$pre"
    if lead:
        dependency = f" --dependency={after}" if after else ""
        lines += [
            f"lead=$(sbatch --parsable{dependency} --array={start}-{start + lead - 1}{throttle} grid.sbatch)",
            "lead=${lead%%;*}",
            'echo "first run of each feature-store group: job $lead"',
        ]
        start += lead
    if independent:
        dependency = f" --dependency={after}" if after else ""
        lines += [
            f"job=$(sbatch --parsable{dependency} --array={start}-{start + independent - 1}{throttle} "
            "grid.sbatch)",
            'echo "runs without feature stores: job ${job%%;*}"',
        ]
        start += independent
    if follow:
        dependency = ",".join(filter(None, [after, "afterany:$lead" if lead else ""]))
        dependency = f" --dependency={dependency}" if dependency else ""
        lines += [
            f"job=$(sbatch --parsable{dependency} --array={start}-{start + follow - 1}{throttle} "
            "grid.sbatch)",
            'echo "runs reusing the feature stores (after the first of each): job ${job%%;*}"',
        ]
    return "\n".join(lines) + "\n"
