"""The report's uncertainty, from each run's test predictions: per cell a 95% interval over seeds and test
images, and paired comparisons between the methods of a table. The same reading of each predictions file
gives the run's test decisions (``decisions.py``).

All runs tested on the same test set (same ids, labels and patients) share one set of image resamples, so a
resample shows every method the same images (or patients); each run is scored in every resample once, and
intervals and comparisons combine those scores with resampled seeds (``medtransfer.stats.paired``).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..outputs.predictions import Predictions, PredictionsFileError, read_predictions
from ..stats import delong
from ..stats.paired import PairedDifference, paired_difference, seeds_and_images_interval
from ..stats.resampling import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Resamples,
    bootstrap_resamples,
    seed_sequence,
)
from ..task import Task
from .aggregate import Cell, Collection
from .decisions import Decisions, decisions_of, recorded_decision

AGREEMENT = 1e-4  # recomputed and recorded scores farther apart than this: the file is not that run's


@dataclass
class TestSet:
    """What the runs of one test set share, in a fixed sample order (sorted ids)."""

    __test__ = False  # not a pytest class

    key: str
    units: int  # samples, or patients when resampling is grouped
    grouped: bool
    positive: np.ndarray | None  # binary tasks: the positive samples (for DeLong)
    groups: np.ndarray | None


@dataclass
class RunScores:
    """One run's score in every image resample of its test set."""

    test_set: TestSet
    replicates: np.ndarray
    centred: np.ndarray | None  # binary AUROC: DeLong's centred placements, in the test set's order
    auroc: float | None  # binary AUROC: recomputed from the predictions


@dataclass(frozen=True)
class RunToScore:
    """What scoring a run needs from its record (small, so that it travels to worker processes)."""

    path: Path
    split: str
    metric: str
    value: float
    task: dict | None
    predictions: str | None
    thresholds: dict | None  # the decision thresholds results.json records, if any


@dataclass
class Comparison:
    """``first - second`` of a table column's score."""

    first: str
    second: str
    difference: float  # of the means over seeds (results.json values)
    paired: PairedDifference | None  # None: ``reason``
    delong_p: float | None = None  # binary AUROC only
    holm_p: float = float("nan")
    verdict: str = ""
    reason: str = ""


