"""The label-efficiency section: interpolation in log(labels) and censoring on hand-made curves, the metric's
direction, and on hand-made runs with test predictions the factor and its interval against a direct numpy
computation from the same resamples; no baseline or one fraction gives no section, runs without predictions
a factor without an interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medtransfer.grid.aggregate import cells, collect
from medtransfer.grid.label_efficiency import (
    ABOVE,
    BELOW,
    Needed,
    factor_text,
    label_efficiency_section,
    labels_needed,
)
from medtransfer.grid.uncertainty import ReportStatistics
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.results import write_json_atomic
from medtransfer.stats.resampling import full_sample, seed_sequence
from medtransfer.task import Task

from .bench_helpers import results_document

BINARY = Task("binary", ("normal", "lesion"))
N = 240  # test images
FRACTIONS = {0.1: 30, 0.3: 90, 1.0: 300}  # label fraction: training samples
SEEDS = 3
RESAMPLES = 200
STRENGTH = {  # per backbone and fraction: how well the model separates the classes
    "supervised": {0.1: 0.6, 0.3: 1.2, 1.0: 2.0},
    "copy": {0.1: 0.6, 0.3: 1.2, 1.0: 2.0},  # the baseline's very predictions
    "strong": {0.1: 1.5, 0.3: 2.2, 1.0: 3.5},
}


# -- the pure functions on hand-made curves ---------------------------------------------------------
COUNTS = [10.0, 100.0, 1000.0]


def test_interpolation_is_linear_in_log_labels():
    needed = labels_needed(COUNTS, [0.6, 0.7, 0.8], 0.75, higher=True)
    assert needed.censored == "" and needed.labels == pytest.approx(math.sqrt(100 * 1000))
    quarter = labels_needed(COUNTS, [0.6, 0.7, 0.8], 0.625, higher=True)
    assert quarter.labels == pytest.approx(10 * 10**0.25)
    assert labels_needed(COUNTS, [0.6, 0.7, 0.8], 0.7, higher=True) == Needed(pytest.approx(100.0))


def test_censoring_on_either_side():
    assert labels_needed(COUNTS, [0.6, 0.7, 0.8], 0.9, higher=True) == Needed(1000.0, ABOVE)
    assert labels_needed(COUNTS, [0.6, 0.7, 0.8], 0.55, higher=True) == Needed(10.0, BELOW)
    assert labels_needed(COUNTS, [0.6, 0.7, 0.8], 0.6, higher=True) == Needed(10.0, BELOW)
    assert factor_text(1000.0 / 81, ABOVE) == "> 12.3x" and factor_text(10 / 40, BELOW) == "<= 0.25x"
    assert factor_text(2.0, "") == "2x"


def test_the_first_crossing_from_the_fewest_labels_counts():
    needed = labels_needed([10.0, 100.0, 1000.0, 10000.0], [0.6, 0.8, 0.7, 0.9], 0.75, higher=True)
    assert needed.labels == pytest.approx(10 * 10**0.75)


def test_a_loss_is_better_lower():
    needed = labels_needed(COUNTS, [0.5, 0.4, 0.3], 0.35, higher=False)
    assert needed.censored == "" and needed.labels == pytest.approx(math.sqrt(100 * 1000))
    assert labels_needed(COUNTS, [0.5, 0.4, 0.3], 0.2, higher=False) == Needed(1000.0, ABOVE)
    assert labels_needed(COUNTS, [0.5, 0.4, 0.3], 0.6, higher=False) == Needed(10.0, BELOW)


def test_an_undefined_mean_gives_no_labels():
    assert math.isnan(labels_needed(COUNTS, [0.6, math.nan, 0.8], 0.7, higher=True).labels)


# -- hand-made runs -----------------------------------------------------------------------------------
def predictions(strength: float, seed: int) -> Predictions:
    """A model of ``strength`` on the one fixed test set, with each image's loss."""
    labels = np.random.default_rng(100).integers(0, 2, N)
    noise = np.random.default_rng(seed).normal(size=N)
    probs = (1 / (1 + np.exp(-(strength * (labels - 0.5) + noise)))).astype(np.float32)
    losses = -np.log(np.where(labels == 1, probs, 1 - probs)).astype(np.float32)
    return Predictions(BINARY, [f"img{i:04d}" for i in range(N)], probs, labels, losses)


