"""summary.md: the paper's table layout (one table per protocol; rows: backbones; columns: dataset x label
fraction), best mean per column in bold, and the gain of every backbone over the supervised baseline."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from .aggregate import TABLE_AXES, Cell, Collection

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
    mean = f"**{points(cell.mean)}**" if best else points(cell.mean)
    if cell.n < 2:
        return f"{mean} (n=1)"
    low, high = cell.ci
    return f"{mean} ± {points(cell.std)} [{points(low)}, {points(high)}]"


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


def gain_table(table: Table, baseline: str) -> list[str]:
    """Each other backbone minus the baseline: absolute points and percent of the baseline's mean."""
    header = ["backbone", *(col.title for col in table.columns), "mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        if row == baseline:
            continue
        texts, absolute, relative = [], [], []
        for col in table.columns:
            ours, base = table.cells.get((row, col)), table.cells.get((baseline, col))
            if ours is None or base is None:
                texts.append("—")
                continue
            gain = 100 * (ours.mean - base.mean)
            percent = 100 * (ours.mean - base.mean) / abs(base.mean) if base.mean else math.nan
            absolute.append(gain)
            relative.append(percent)
            texts.append(f"{gain:+.2f} ({percent:+.1f}%)")
        mean = (
            f"{sum(absolute) / len(absolute):+.2f} ({sum(relative) / len(relative):+.1f}%)"
            if absolute
            else "—"
        )
        lines.append("| " + " | ".join([row, *texts, mean]) + " |")
    return lines


def summary_markdown(
    collection: Collection, tables: list[Table], cells: list[Cell], plots: list[str], baseline: str | None
) -> str:
    grids = sorted({r.grid for r in collection.records if r.grid}) or ["(runs started by hand)"]
    metrics = sorted({f"{c.records[0].split}/{c.metric}" for c in cells})
    lines = [
        f"# Benchmark summary: {', '.join(grids)}",
        "",
        f"{len(collection.records)} runs from {collection.files} results.json files"
        + (f"; {len(collection.excluded)} left out (listed below)." if collection.excluded else "."),
        "",
        f"Scores: {', '.join(metrics) or '—'}, in points (x 100). Each cell: mean ± standard deviation over "
        "seeds [95% confidence interval of the mean, Student t with n - 1 degrees of freedom, clipped to the "
        "metric's range]; **bold**: best mean in its column.",
        "",
    ]
    for table in tables:
        lines += [f"## {table.title}", "", *markdown_table(table), ""]
        chosen = choose_baseline(table.rows, baseline)
        if chosen is not None and len(table.rows) > 1:
            lines += [
                f"Gain over {chosen} (points, and percent of its score):",
                "",
                *gain_table(table, chosen),
                "",
            ]
        elif len(table.rows) > 1:
            lines += [
                f"No gain table: baseline {baseline!r} is not a backbone here (pass --baseline LABEL)."
                if baseline
                else "No gain table: no supervised baseline found (pass --baseline LABEL).",
                "",
            ]
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
                f"- ... and {len(missing) - MAX_LISTED} more (`medtransfer benchmark --dry-run` lists all)"
            )
        lines += [f"## Not finished ({grid}: {len(missing)} runs)", "", *shown, ""]
    return "\n".join(lines)


def _relative(path, collection: Collection) -> str:
    try:
        return str(path.relative_to(collection.root))
    except ValueError:
        return str(path)
