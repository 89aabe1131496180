"""Cold start of the ``medtransfer`` command: CPU-seconds (user + system, the process and its children) of
each verb's ``--help`` and of the light verbs, beside ``python -c pass`` and ``import torch`` measured in the
same run. Target: ``medtransfer weights --help`` under 3 CPU-seconds, judged on every run of it
(``benchmarks/verdicts.py``: met only when all of them are under, too wide to judge when they straddle it).

    python benchmarks/cold_start.py            # 5 runs of each command, median [min, max]: 2.5 minutes
    python benchmarks/cold_start.py --repeats 9

CPU-seconds, not wall-clock, so a machine shared with other work gives the same figures (within noise). The
commands take turns (each round runs every command once, in reverse order every other round), so load that
changes during the run weighs on all of them alike.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from verdicts import Verdicts, alternating, load_average, repeats_argument, spread

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


def measure(repeats: int) -> dict[str, list[float]]:
    """CPU-seconds of every command, ``repeats`` runs each, taking turns."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    runs = {name: (lambda command=command: cpu_seconds(command)) for name, command in COMMANDS.items()}
    for _, name, seconds in alternating(repeats, runs):
        times[name].append(seconds)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=repeats_argument, default=5, help="runs of each command")
    args = parser.parse_args(argv)
    print(f"cold start, {args.repeats} runs of each command; load average {load_average()}")
    times = measure(args.repeats)
    print(f"{'command':<32} CPU-seconds, median [min, max] over {args.repeats} runs")
    for name, values in times.items():
        print(f"{name:<32} {spread(values, '.2f')}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    weights_help = medians["medtransfer weights --help"]
    print(f"medtransfer weights --help (medians): {weights_help / medians[PYTHON]:.1f}x {PYTHON}, "
          f"{weights_help / medians[TORCH]:.2f}x {TORCH}")
    verdicts = Verdicts()
    verdicts.judge("medtransfer weights --help", times["medtransfer weights --help"], "<", TARGET_S,
                   "CPU-seconds (user + system)", ".2f")
    verdicts.show()
    return 0 if verdicts.all_met else 1


if __name__ == "__main__":
    sys.exit(main())
