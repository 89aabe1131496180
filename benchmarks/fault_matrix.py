"""The fault matrix (issues 17 and 22, docs/reliability.md): inject every fault of tests/faults/cases*.py into
a tiny medtransfer run and print one row per case: the fault, what medtransfer did (success with checked data,
or exit status and message) and whether anything written before was lost or changed.

    python benchmarks/fault_matrix.py            # all 197 cases: about 2 min on 2 quiet CPU cores
    python benchmarks/fault_matrix.py --only kill --keep /tmp/matrix

Exit status 0 when every case passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests package

from tests.faults.harness import STOPPED, run_case  # noqa: E402
from tests.faults.matrix import all_cases  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="only the cases whose group or name contains this text")
    parser.add_argument("--keep", help="folder for the cases' files (kept; default: a temporary folder)")
    args = parser.parse_args(argv)
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    cases = [c for c in all_cases() if not args.only or args.only in c.group or args.only in c.name]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    started = time.perf_counter()
    rows = []
    print(f"{'#':>3}  {'group':<10} {'case':<46} {'pass':<4} {'s':>5}  what medtransfer did | earlier files")
    for index, case in enumerate(cases):
        row = run_case(case, root / f"case{index:02d}")
        rows.append(row)
        earlier = "intact" if not row.damaged else "DAMAGED: " + ", ".join(row.damaged)
        print(
            f"{index:>3}  {case.group:<10} {case.name[:46]:<46} {'ok' if row.passed else 'FAIL':<4} "
            f"{row.seconds:>5.1f}  {row.outcome.did[:150]} | {earlier}",
            flush=True,
        )
    passed = sum(row.passed for row in rows)
    successes = sum(row.outcome.exit_code == 0 for row in rows)
    stopped = sum(row.outcome.exit_code in STOPPED for row in rows)
    print(
        f"\n{len(rows)} cases: {passed} passed, {len(rows) - passed} failed; {successes} ended in success "
        f"with checked data, {sum(row.outcome.exit_code == 2 for row in rows)} in a named error (exit 2), "
        f"{stopped} stopped by a signal (130/143) saying how to go on; earlier files damaged in "
        f"{sum(bool(row.damaged) for row in rows)}; {time.perf_counter() - started:.0f} s"
    )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
