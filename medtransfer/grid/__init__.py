"""Benchmark grids: a spec crossing datasets, backbones, protocols, label fractions and seeds expands into
``medtransfer fit`` runs (local or SLURM, resumable by config fingerprint); the report turns any folder of
results.json files into results.csv, summary.md (mean and std over seeds, 95% bootstrap CIs over seeds x test
images, paired comparisons with Holm verdicts, calibration) and plots."""

from .report import write_report
from .runner import describe_plan, make_plan, run_plan

__all__ = ["describe_plan", "make_plan", "run_plan", "write_report"]
