"""``medtransfer benchmark``: run a grid of experiments (here or as a SLURM array) and report its tables.

It takes no fit options itself: each run's --config files and --data.*/--model.*/--trainer.* overrides come
from the grid file (its base configs and axes, see configs/benchmark/)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING

from ..runtime.logs import configure_logging
from ..runtime.signals import RunStopped
from ..utils.flags import VerbParser, underscore_flags

if TYPE_CHECKING:
    from ..grid.spec import LocalSettings

# The grid (and with it Lightning's argument parser) is imported when a verb runs: ``--help`` answers at once.

EPILOG = """examples:
  medtransfer benchmark --config configs/benchmark/smoke.yaml --dry_run   # the plan: runs, what is done
  medtransfer benchmark --config configs/benchmark/smoke.yaml             # run what is not done, then report
  medtransfer benchmark --config configs/benchmark/paper.yaml --parallel 4 --devices 0,1,2,3
  medtransfer benchmark --config configs/benchmark/paper.yaml --launcher slurm   # writes an sbatch array
  medtransfer benchmark --report runs/benchmark/paper                     # tables and plots of any results

Flags once spelled with dashes (--dry-run, --output-dir, --devices-per-run) still work, with a warning.
"""
RENAMED = ("--dry_run", "--output_dir", "--devices_per_run")  # the dashed spellings still work


def parser() -> argparse.ArgumentParser:
    p = VerbParser(
        prog="medtransfer benchmark",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="grid file (see configs/benchmark/)")
    p.add_argument(
        "--dry_run", action="store_true", help="check every run's config and print the plan; run nothing"
    )
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: run here; slurm: write <output_dir>/slurm/{grid.sbatch,submit.sh} to submit",
    )
    p.add_argument("--output_dir", help="where runs, feature stores and the report go (default: the grid's)")
    p.add_argument("--only", metavar="GLOB", help="only the runs whose id matches, e.g. 'pcam-linear-*'")
    p.add_argument("--parallel", type=int, help="local: runs at once (default: the grid's local.parallel)")
    p.add_argument("--devices", help="local: GPU ids to share out, e.g. 0,1,2,3")
    p.add_argument("--devices_per_run", type=int, help="local: GPUs each run gets (DDP when more than one)")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="write results.csv, summary.md and plots for every results.json under DIR (no grid file needed)",
    )
    p.add_argument("--out", help="--report: output folder (default DIR/report)")
    p.add_argument("--metric", help="--report: metric to tabulate (default: each task's primary metric)")
    p.add_argument("--split", help="--report: split to tabulate (default: test)")
    p.add_argument(
        "--baseline",
        help="--report: backbone label the others are compared with "
        "(default: the grid's report.baseline, else one named supervised/*.tv_in1k)",
    )
    p.add_argument("--all_pairs", action="store_true", help="--report: compare every pair of backbones too")
    p.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="--report: bootstrap resamples of each test set, for intervals and comparisons (default 1000)",
    )
    return p


def main(argv: list[str]) -> int:
    configure_logging()
    args = parser().parse_args(underscore_flags(argv, RENAMED, "medtransfer benchmark"))
    if bool(args.config) == bool(args.report):
        parser().print_usage(sys.stderr)
        print("medtransfer benchmark: error: give either --config GRID.yaml or --report DIR", file=sys.stderr)
        return 2
    from ..grid.resolve import InvalidRunError
    from ..grid.spec import GridSpecError
    from ..grid.state import GridStateError

    try:
        if args.report:
            return report(args)
        return grid(args)
    except (GridSpecError, InvalidRunError, GridStateError, FileNotFoundError, ValueError) as err:
        print(f"medtransfer benchmark: error: {err}", file=sys.stderr)
        return 2
    except RunStopped as stop:  # Ctrl-C or SIGTERM (runtime.signals): the local launcher stopped its runs
        name = signal.Signals(stop.signum).name
        print(f"medtransfer benchmark: stopped by {name}; finished runs are kept, interrupted ones continue "
              "from their last.ckpt with the same command", file=sys.stderr)
        return stop.status


def report(args: argparse.Namespace) -> int:
    from ..grid.report import write_report

    if args.resamples < 1:
        raise ValueError(f"--resamples must be at least 1, got {args.resamples}")
    result = write_report(
        args.report, out=args.out, metric=args.metric, split=args.split, baseline=args.baseline,
        resamples=args.resamples, all_pairs=args.all_pairs,
    )
    collection = result.collection
    print(
        f"{len(collection.records)} runs from {collection.files} results.json files; "
        f"{len(collection.failed)} failed (listed in the report, never scored); "
        f"{len(collection.excluded)} left out"
    )
    for excluded in collection.excluded:
        print(f"  left out {excluded.path}: {excluded.reason}")
    print(f"report: {result.summary}" + ("" if result.written else " (unchanged)"))
    return 0


def grid(args: argparse.Namespace) -> int:
    from ..grid.runner import describe_plan, make_plan, run_plan

    plan = make_plan(args.config, output_dir=args.output_dir, only=args.only)
    print(describe_plan(plan, show_runs=args.dry_run))
    if args.dry_run:
        return 0
    return run_plan(plan, launcher=args.launcher, local=local_settings(args, plan.spec.local))


def local_settings(args: argparse.Namespace, default: LocalSettings) -> LocalSettings:
    from ..grid.spec import LocalSettings

    devices = default.devices
    if args.devices:
        try:
            devices = tuple(int(d) for d in args.devices.split(","))
        except ValueError:
            raise ValueError(f"--devices expects GPU ids like 0,1,2,3, got {args.devices!r}") from None
    per_run = args.devices_per_run or default.devices_per_run
    parallel = args.parallel or (
        max(default.parallel, len(devices) // per_run) if devices else default.parallel
    )
    settings = LocalSettings(parallel=parallel, devices=devices, devices_per_run=per_run)
    if settings.parallel < 1 or settings.devices_per_run < 1:
        raise ValueError("--parallel and --devices_per_run must be at least 1")
    return settings


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
