"""Label efficiency: each backbone's score against the number of training labels, and how many labels the
baseline backbone needs to match it.

A cell's label count is the training samples its runs used (results.json ``data.num_samples.train``, mean over
seeds, rounded). For a backbone at a label fraction, the labels the baseline needs to reach its score are read
off the baseline's curve (its cell means at its measured label counts, same dataset and table), interpolated
linearly in log(labels) at the first crossing from the smallest count upwards; the labels-saved factor is that
number over the backbone's own. A baseline that never reaches the score within its counts gives a factor
censored from below (``> N_max / n``), one whose smallest count already reaches it a factor censored from
above (``<= n_min / n``).

The factor's interval comes from the same resamples as the report's paired comparisons: each run's scores in
the shared image resamples of its test set (``uncertainty.ReportStatistics``) and seeds drawn as
``stats.paired.paired_difference`` draws them; per resample the factor of the resampled cell means, censored
resamples at their bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..stats.paired import mean_over_drawn_seeds, seed_draws
from ..stats.resampling import percentile_interval, seed_sequence
from .aggregate import TABLE_AXES, Cell, Collection
from .plots import draw_intervals, png_bytes
from .sections import Section
from .tables import (
    Table,
    build_tables,
    choose_baseline,
    fraction_text,
    higher_is_better,
    marks_of,
    points,
    slug,
    training_images,
)
from .uncertainty import ReportStatistics

TITLE = "Label efficiency"
ABOVE, BELOW = ">", "<="  # censoring: the baseline never reaches the score / already reaches it at its fewest


# -- the pure computation, shared by the point estimate and every bootstrap resample -------------------------
@dataclass(frozen=True)
class Needed:
    """Labels the baseline needs for a score: exact (``censored == ""``), more than ``labels`` (``">"``) or at
    most ``labels`` (``"<="``); NaN where a mean is undefined."""

    labels: float
    censored: str = ""


def labels_needed(counts: list[float], means: list[float], target: float, higher: bool) -> Needed:
    """The labels at which a curve (``means`` at ascending ``counts``) first reaches ``target``, interpolated
    linearly in log(labels) between the measured points on either side of the crossing.

    First crossing from the smallest count upwards, so a curve that dips again later does not move it.
    """
    if math.isnan(target) or any(math.isnan(m) for m in means):
        return Needed(math.nan)
    sign = 1.0 if higher else -1.0
    gaps = [sign * (m - target) for m in means]  # >= 0: reached
    if gaps[0] >= 0:
        return Needed(counts[0], BELOW)
    for i in range(1, len(counts)):
        if gaps[i] >= 0:
            share = -gaps[i - 1] / (gaps[i] - gaps[i - 1])
            low, high = math.log(counts[i - 1]), math.log(counts[i])
            return Needed(math.exp(low + share * (high - low)))
    return Needed(counts[-1], ABOVE)


def factor_text(value: float, censored: str) -> str:
    """``3.2x``, ``> 12.3x`` or ``<= 0.5x``: three significant digits, the censoring in front."""
    if math.isnan(value):
        return "—"
    return f"{censored} {value:.3g}x".strip()


# -- curves from cells ---------------------------------------------------------------------------------------
@dataclass
class Point:
    """One cell on a backbone's curve."""

    cell: Cell
    labels: int


def curve(table: Table, backbone: str, dataset: str) -> list[Point]:
    """The backbone's scored cells of one dataset in ``table``, by ascending label count (the training images
    its runs record, as the score tables' columns count them); cells without a count are left out."""
    found = [(cell, training_images([cell])) for (row, column), cell in table.cells.items()
             if row == backbone and column.dataset == dataset and cell.n]
    points_on = [Point(cell, n) for cell, n in found if n]
    return sorted(points_on, key=lambda p: (p.labels, p.cell.fraction))


# -- the factor and its interval -----------------------------------------------------------------------------
@dataclass
class Factor:
    """A backbone's labels-saved factor at one cell against the baseline's curve, with its interval (None:
    ``note`` says why)."""

    point: Point
    needed: Needed
    interval: tuple[float, float] | None = None
    interval_censored: tuple[str, str] = ("", "")
    note: str = ""

    @property
    def value(self) -> float:
        return self.needed.labels / self.point.labels


def factor_of(point: Point, baseline: list[Point], statistics: ReportStatistics) -> Factor:
    """The factor of ``point`` against the ``baseline`` curve, and its bootstrap interval."""
    higher = higher_is_better(point.cell.metric)
    counts = [float(p.labels) for p in baseline]
    needed = labels_needed(counts, [p.cell.mean for p in baseline], point.cell.mean, higher)
    result = Factor(point, needed)
    members = [point.cell, *(p.cell for p in baseline)]
    replicates, why = _replicates(members, statistics)
    if replicates is None:
        result.note = why
        return result
    resampled = _resampled_means(members, replicates, statistics)
    needs = [labels_needed(counts, list(column[1:]), column[0], higher) for column in resampled.T]
    low, high = percentile_interval(np.array([n.labels for n in needs]) / point.labels, statistics.confidence)
    if math.isnan(low):
        result.note = "the metric is undefined in every resample"
        return result
    bounds = {BELOW: counts[0] / point.labels, ABOVE: counts[-1] / point.labels}
    kinds = {n.censored for n in needs} - {""}
    result.interval = (low, high)
    result.interval_censored = (_censored_end(low, bounds, kinds), _censored_end(high, bounds, kinds))
    return result