class ReportStatistics:
    """Scores every run with test predictions in the same image resamples of its test set.

    Args:
        collection: the report's runs.
        resamples: image resamples per test set (and seed draws per interval).
        seed: seeds every resample and draw, so the same results give the same report.
        confidence: of the intervals; ``1 - confidence`` is the level of the Holm-corrected verdicts.
        workers: processes that score runs (default: one per CPU core, up to 8, when the predictions are
            large); the scores do not depend on it.
    """

    def __init__(self, collection: Collection, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 confidence: float = DEFAULT_CONFIDENCE, workers: int | None = None) -> None:
        self.resamples = resamples
        self.seed = seed
        self.confidence = confidence
        self.test_sets: dict[str, TestSet] = {}
        self.scores: dict[Path, RunScores] = {}
        self.missing: dict[Path, str] = {}
        self.disagreeing: dict[Path, str] = {}  # runs whose results.json is not what their predictions give
        self.decisions: dict[Path, Decisions] = {}  # runs whose test predictions have labels
        runs = [RunToScore(r.path, r.split, r.metric, r.value, r.results.get("task"),
                           (r.results.get("predictions") or {}).get("test"), recorded_decision(r.results))
                for r in collection.records]
        workers = workers or default_workers(runs)
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                scored = list(pool.map(score_run, runs, [resamples] * len(runs), [seed] * len(runs)))
        else:
            scored = [score_run(run, resamples, seed) for run in runs]
        for run, (result, decisions) in zip(runs, scored, strict=True):
            if decisions is not None:
                self.decisions[run.path] = decisions
            if isinstance(result, str):
                self.missing[run.path] = result
                if isinstance(result, Disagreement):
                    self.disagreeing[run.path] = str(result)
            else:
                result.test_set = self.test_sets.setdefault(result.test_set.key, result.test_set)
                self.scores[run.path] = result

    @property
    def grouped(self) -> bool:
        return any(t.grouped for t in self.test_sets.values())

    # -- per cell --------------------------------------------------------------------------------------------
    def _cell_scores(self, cell: Cell) -> list[RunScores]:
        """The cell's runs' scores, all on one test set; raises ``_NoScores`` saying why not."""
        if not cell.records:
            raise _NoScores("every run failed")
        missing = [self.missing[r.path] for r in cell.records if r.path not in self.scores]
        if missing:
            many = f"{len(missing)} of {cell.n} runs: " if len(missing) < cell.n else ""
            raise _NoScores(many + missing[0])
        scores = [self.scores[r.path] for r in cell.records]
        if len({s.test_set.key for s in scores}) > 1:
            raise _NoScores("its runs were tested on different test sets")
        return scores

    def cell_scores(self, cell: Cell) -> tuple[list[RunScores] | None, str]:
        """The cell's runs' scores on one test set, or None and why there are none."""
        try:
            return self._cell_scores(cell), ""
        except _NoScores as why:
            return None, str(why)

    def cell_interval(self, cell: Cell) -> tuple[tuple[float, float] | None, str]:
        """(interval of the mean score over seeds, or None) and why there is none."""
        try:
            scores = self._cell_scores(cell)
        except _NoScores as why:
            return None, str(why)
        rng = np.random.default_rng(seed_sequence(self.seed, "seeds"))  # the same draws for every cell
        return seeds_and_images_interval(np.stack([s.replicates for s in scores]), rng, self.confidence), ""

    def compare(self, first: Cell, second: Cell, first_label: str, second_label: str) -> Comparison:
        """``first - second``: paired bootstrap over the shared image resamples and the seeds; DeLong's test
        of the seed-averaged AUROC (test images only) for binary AUROC."""
        comparison = Comparison(first_label, second_label, first.mean - second.mean, None)
        try:
            a, b = self._cell_scores(first), self._cell_scores(second)
        except _NoScores as why:
            comparison.reason = str(why)
            return comparison
        if a[0].test_set.key != b[0].test_set.key:
            comparison.reason = "tested on different test sets"
            return comparison
        rng = np.random.default_rng(seed_sequence(self.seed, "pairs"))  # the same draws for every pair
        comparison.paired = paired_difference(
            np.stack([s.replicates for s in a]), np.stack([s.replicates for s in b]),
            np.array(first.values), np.array(second.values), rng,
            paired_seeds=first.seeds == second.seeds, confidence=self.confidence)
        if all(s.centred is not None for s in a + b):
            test_set = a[0].test_set
            contrast = np.mean([s.centred for s in a], axis=0) - np.mean([s.centred for s in b], axis=0)
            difference = np.mean([s.auroc for s in a]) - np.mean([s.auroc for s in b])
            var = delong.variance(contrast, test_set.positive, test_set.groups)
            comparison.delong_p = delong.p_value(float(difference), var)
        return comparison


class _NoScores(Exception):
    """Why a run (or cell) has no bootstrap scores."""


class _Disagrees(_NoScores):
    """The run's test predictions give another score than its results.json records."""


class Disagreement(str):
    """Why a run has no scores when results.json records another score than its own test predictions give (a
    hand edit, or the predictions of another run): its score is not to be trusted, nor its cell ranked."""


PARALLEL_BYTES = 64 << 20  # predictions files this large in all are scored by several processes
_DRAWS: dict[tuple, Resamples] = {}  # per process: the image resamples of the test sets met last
KEPT_DRAWS = 2


def default_workers(runs: list[RunToScore]) -> int:
    size = 0
    for run in runs:
        path = run.path.parent / run.predictions if run.predictions else None
        size += path.stat().st_size if path is not None and path.is_file() else 0
    return min(8, os.cpu_count() or 1) if size > PARALLEL_BYTES else 1


