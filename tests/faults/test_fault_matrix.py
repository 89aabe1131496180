"""The fault matrix (issues 17 and 22) in the suite: every case cheap enough to run in-process (and a few in
a subprocess: a SIGKILL, a SIGTERM during fit and during test) must end in success with checked data, a named
error with exit status 2, or, stopped by a signal, 130/143 with how to go on; losing nothing written before.
``benchmarks/fault_matrix.py`` runs every case and prints the table."""

from __future__ import annotations

import pytest

from .harness import run_case
from .matrix import all_cases

SUITE = [case for case in all_cases() if case.in_suite]


@pytest.fixture(scope="module")
def matrix_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.mark.parametrize("case", SUITE, ids=[case.name for case in SUITE])
def test_fault_case(case, matrix_dir):
    row = run_case(case, matrix_dir / f"case{SUITE.index(case):02d}")
    assert row.passed, f"{case.fault}: {row.outcome.did}; damaged: {row.damaged}"