def _censored_end(value: float, bounds: dict[str, float], kinds: set[str]) -> str:
    """An interval end on a bound where resamples were censored is censored likewise (an end on a bound that
    only exact resamples reach, e.g. a crossing at the last measured point, is exact)."""
    return next((kind for kind in sorted(kinds) if math.isclose(value, bounds[kind], rel_tol=1e-9)), "")


def _replicates(members: list[Cell], statistics: ReportStatistics) -> tuple[list[np.ndarray] | None, str]:
    """Each cell's ``seeds x B`` scores in the image resamples of one shared test set, or None and why not."""
    out, test_sets = [], set()
    for cell in members:
        scores, why = statistics.cell_scores(cell)
        if scores is None:
            return None, f"{_name(cell)}: {why}"
        test_sets.update(s.test_set.key for s in scores)
        out.append(np.stack([s.replicates for s in scores]))
    if len(test_sets) > 1:
        return None, "its runs and the baseline's were tested on different test sets"
    return out, ""


def _resampled_means(members: list[Cell], replicates: list[np.ndarray],
                     statistics: ReportStatistics) -> np.ndarray:
    """``cells x B``: each cell's mean over drawn seeds in every resample. The seeds are drawn as the paired
    comparisons draw them (``paired_difference``: the same generator, the first cell's draws first), and cells
    run with the same seeds are drawn seed by seed together."""
    rng = np.random.default_rng(seed_sequence(statistics.seed, "pairs"))
    draws: dict[tuple, np.ndarray] = {}
    means = []
    for cell, scores in zip(members, replicates, strict=True):
        key = tuple(cell.seeds)
        if key not in draws:
            draws[key] = seed_draws(scores.shape[0], scores.shape[1], rng)
        means.append(mean_over_drawn_seeds(scores, draws[key]))
    return np.stack(means)


def _name(cell: Cell) -> str:
    return f"{cell.labels['backbone']} at fraction {cell.labels['fraction']}"


# -- the section ---------------------------------------------------------------------------------------------
@dataclass
class Panel:
    """One dataset of one table: every backbone's curve and the factors against the baseline's."""

    dataset: str
    curves: dict[str, list[Point]]
    factors: list[Factor]


def label_efficiency_section(collection: Collection, cells: list[Cell], statistics: ReportStatistics,
                             baseline: str | None) -> Section | None:
    """The label-efficiency section: per table a figure (one panel per dataset) and the labels-saved factors
    against ``baseline`` (chosen as the report chooses it, ``tables.choose_baseline``); None when no table has
    the baseline and at least two label fractions of a dataset."""
    level = round(100 * statistics.confidence)
    markdown = explanation(level)
    figures: dict[str, bytes] = {}
    rows: list[dict] = []
    chosen_any = None
    for table in build_tables(collection, cells):
        chosen = choose_baseline(table.rows, baseline)
        panels = _panels(table, chosen, statistics) if chosen else []
        if not panels:
            continue
        chosen_any = chosen_any or chosen
        name = slug("label_efficiency", table.title) + ".png"
        figures[name] = efficiency_figure(table.title, panels, chosen, level)
        markdown += [f"### {table.title}: labels saved against {chosen}", "",
                     *markdown_rows(panels, level, chosen), "", f"![plots/{name}](plots/{name})", ""]
        rows += [_row(table, factor) for panel in panels for factor in panel.factors]
    if not figures:
        return None
    caption = (f"Labels-saved factor against {chosen_any}: the baseline's labels needed to reach each score "
               f"(log-linear interpolation on its curve) over the backbone's labels, with {level}% bootstrap "
               "interval; censored: > (baseline never reaches it) or <= (reached at its fewest labels).")
    return Section(TITLE, markdown, figures, {"label_efficiency": pd.DataFrame(rows)},
                   {"label_efficiency": caption})


def _panels(table: Table, baseline: str, statistics: ReportStatistics) -> list[Panel]:
    """Per dataset with at least two label counts on the baseline's curve: the curves and the factors of the
    other backbones."""
    panels = []
    for dataset in dict.fromkeys(column.dataset for column in table.columns):
        reference = curve(table, baseline, dataset)
        if len({p.labels for p in reference}) < 2:
            continue
        curves = {row: curve(table, row, dataset) for row in table.rows}
        factors = [factor_of(point, reference, statistics)
                   for row in table.rows if row != baseline for point in curves[row]]
        panels.append(Panel(dataset, {row: along for row, along in curves.items() if along}, factors))
    return panels