def write_run(folder, backbone: str, fraction: float, seed: int, with_predictions: bool = True) -> None:
    """A results.json of a linear probe trained on ``fraction`` of the labels, scored from its predictions."""
    made = predictions(STRENGTH[backbone][fraction], seed + (0 if backbone != "strong" else 50))
    made.write_csv(folder / "test_predictions.csv")
    metrics = made.metrics()
    scores = {name: float(metrics.evaluate(full_sample(N), [name])[name][0]) for name in ("auroc", "loss")}
    config = {"seed_everything": seed,
              "model": {"class_path": "medtransfer.lightning_modules.LinearProbe",
                        "init_args": {"backbone": backbone}},
              "data": {"class_path": "medtransfer.datamodules.SyntheticMedical",
                       "init_args": {"train_fraction": fraction, "fraction_seed": seed}}}
    data = {"name": "SyntheticMedical", "train_fraction": fraction,
            "num_samples": {"train": FRACTIONS[fraction], "val": 100, "test": N}}
    document = results_document(config, scores, seed=seed, backbones=[backbone], task=BINARY.to_dict(),
                                data=data,
                                predictions={"test": "test_predictions.csv"} if with_predictions else None)
    write_json_atomic(folder / "results.json", document)


def write_runs(root, backbones=("supervised", "copy", "strong"), fractions=FRACTIONS, with_predictions=True):
    for backbone in backbones:
        for fraction in fractions:
            for seed in range(SEEDS):
                write_run(root / f"{backbone}-{fraction}-{seed}", backbone, fraction, seed, with_predictions)
    return root


def section_of(root, metric: str | None = None, baseline: str | None = "supervised"):
    collection = collect(root, metric=metric)
    all_cells = cells(collection)
    statistics = ReportStatistics(collection, resamples=RESAMPLES, workers=1)
    for cell in all_cells:
        cell.interval, cell.interval_note = statistics.cell_interval(cell)
    return label_efficiency_section(collection, all_cells, statistics, baseline), statistics, all_cells


