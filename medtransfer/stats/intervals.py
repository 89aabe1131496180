"""The confidence intervals of one test, as results.json stores them under ``intervals.test``."""

from __future__ import annotations

import numpy as np

from . import delong
from .resampling import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    bootstrap_resamples,
    percentile_interval,
    seed_sequence,
)
from .weighted import TestMetrics

STREAM = "test-intervals"  # names this use of the seed, apart from the benchmark report's


def test_intervals(
    metrics: TestMetrics,
    names: list[str],
    groups: np.ndarray | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict:
    """Percentile bootstrap intervals of ``names`` over the test images, and DeLong's for binary AUROC.

    Args:
        metrics: the run's test predictions.
        names: the metrics to give intervals.
        groups: one patient id per test image: resample patients, not images (DeLong's interval is then
            clustered by patient likewise).
        resamples: bootstrap resamples.
        seed: the resamples' seed.
        confidence: the intervals' level.

    Returns:
        results.json's ``intervals`` of the test split.
    """
    draws = bootstrap_resamples(metrics.n, resamples, seed_sequence(seed, STREAM), groups)
    replicates = metrics.evaluate(draws, names)
    out: dict = {
        "method": "percentile bootstrap",
        "confidence": confidence,
        "resamples": resamples,
        "seed": seed,
        "unit": "patient" if draws.grouped else "image",
        "units": draws.units,
        "samples": metrics.n,
        "metrics": {},
    }
    for name, values in replicates.items():
        low, high = percentile_interval(values, confidence)
        defined = values[~np.isnan(values)]
        out["metrics"][name] = {
            "low": low,
            "high": high,
            "std": float(defined.std(ddof=1)) if len(defined) > 1 else float("nan"),
        }
        if len(defined) < len(values):
            out["metrics"][name]["undefined_resamples"] = int(len(values) - len(defined))
    positive = metrics.labels == 1
    if metrics.kind == "binary" and "auroc" in names and 0 < positive.sum() < metrics.n:
        parts = delong.components(metrics.probs, positive)
        var = delong.variance(parts.centred[0], positive, groups)
        low, high = delong.interval(float(parts.auroc[0]), var, confidence)
        out["delong"] = {"auroc": {"low": low, "high": high, "std": float(np.sqrt(var)),
                                   "clustered": groups is not None}}
    return out
