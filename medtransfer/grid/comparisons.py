"""The paired-comparison tables of summary.md: per dataset and label fraction, each backbone against the
baseline (or every pair), as the difference of the means over seeds in points with its interval, p-values,
Holm's adjustment over the table's comparisons and a verdict (``medtransfer.stats.paired``)."""

from __future__ import annotations

import math

from ..stats.paired import holm, verdict
from .aggregate import Cell
from .report_table import ReportTable
from .tables import Column, Table, higher_is_better, marks_of, slug
from .uncertainty import Comparison, ReportStatistics


def comparison_pairs(rows: list[str], baseline: str | None, all_pairs: bool) -> list[tuple[str, str]]:
    """(first, second) rows compared as ``first - second``: every row against the baseline, then with
    ``all_pairs`` every other pair (later row minus earlier)."""
    pairs = [(row, baseline) for row in rows if baseline is not None and row != baseline]
    if all_pairs:
        others = [row for row in rows if row != baseline]
        pairs += [(b, a) for i, a in enumerate(others) for b in others[i + 1 :]]
    return pairs


def comparison_table(table: Table, column: Column, pairs: list[tuple[str, str]], statistics: ReportStatistics,
                     against: str) -> ReportTable | None:
    """One table column's comparisons: difference with its interval, p-values, Holm over the rows, verdict;
    None when no pair has both cells."""
    results: list[Comparison] = []
    for first, second in pairs:
        a, b = table.cells.get((first, column)), table.cells.get((second, column))
        if a is not None and b is not None:
            results.append(compare_cells(statistics, a, b, first, second))
    if not results:
        return None
    alpha = 1 - statistics.confidence
    level = round(100 * statistics.confidence)
    metric = table.cells[(results[0].first, column)].metric
    tested = [c for c in results if c.paired is not None]
    for comparison, adjusted in zip(tested, holm([c.paired.p_value for c in tested]), strict=True):
        comparison.holm_p = adjusted
        comparison.verdict = verdict(comparison.difference, adjusted, alpha, higher_is_better(metric))
    with_delong = any(c.delong_p is not None for c in results)
    header = ["comparison", f"difference [{level}% CI]", "p (bootstrap)", *(["p (DeLong)"] * with_delong),
              "p (Holm)", "verdict"]
    rows = []
    for c in results:
        first, second = table.cells[(c.first, column)], table.cells[(c.second, column)]
        label = f"{c.first}{marks_of(first)} − {c.second}{marks_of(second)}"
        text = "—" if math.isnan(c.difference) else f"{100 * c.difference:+.2f}"
        if c.paired is None:
            rows.append([label, f"{text} (no CI)", "—", *(["—"] * with_delong), "—",
                         f"not tested: {c.reason}"])
        else:
            text += f" [{100 * c.paired.low:+.2f}, {100 * c.paired.high:+.2f}]"
            rows.append([label, text, p_text(c.paired.p_value), *([p_text(c.delong_p)] * with_delong),
                         p_text(c.holm_p), c.verdict])
    notes = []
    floor = 2 / (statistics.resamples + 1) * len(tested)  # the smallest Holm p these resamples can give
    if tested and floor >= alpha:
        notes = [f"With {statistics.resamples} resamples and {len(tested)} comparisons no Holm-adjusted p "
                 f"can fall below {floor:.3f}: report with more --resamples to detect differences."]
    caption = (f"**{column.title}** ({table.title}): paired comparisons {against}; difference of the mean "
               f"{metric} over seeds in points (first minus second), Holm over the {len(tested)} tested "
               f"comparisons.")
    name = slug(table.title, "comparisons", column.dataset, column.fraction)
    return ReportTable(name, caption, header, rows, notes)


def compare_cells(statistics: ReportStatistics, a: Cell, b: Cell, first: str, second: str) -> Comparison:
    """``first - second``, untested where every run of either failed."""
    if a.n and b.n:
        return statistics.compare(a, b, first, second)
    failed = first if not a.n else second
    return Comparison(first, second, math.nan, None, reason=f"every run of {failed} failed")


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
