"""The intervals a test writes into results.json."""

from __future__ import annotations

import numpy as np
import pytest

from medtransfer.stats.intervals import test_intervals as intervals_of
from medtransfer.stats.resampling import full_sample
from medtransfer.stats.weighted import TestMetrics


def binary(n: int = 400, seed: int = 0) -> TestMetrics:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * labels)))
    return TestMetrics("binary", labels, probs, losses=rng.random(n))


def test_every_metric_gets_a_bootstrap_interval_and_auroc_a_delong_interval():
    metrics = binary()
    names = ["auroc", "acc", "f1", "ece", "brier", "loss"]
    out = intervals_of(metrics, names, resamples=300, seed=4)
    assert (out["method"], out["confidence"], out["resamples"], out["seed"]) == ("percentile bootstrap", 0.95,
                                                                                 300, 4)
    assert (out["unit"], out["units"], out["samples"]) == ("image", 400, 400)
    full = {name: float(v[0]) for name, v in metrics.evaluate(full_sample(400), names).items()}
    for name in names:
        interval = out["metrics"][name]
        assert interval["low"] <= full[name] <= interval["high"], name
        assert interval["std"] > 0
    delong = out["delong"]["auroc"]
    assert delong["low"] < full["auroc"] < delong["high"] and delong["clustered"] is False
    # both estimate the same sampling variation
    assert delong["std"] == pytest.approx(out["metrics"]["auroc"]["std"], rel=0.25)
    assert intervals_of(metrics, names, resamples=300, seed=4) == out  # seeded: the same every time


def test_patients_are_resampled_when_known():
    metrics = binary(300, 1)
    groups = np.repeat(np.arange(100), 3)
    out = intervals_of(metrics, ["auroc"], groups=groups, resamples=200)
    assert (out["unit"], out["units"], out["samples"]) == ("patient", 100, 300)
    assert out["delong"]["auroc"]["clustered"] is True
