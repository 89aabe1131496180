"""Targets judged on repeated measurements, so that a benchmark's verdict holds from run to run.

One measurement of a speed is partly luck: the machine's other work, the frequency governor and the
allocator all move it by several percent, so a verdict taken from it can flip between two runs. A benchmark
here measures each target as several independent repeats (baseline and candidate alternating within each
repeat, so that load drifting over the run weighs on both) and judges the spread of the repeats, not one
number:

- **met** when every repeat is on the good side of the target,
- **MISSED** when every repeat is on the bad side,
- **too wide to judge** when the repeats straddle it: the spread, not the code, decides, and the line says so.

Each judged line shows the median and [min, max] of the repeats. For n independent repeats, [min, max] holds
the true median with probability 1 - 2^(1 - n) whatever the distribution of the noise (75% for 3, 94% for 5),
so a verdict needs the whole interval, not the median alone, on one side. A value that is the same in every
run (a seeded metric difference, a numerical tolerance) is judged as one measurement: its spread is nil.
"""

from __future__ import annotations

import operator
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
RELATIONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
VERDICT_WIDTH = len("too wide to judge")


def alternating(repeats: int, measures: dict[str, Callable[[], T]]) -> Iterator[tuple[int, str, T]]:
    """``(repeat, name, result)`` of every measure once per repeat, in reverse order every other repeat: the
    first and last place of a repeat (a cold cache, a neighbour starting up) fall on each side alike."""
    for repeat in range(repeats):
        names = list(measures) if repeat % 2 == 0 else list(reversed(measures))
        for name in names:
            yield repeat, name, measures[name]()


def ratios(candidate: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Candidate / baseline within each repeat: the pairs measured back to back share the machine's state."""
    return [c / b for c, b in zip(candidate, baseline, strict=True)]


def load_average() -> str:
    """uptime's 1, 5 and 15-minute load averages: above the core count, the repeats compete for the CPU."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def spread(values: Sequence[float], digits: str = ".3f") -> str:
    """``median M [min, max]`` of the repeats (a single value alone)."""
    if len(values) == 1:
        return f"{values[0]:{digits}}"
    median = statistics.median(values)
    return f"median {median:{digits}} [{min(values):{digits}}, {max(values):{digits}}]"


@dataclass(frozen=True)
class Judged:
    """A target's repeats against its bound, and the verdict they allow."""

    name: str
    values: tuple[float, ...]
    relation: str  # one of RELATIONS: the good side of ``bound``
    bound: float
    judged_on: str  # what the values are, e.g. "images per CPU-second": wall clock or CPU time
    digits: str = ".3f"

    @property
    def verdict(self) -> str:
        good = [RELATIONS[self.relation](value, self.bound) for value in self.values]
        return "met" if all(good) else "MISSED" if not any(good) else "too wide to judge"

    def line(self) -> str:
        repeats = f" over {len(self.values)} repeats" if len(self.values) > 1 else ""
        text = (f"{self.verdict:<{VERDICT_WIDTH}}  {self.name}, {self.judged_on}: "
                f"{spread(self.values, self.digits)}{repeats} (target {self.relation} {self.bound:g})")
        if self.verdict == "too wide to judge":
            text += ("; the repeats straddle the target: rerun with more repeats, or on a quieter machine "
                     "(uptime's load average under the core count)")
        return text


class Verdicts:
    """The targets of one benchmark run, printed together at its end."""

    def __init__(self) -> None:
        self.judged: list[Judged] = []

    def judge(self, name: str, values: Sequence[float], relation: str, bound: float, judged_on: str,
              digits: str = ".3f") -> Judged:
        judged = Judged(name, tuple(values), relation, bound, judged_on, digits)
        self.judged.append(judged)
        return judged

    def show(self, heading: str = "targets") -> None:
        print(f"\n{heading}: met or MISSED only when every repeat is on one side (benchmarks/verdicts.py); "
              f"load average at the end {load_average()} on {os.cpu_count()} CPUs")
        for judged in self.judged:
            print(f"  {judged.line()}")

    @property
    def all_met(self) -> bool:
        return all(judged.verdict == "met" for judged in self.judged)
