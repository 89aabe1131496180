"""Cold start of the ``medtransfer`` command: CPU-seconds (user + system, the process and its children) of
each verb's ``--help`` and of the light verbs, beside ``python -c pass`` and ``import torch`` measured in the
same run. Target: ``medtransfer weights --help`` under 3 CPU-seconds.

    python benchmarks/cold_start.py            # 5 runs of each command: median [min, max]
    python benchmarks/cold_start.py --repeats 9

CPU-seconds, not wall-clock, so a machine shared with other work gives the same figures (within noise).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 3.0
PYTHON, TORCH = "python -c pass", "python -c 'import torch'"
COMMANDS = {
    PYTHON: [sys.executable, "-c", "pass"],
    TORCH: [sys.executable, "-c", "import torch"],
    "medtransfer --help": [sys.executable, "-m", "medtransfer.cli", "--help"],
    "medtransfer weights --help": [sys.executable, "-m", "medtransfer.cli", "weights", "--help"],
    "medtransfer prepare --help": [sys.executable, "-m", "medtransfer.cli", "prepare", "--help"],
    "medtransfer export --help": [sys.executable, "-m", "medtransfer.cli", "export", "--help"],
    "medtransfer benchmark --help": [sys.executable, "-m", "medtransfer.cli", "benchmark", "--help"],
    "medtransfer extract --help": [sys.executable, "-m", "medtransfer.cli", "extract", "--help"],
    "medtransfer weights list": [sys.executable, "-m", "medtransfer.cli", "weights", "list"],
    "medtransfer fit --help": [sys.executable, "-m", "medtransfer.cli", "fit", "--help"],
}


def cpu_seconds(command: list[str]) -> float:
    """User + system CPU time of one run of ``command`` (and every process it started)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command")
    args = parser.parse_args(argv)
    print(f"{'command':<32} {'CPU-s median':>12}  [min, max] over {args.repeats} runs")
    medians = {}
    for name, command in COMMANDS.items():
        times = [cpu_seconds(command) for _ in range(args.repeats)]
        medians[name] = statistics.median(times)
        print(f"{name:<32} {medians[name]:>12.2f}  [{min(times):.2f}, {max(times):.2f}]", flush=True)
    weights_help = medians["medtransfer weights --help"]
    verdict = "met" if weights_help < TARGET_S else "MISSED"
    print(f"\nmedtransfer weights --help: {weights_help:.2f} CPU-s (target < {TARGET_S:.0f}): {verdict}; "
          f"{weights_help / medians[PYTHON]:.1f}x {PYTHON}, {weights_help / medians[TORCH]:.2f}x {TORCH}")
    return 0 if verdict == "met" else 1


if __name__ == "__main__":
    sys.exit(main())
