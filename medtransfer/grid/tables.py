"""summary.md: the paper's table layout (one table per protocol; rows: backbones; columns: dataset x label
fraction) with each cell's confidence interval, best mean per column in bold; per dataset and label fraction
the paired comparisons of every backbone with the supervised baseline (or of all pairs); calibration."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from ..stats.paired import holm, verdict
from .aggregate import TABLE_AXES, Cell, Collection
from .uncertainty import Comparison, ReportStatistics

BASELINE_HINTS = ("supervised", ".tv_in1k", ".tv2_in1k")
MAX_LISTED = 30  # unfinished runs named in summary.md


@dataclass(frozen=True)
class Column:
    dataset: str
    fraction: str
    value: float  # numeric label fraction, for ordering

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.fraction}"


@dataclass
class Table:
    """The cells of one protocol (and one level of each further axis)."""

    title: str
    rows: list[str]
    columns: list[Column]
    cells: dict[tuple[str, Column], Cell]


def higher_is_better(metric: str) -> bool:
    return metric != "loss"


def build_tables(collection: Collection, cells: list[Cell]) -> list[Table]:
    order = collection.level_order
    sections: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        extras = tuple(sorted((k, v) for k, v in cell.labels.items() if k not in TABLE_AXES))
        sections[(cell.labels["protocol"], extras)].append(cell)
    tables = []
    for (protocol, extras), members in sorted(
        sections.items(), key=lambda kv: _rank(order, "protocol", kv[0][0])
    ):
        columns = sorted(
            {Column(c.labels["dataset"], c.labels["fraction"], c.fraction) for c in members},
            key=lambda col: (_rank(order, "dataset", col.dataset), col.value, col.fraction),
        )
        rows = sorted({c.labels["backbone"] for c in members}, key=lambda b: _rank(order, "backbone", b))
        by_position = {
            (c.labels["backbone"], Column(c.labels["dataset"], c.labels["fraction"], c.fraction)): c
            for c in members
        }
        title = protocol + "".join(f", {k.rsplit('.', 1)[-1]}={v}" for k, v in extras)
        tables.append(Table(title, rows, columns, by_position))
    return tables


def _rank(order: dict[str, list[str]], axis: str, label: str) -> tuple:
    labels = order.get(axis, [])
    return (labels.index(label), "") if label in labels else (len(labels), label)


def choose_baseline(rows: list[str], requested: str | None) -> str | None:
    """The requested backbone label, else one that looks supervised (``supervised``, ``*.tv_in1k``)."""
    if requested:
        return requested if requested in rows else None
    return next((r for r in rows if any(h in r.lower() for h in BASELINE_HINTS)), None)


def points(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.2f}"


def format_cell(cell: Cell, best: bool) -> str:
    """``mean ± std [low, high]`` in points, or why the interval is missing."""
    mean = f"**{points(cell.mean)}**" if best else points(cell.mean)
    spread = f" ± {points(cell.std)}" if cell.n > 1 else " (n=1)"
    if cell.interval is None:
        return f"{mean}{spread} (no CI: {cell.interval_note})"
    low, high = cell.interval
    return f"{mean}{spread} [{points(low)}, {points(high)}]"


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def best_rows(table: Table, column: Column) -> set[str]:
    present = [(row, table.cells[(row, column)]) for row in table.rows if (row, column) in table.cells]
    if not present:
        return set()
    sign = 1 if higher_is_better(present[0][1].metric) else -1
    top = max(sign * cell.mean for _, cell in present)
    return {row for row, cell in present if math.isclose(sign * cell.mean, top, rel_tol=0, abs_tol=1e-12)}


def markdown_table(table: Table) -> list[str]:
    metric_of = {
        col: next(c.metric for (r, cc), c in table.cells.items() if cc == col) for col in table.columns
    }
    header = ["backbone", *(f"{col.title} ({metric_of[col]})" for col in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {col: best_rows(table, col) for col in table.columns}
    for row in table.rows:
        cells = [
            format_cell(table.cells[(row, col)], row in best[col]) if (row, col) in table.cells else "—"
            for col in table.columns
        ]
        lines.append("| " + " | ".join([row, *cells]) + " |")
    return lines


def comparison_pairs(rows: list[str], baseline: str | None, all_pairs: bool) -> list[tuple[str, str]]:
    """(first, second) rows compared as ``first - second``: every row against the baseline, then with
    ``all_pairs`` every other pair (later row minus earlier)."""
    pairs = [(row, baseline) for row in rows if baseline is not None and row != baseline]
    if all_pairs:
        others = [row for row in rows if row != baseline]
        pairs += [(b, a) for i, a in enumerate(others) for b in others[i + 1 :]]
    return pairs


def comparison_table(table: Table, column: Column, pairs: list[tuple[str, str]], statistics: ReportStatistics,
                     alpha: float) -> list[str]:
    """One table column's comparisons: difference with its interval, p-values, Holm over the rows, verdict."""
    results: list[Comparison] = []
    for first, second in pairs:
        a, b = table.cells.get((first, column)), table.cells.get((second, column))
        if a is not None and b is not None:
            results.append(statistics.compare(a, b, first, second))
    if not results:
        return []
    metric = table.cells[(results[0].first, column)].metric
    tested = [c for c in results if c.paired is not None]
    for comparison, adjusted in zip(tested, holm([c.paired.p_value for c in tested]), strict=True):
        comparison.holm_p = adjusted
        comparison.verdict = verdict(comparison.difference, adjusted, alpha, higher_is_better(metric))
    with_delong = any(c.delong_p is not None for c in results)
    header = ["comparison", "difference [95% CI]", "p (bootstrap)", *(["p (DeLong)"] * with_delong),
              "p (Holm)", "verdict"]
    lines = [f"**{column.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in results:
        base = table.cells[(c.second, column)].mean
        percent = f" ({100 * c.difference / abs(base):+.1f}%)" if base else ""
        text = f"{100 * c.difference:+.2f}{percent}"
        if c.paired is None:
            row = [f"{c.first} − {c.second}", f"{text} (no CI)", "—", *(["—"] * with_delong), "—",
                   f"not tested: {c.reason}"]
        else:
            text += f" [{100 * c.paired.low:+.2f}, {100 * c.paired.high:+.2f}]"
            row = [f"{c.first} − {c.second}", text, p_text(c.paired.p_value),
                   *([p_text(c.delong_p)] * with_delong), p_text(c.holm_p), c.verdict]
        lines.append("| " + " | ".join(row) + " |")
    floor = 2 / (statistics.resamples + 1) * len(tested)  # the smallest Holm p these resamples can give
    if tested and floor >= alpha:
        lines += ["", f"With {statistics.resamples} resamples and {len(tested)} comparisons no Holm-adjusted "
                  f"p can fall below {floor:.3f}: report with more --resamples to detect differences."]
    return [*lines, ""]


def calibration_table(table: Table) -> list[str]:
    """Mean ECE and Brier score over seeds per cell, from results.json (runs from before calibration was
    recorded show —)."""
    header = ["backbone", *(col.title for col in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    found = False
    for row in table.rows:
        texts = []
        for col in table.columns:
            cell = table.cells.get((row, col))
            values = [_calibration(cell, name) for name in ("ece", "brier")] if cell else [math.nan] * 2
            found = found or not all(math.isnan(v) for v in values)
            texts.append(" / ".join("—" if math.isnan(v) else f"{v:.3f}" for v in values))
        lines.append("| " + " | ".join([row, *texts]) + " |")
    return lines if found else []


def _calibration(cell: Cell, name: str) -> float:
    values = [(r.results["metrics"].get(r.split) or {}).get(name) for r in cell.records]
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else math.nan


def summary_markdown(
    collection: Collection,
    tables: list[Table],
    cells: list[Cell],
    plots: list[str],
    baseline: str | None,
    statistics: ReportStatistics,
    all_pairs: bool = False,
) -> str:
    grids = sorted({r.grid for r in collection.records if r.grid}) or ["(runs started by hand)"]
    metrics = sorted({f"{c.records[0].split}/{c.metric}" for c in cells})
    level = round(100 * statistics.confidence)
    unit = "test images (whole patients where the data knows them)" if statistics.grouped else "test images"
    lines = [
        f"# Benchmark summary: {', '.join(grids)}",
        "",
        f"{len(collection.records)} runs from {collection.files} results.json files"
        + (f"; {len(collection.excluded)} left out (listed below)." if collection.excluded else "."),
        "",
        f"Scores: {', '.join(metrics) or '—'}, in points (x 100). Each cell: mean ± standard deviation over "
        f"seeds [{level}% confidence interval of the mean: percentile bootstrap over seeds and {unit}, "
        f"{statistics.resamples} resamples, so it stays within the metric's range]; **bold**: best mean in "
        "its column.",
        "",
        f"Paired comparisons, per dataset and label fraction: difference of the means over seeds, in points "
        f"[{level}% CI: paired bootstrap, both methods scored on the same resampled test images, seeds "
        "resampled too]; p (bootstrap): two-sided, from the same resamples; p (DeLong): DeLong's test of the "
        "seed-averaged AUROCs, for binary AUROC (test-image variation only, seeds fixed); p (Holm): the "
        f"bootstrap p adjusted over the comparisons of one table; verdict: better or worse at "
        f"{100 - level}% on p (Holm), else no detected difference.",
        "",
    ]
    alpha = 1 - statistics.confidence
    for table in tables:
        caption = f"Mean ± std over seeds [{level}% CI: bootstrap over seeds and {unit}]:"
        lines += [f"## {table.title}", "", caption, "", *markdown_table(table), ""]
        chosen = choose_baseline(table.rows, baseline)
        pairs = comparison_pairs(table.rows, chosen, all_pairs)
        if pairs:
            against = f"with {chosen}" if chosen is not None else "between every pair"
            lines += [f"### {table.title}: paired comparisons {against}", ""]
            for column in table.columns:
                lines += comparison_table(table, column, pairs, statistics, alpha)
        elif len(table.rows) > 1:
            lines += [
                f"No comparisons: baseline {baseline!r} is not a backbone here (pass --baseline LABEL or "
                "--all_pairs)."
                if baseline
                else "No comparisons: no supervised baseline found (pass --baseline LABEL or --all_pairs).",
                "",
            ]
        calibration = calibration_table(table)
        if calibration:
            lines += [f"### {table.title}: calibration (test ECE, 15 bins / Brier score; mean over seeds, "
                      "lower is better)", "", *calibration, ""]
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    if collection.excluded:
        lines += ["## Left out", ""]
        lines += [f"- `{_relative(e.path, collection)}`: {e.reason}" for e in collection.excluded]
        lines.append("")
    for grid, missing in collection.unfinished.items():
        shown = [f"- {run}" for run in missing[:MAX_LISTED]]
        if len(missing) > MAX_LISTED:
            shown.append(
                f"- ... and {len(missing) - MAX_LISTED} more (`medtransfer benchmark --dry_run` lists all)"
            )
        lines += [f"## Not finished ({grid}: {len(missing)} runs)", "", *shown, ""]
    return "\n".join(lines)


def _relative(path, collection: Collection) -> str:
    try:
        return str(path.relative_to(collection.root))
    except ValueError:
        return str(path)