def score_run(run: RunToScore, resamples: int, seed: int) -> tuple[RunScores | str, Decisions | None]:
    """The run's scores (or why it has none: a ``Disagreement`` when its own predictions give another score)
    and its test decisions (None without labelled predictions)."""
    try:
        predictions = _read(run)
    except _NoScores as why:
        return str(why), None
    decisions = decisions_of(predictions, run.thresholds)
    try:
        return _score(run, predictions, resamples, seed), decisions
    except _Disagrees as why:
        return Disagreement(why), decisions
    except _NoScores as why:
        return str(why), decisions


def _read(run: RunToScore) -> Predictions:
    """The run's test predictions in the order of their ids; raises ``_NoScores`` saying why there are
    none."""
    if run.split != "test":
        raise _NoScores(f"intervals come from test predictions, and this table is of {run.split}")
    if not run.predictions:
        raise _NoScores("no test predictions in results.json")
    path = run.path.parent / run.predictions
    if not path.is_file():
        raise _NoScores(f"its test predictions file {run.predictions} is missing")
    try:
        predictions = read_predictions(path, Task.from_dict(run.task))
    except (PredictionsFileError, KeyError, TypeError, ValueError) as err:
        raise _NoScores(f"test predictions unreadable: {err}") from None
    if predictions.labels is None:
        raise _NoScores(f"{run.predictions} has no labels")
    return predictions.reorder(np.argsort(np.asarray(predictions.ids, dtype=object), kind="stable"))


def _score(run: RunToScore, predictions: Predictions, resamples: int, seed: int) -> RunScores:
    """The run's score in every resample of its test set; raises ``_NoScores`` when the predictions cannot
    give it or give another value than results.json."""
    task = predictions.task
    metrics = predictions.metrics()
    if run.metric not in metrics.names():
        raise _NoScores(f"{run.metric} cannot be recomputed from test predictions")
    test_set = _test_set(predictions, task)
    key = (test_set.key, resamples, seed)
    if key not in _DRAWS:
        if len(_DRAWS) >= KEPT_DRAWS:
            del _DRAWS[next(iter(_DRAWS))]
        stream = seed_sequence(seed, "report", test_set.key)
        _DRAWS[key] = with_full_sample(bootstrap_resamples(len(predictions), resamples, stream,
                                                           predictions.groups))
    draws = _DRAWS[key]
    test_set.units, test_set.grouped = draws.units, draws.grouped
    *replicates, estimate = metrics.evaluate(draws, [run.metric])[run.metric]
    if not abs(estimate - run.value) <= AGREEMENT:
        raise _Disagrees(f"{run.predictions} gives {run.metric} {estimate:.6f}, results.json {run.value:.6f}")
    replicates = np.array(replicates)
    centred = auroc = None
    if test_set.positive is not None and run.metric == "auroc":
        parts = delong.components(predictions.probs, test_set.positive)
        centred, auroc = parts.centred[0], float(parts.auroc[0])
    return RunScores(test_set, replicates, centred, auroc)


def with_full_sample(draws: Resamples) -> Resamples:
    """The resamples plus the whole test set as a last column, so one pass scores both."""
    ones = np.ones((draws.n, 1), dtype=draws.blocks[0].dtype)
    largest = max(draws.max_total, draws.n)
    return Resamples([*draws.blocks, ones], draws.n, draws.units, draws.grouped, largest)


def _test_set(predictions, task: Task) -> TestSet:
    digest = hashlib.sha256("\n".join(predictions.ids).encode())
    digest.update(np.ascontiguousarray(predictions.labels, dtype=np.int64).tobytes())
    if predictions.groups is not None:
        digest.update("\n".join(str(g) for g in predictions.groups).encode())
    positive = None
    if task.kind == "binary" and 0 < predictions.labels.sum() < len(predictions):
        positive = predictions.labels == 1
    return TestSet(digest.hexdigest()[:16], len(predictions), False, positive, predictions.groups)
