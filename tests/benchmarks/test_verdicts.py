"""The verdict rule of every speed benchmark (benchmarks/verdicts.py): met or MISSED only when the whole
distribution-free interval of the median of the repeats is on one side of the target."""

from __future__ import annotations

import argparse
import math

import pytest

from .script_loading import load_script


@pytest.fixture(scope="module")
def verdicts():
    return load_script("verdicts.py", "benchmark_verdicts")


def test_coverage_is_the_binomial_probability_of_holding_the_median(verdicts):
    assert verdicts.coverage(3, 1) == pytest.approx(0.75)
    assert verdicts.coverage(5, 1) == pytest.approx(1 - 2 / 32)
    # by brute force: P(k-th smallest <= median <= k-th largest) = 1 - 2 P(Binomial(n, 1/2) < k)
    n, k = 30, 10
    below = sum(math.comb(n, i) for i in range(k)) / 2**n
    assert verdicts.coverage(n, k) == pytest.approx(1 - 2 * below)


def test_few_repeats_give_min_and_max_and_many_drop_the_extremes(verdicts):
    assert verdicts.median_interval([3.0, 1.0, 2.0])[:2] == (1.0, 3.0)
    values = [1.0, *[0.98 + 0.001 * i for i in range(28)], 0.2]  # one hiccup at each end
    low, high, cover = verdicts.median_interval(values)
    assert 0.2 < low and high < 1.0
    assert cover >= verdicts.CONFIDENCE
    ordered = sorted(values)
    k = ordered.index(low) + 1
    assert verdicts.coverage(len(values), k + 1) < verdicts.CONFIDENCE  # the widest trim that keeps 95%


@pytest.mark.parametrize(("values", "expected"), [
    ([0.97, 0.99, 1.01], "met"),
    ([0.90, 0.91, 0.93], "MISSED"),
    ([0.93, 0.96, 0.99], "too wide to judge"),
    ([0.96], "met"),
])
def test_verdict_needs_the_whole_interval_on_one_side(verdicts, values, expected):
    judged = verdicts.Verdicts().judge("ratio", values, ">=", 0.95, "images per CPU-second")
    assert judged.verdict == expected
    assert judged.line().startswith(expected)
    if expected == "too wide to judge":
        assert "rerun with more repeats" in judged.line()


@pytest.mark.parametrize("text", ["1", "0", "-3", "2.5", "many"])
def test_repeats_of_a_timed_target_are_at_least_two(verdicts, text):
    """One measurement has no interval: a --repeats 1 run would print met or MISSED by luck."""
    with pytest.raises(argparse.ArgumentTypeError, match="at least 2"):
        verdicts.repeats_argument(text)
    assert verdicts.repeats_argument("2") == 2