def direct_factors(statistics, all_cells, backbone: str, fraction: float, higher: bool) -> np.ndarray:
    """The factor in every resample, straight from the runs' replicates: seeds drawn as the paired
    comparisons draw them (every cell here has the same seeds, so one draw serves all), the crossing found by
    np.interp."""
    def replicates(name, f):
        cell = next(c for c in all_cells if c.labels["backbone"] == name and c.fraction == f)
        return np.stack([statistics.scores[r.path].replicates for r in cell.records])

    rng = np.random.default_rng(seed_sequence(statistics.seed, "pairs"))
    draws = rng.integers(0, SEEDS, (RESAMPLES, SEEDS))
    columns = np.arange(RESAMPLES)[:, None]
    target = replicates(backbone, fraction)[draws, columns].mean(axis=1)
    base = np.stack([replicates("supervised", f)[draws, columns].mean(axis=1) for f in FRACTIONS])
    logs = np.log(list(FRACTIONS.values()))
    sign = 1 if higher else -1
    out = []
    for b in range(RESAMPLES):
        reached = sign * (base[:, b] - target[b]) >= 0
        if not reached.any():
            needed = math.exp(logs[-1])
        elif reached[0]:
            needed = math.exp(logs[0])
        else:
            i = int(np.argmax(reached))
            xs, ys = sign * base[i - 1 : i + 1, b], logs[i - 1 : i + 1]
            needed = math.exp(np.interp(sign * target[b], xs, ys))
        out.append(needed / FRACTIONS[fraction])
    return np.array(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("metric", ["auroc", "loss"])
def test_the_factor_and_its_interval_agree_with_a_direct_computation(runs, metric):
    section, statistics, all_cells = section_of(runs, metric)
    frame = section.tables["label_efficiency"]
    higher = metric != "loss"
    row = frame[(frame.backbone == "strong") & (frame.fraction == 0.1)].iloc[0]
    base = {f: next(c.mean for c in all_cells if c.labels["backbone"] == "supervised" and c.fraction == f)
            for f in FRACTIONS}
    strong = next(c.mean for c in all_cells if c.labels["backbone"] == "strong" and c.fraction == 0.1)
    sign = 1 if higher else -1
    assert sign * (base[0.1] - strong) < 0 < sign * (base[1.0] - strong)  # a crossing inside the curve
    factors = direct_factors(statistics, all_cells, "strong", 0.1, higher)
    low, high = np.quantile(factors, [0.025, 0.975])
    assert row.factor > 1 and row.censored == "" and row.labels == 30
    assert row.factor_low == pytest.approx(low) and row.factor_high == pytest.approx(high)
    assert row.factor_low < row.factor < row.factor_high


def test_a_score_beyond_the_baselines_best_is_censored(runs):
    section, statistics, all_cells = section_of(runs)
    frame = section.tables["label_efficiency"]
    row = frame[(frame.backbone == "strong") & (frame.fraction == 1.0)].iloc[0]
    assert row.censored == ABOVE and row.factor == 1.0 and row.baseline_labels_needed == 300
    assert row.low_censored == row.high_censored == ABOVE
    factors = direct_factors(statistics, all_cells, "strong", 1.0, True)
    assert row.factor_low == pytest.approx(np.quantile(factors, 0.025))
    assert "| strong | SyntheticMedical | 100% (300) | " in "\n".join(section.markdown)
    assert "> 300 | > 1x [" in "\n".join(section.markdown)


def test_the_baselines_own_predictions_save_nothing(runs):
    frame = section_of(runs)[0].tables["label_efficiency"]
    copy = frame[frame.backbone == "copy"].set_index("fraction")
    assert copy.factor.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert copy.loc[0.1, "censored"] == BELOW and copy.loc[0.3, "censored"] == ""
    assert copy.factor_low.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert copy.factor_high.tolist() == pytest.approx([1.0, 1.0, 1.0])
    # reached exactly at the last measured point in every resample: on the bound, yet not censored
    assert copy.loc[1.0, "censored"] == copy.loc[1.0, "low_censored"] == copy.loc[1.0, "high_censored"] == ""
    assert "supervised" not in set(frame.backbone)


def test_the_section_has_a_table_a_figure_and_a_caption(runs):
    section = section_of(runs)[0]
    text = "\n".join(section.markdown)
    assert "### LinearProbe: labels saved against supervised" in text
    assert "| backbone | dataset | fraction (labels) | score | labels the baseline needs |" in text
    assert "| auroc " in text
    assert "| copy | SyntheticMedical | 10% (30) | " in text
    assert "![plots/label_efficiency_LinearProbe.png](plots/label_efficiency_LinearProbe.png)" in text
    assert set(section.figures) == {"label_efficiency_LinearProbe.png"}
    assert section.figures["label_efficiency_LinearProbe.png"].startswith(b"\x89PNG")
    frame = section.tables["label_efficiency"]
    assert list(frame.columns[:11]) == ["dataset", "protocol", "backbone", "fraction", "labels", "score",
                                        "baseline_labels_needed", "factor", "factor_low", "factor_high",
                                        "censored"]
    assert "supervised" in section.captions["label_efficiency"]


def test_no_baseline_or_one_fraction_gives_no_section(runs, tmp_path):
    assert section_of(runs, baseline="absent")[0] is None
    one = write_runs(tmp_path / "one", fractions={1.0: 300})
    assert section_of(one)[0] is None


def test_without_predictions_the_factor_has_no_interval_and_says_why(tmp_path):
    root = write_runs(tmp_path, backbones=("supervised", "strong"), with_predictions=False)
    section = section_of(root)[0]
    frame = section.tables["label_efficiency"]
    row = frame[frame.fraction == 0.1].iloc[0]
    assert row.factor > 1 and math.isnan(row.factor_low) and math.isnan(row.factor_high)
    assert row.note == "strong at fraction 0.1: no test predictions in results.json"
    assert "(no interval: strong at fraction 0.1: no test predictions in results.json)" in "\n".join(
        section.markdown)