def explanation(level: int) -> list[str]:
    """What the factor is, how it is read off the baseline's curve, and what its censoring means."""
    return [
        "How many training labels the baseline needs to match each backbone. A cell's labels: the training "
        "samples its runs used. The labels the baseline needs to reach a backbone's score are read off the "
        "baseline's curve (its mean scores at its measured label counts), interpolated linearly in "
        "log(labels) between the two measured points around the first crossing from its fewest labels "
        "upwards; the factor is that number over the backbone's labels (2x: the backbone matches a baseline "
        "with twice its labels; below 1x: the baseline needs fewer). \"> N\": the baseline never reaches the "
        "score within its measured labels, so it needs more than its largest count (a lower bound); "
        "\"<= N\": its fewest labels already reach it (an upper bound). "
        f"[{level}% CI]: percentile bootstrap over the same image resamples and seed draws as the paired "
        "comparisons, each resample's factor from its resampled means (censored resamples at their bound, "
        "and an interval end on a bound that censored resamples reach is censored likewise). A score marked "
        "⚠ or † is marked so in the score tables, for the reason given there: its factor is no more to be "
        "trusted than its score; marks on the labels the baseline needs are those of the baseline's own "
        "cells, which its curve is drawn through.",
        "",
    ]


def markdown_rows(panels: list[Panel], level: int, baseline: str) -> list[str]:
    """The factors of one table, one row per backbone, dataset and label fraction; the labels the baseline
    needs carry the marks of the baseline's cells on its curve (they are read off those cells)."""
    header = ["backbone", "dataset", "fraction (labels)", "score", "labels the baseline needs",
              f"factor [{level}% CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for panel in panels:
        curve_marks = "".join(sorted({m for p in panel.curves.get(baseline, []) for m in marks_of(p.cell)
                                      if not m.isspace()}))
        for factor in panel.factors:
            cell, needed = factor.point.cell, factor.needed
            labels = "—" if math.isnan(needed.labels) else f"{needed.censored} {needed.labels:.0f}".strip()
            labels += f" {curve_marks}" if curve_marks else ""
            texts = [cell.labels["backbone"], panel.dataset, _fraction(factor.point),
                     f"{cell.metric} {points(cell.mean)}{marks_of(cell)}",
                     labels, f"{factor_text(factor.value, needed.censored)} {interval_text(factor)}"]
            lines.append("| " + " | ".join(texts) + " |")
    return lines


def _fraction(point: Point) -> str:
    """``1% (47)``: the label fraction and the labels it gave, as the score tables write it."""
    return fraction_text(point.cell.labels["fraction"], point.cell.fraction, point.labels)


def interval_text(factor: Factor) -> str:
    """``[1.2x, > 4x]``, or ``(no interval: why)``."""
    if factor.interval is None:
        return f"(no interval: {factor.note})"
    ends = [factor_text(v, c) for v, c in zip(factor.interval, factor.interval_censored, strict=True)]
    return f"[{ends[0]}, {ends[1]}]"


def _row(table: Table, factor: Factor) -> dict:
    """The factor as numbers, for tables/label_efficiency.csv."""
    cell = factor.point.cell
    low, high = factor.interval or (math.nan, math.nan)
    return {
        "dataset": cell.labels["dataset"],
        "protocol": cell.labels["protocol"],
        **{k: v for k, v in cell.labels.items() if k not in TABLE_AXES},
        "backbone": cell.labels["backbone"],
        "fraction": cell.fraction,
        "labels": factor.point.labels,
        "score": cell.mean,
        "baseline_labels_needed": factor.needed.labels,
        "factor": factor.value,
        "factor_low": low,
        "factor_high": high,
        "censored": factor.needed.censored,
        "low_censored": factor.interval_censored[0],
        "high_censored": factor.interval_censored[1],
        "note": factor.note,
    }


def efficiency_figure(title: str, panels: list[Panel], baseline: str, level: int) -> bytes:
    """Score against training labels (log axis, ticks at the measured counts), a line per backbone with its
    cells' intervals, one panel per dataset."""
    figure = Figure(figsize=(4.6 * len(panels) + 0.8, 3.8), layout="constrained")
    metric = ""
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for backbone, along in panel.curves.items():
            metric = f"{along[0].cell.records[0].split} {along[0].cell.metric}"
            x = np.array([p.labels for p in along], dtype=float)
            mean = np.array([100 * p.cell.mean for p in along])
            low = np.array([100 * p.cell.interval[0] if p.cell.interval else np.nan for p in along])
            high = np.array([100 * p.cell.interval[1] if p.cell.interval else np.nan for p in along])
            label = f"{backbone} (baseline)" if backbone == baseline else backbone
            width = 2.2 if backbone == baseline else 1.4
            line = axes.plot(x, mean, marker="o", label=label, linewidth=width)[0]
            draw_intervals(axes, x, low, high, line.get_color())
        counts = sorted({p.labels for along in panel.curves.values() for p in along})
        axes.set_xscale("log")
        axes.set_xticks(counts, [str(c) for c in counts])
        axes.minorticks_off()
        axes.set_xlabel("training labels")
        axes.set_ylabel(f"{metric} (points)")
        axes.set_title(panel.dataset, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"{title}: score against training labels\nmean, {level}% CI over seeds and test images",
                    fontsize=10)
    return png_bytes(figure)
