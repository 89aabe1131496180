"""Targets judged on repeated measurements, so that a benchmark's verdict holds from run to run.

One measurement of a speed is partly luck: the machine's other work, the host under a virtual machine and
the allocator all move it by several percent, so a verdict taken from it can flip between two runs. A
benchmark here measures each target as several independent repeats (baseline and candidate alternating within
each repeat, so that load drifting over the run weighs on both) and judges an interval, not one number:

- **met** when the whole interval is on the good side of the target,
- **MISSED** when the whole interval is on the bad side,
- **too wide to judge** when it straddles the target: the noise, not the code, decides, and the line says so.

The interval is ``median M [low, high]``: the distribution-free confidence interval of the median of the
repeats (the value they scatter around), whatever the distribution of the noise. Of the n repeats sorted,
it runs from the k-th to the k-th from the top, for the largest k that keeps its coverage, 1 - 2 P(Binomial(n,
1/2) < k), at least 95%. Up to 8 repeats that is [min, max] (whose coverage, printed, is lower for few
repeats: 75% for 3, 94% for 5); with more, the extreme repeats drop out, so one hiccup of the machine cannot
decide a verdict alone. A value that is the same in every run (a seeded metric difference, a numerical
tolerance) is judged as one measurement.
"""

from __future__ import annotations

import argparse
import math
import operator
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
RELATIONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
VERDICT_WIDTH = len("too wide to judge")
CONFIDENCE = 0.95


def repeats_argument(text: str) -> int:
    """``--repeats`` of a timed target: a whole number of at least 2, since one measurement has no interval
    and its verdict would be luck (argparse shows the message and exits with status 2)."""
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at least 2 (one measurement has no interval to judge), got {text!r}")
    return int(text)


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


def coverage(n: int, k: int) -> float:
    """The probability that the k-th smallest and k-th largest of n independent repeats hold their median."""
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n


def median_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(low, high, coverage)``: the widest-trimmed order statistics whose coverage is still CONFIDENCE, or
    ``[min, max]`` where the repeats are too few to reach it."""
    ordered, k = sorted(values), 1
    while k < len(ordered) // 2 and coverage(len(ordered), k + 1) >= CONFIDENCE:
        k += 1
    return ordered[k - 1], ordered[-k], coverage(len(ordered), k)


def spread(values: Sequence[float], digits: str = ".3f") -> str:
    """``median M [low, high]`` of the repeats (``median_interval``; a single value alone)."""
    if len(values) == 1:
        return f"{values[0]:{digits}}"
    low, high, _ = median_interval(values)
    text = f"median {statistics.median(values):{digits}} [{low:{digits}}, {high:{digits}}]"
    if (low, high) != (min(values), max(values)):
        text += f" (all: {min(values):{digits}} to {max(values):{digits}})"
    return text


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
        low, high, _ = median_interval(self.values)
        good = [RELATIONS[self.relation](end, self.bound) for end in (low, high)]
        return "met" if all(good) else "MISSED" if not any(good) else "too wide to judge"

    def line(self) -> str:
        repeats = (f" over {len(self.values)} repeats ({median_interval(self.values)[2]:.0%} interval)"
                   if len(self.values) > 1 else "")
        text = (f"{self.verdict:<{VERDICT_WIDTH}}  {self.name}, {self.judged_on}: "
                f"{spread(self.values, self.digits)}{repeats}, target {self.relation} {self.bound:g}")
        if self.verdict == "too wide to judge":
            text += (": the interval straddles the target; rerun with more repeats, or on a quieter machine "
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
        print(f"\n{heading}: met or MISSED only when the whole interval of the median is on one side "
              f"(benchmarks/verdicts.py); load average at the end {load_average()} on {os.cpu_count()} CPUs")
        for judged in self.judged:
            print(f"  {judged.line()}")

    @property
    def all_met(self) -> bool:
        return all(judged.verdict == "met" for judged in self.judged)
