"""The whole fault matrix: every module's cases, in the order ``benchmarks/fault_matrix.py`` prints them."""

from __future__ import annotations

from . import cases, cases_config, cases_labels, cases_outputs, cases_reports, cases_runs
from .harness import Case


def all_cases() -> list[Case]:
    return [*cases.storage_cases(), *cases_labels.cases(), *cases_config.cases(), *cases_runs.cases(),
            *cases_outputs.cases(), *cases_reports.cases()]
