"""summary.md: the paper's table layout (one table per protocol; rows: backbones; columns: dataset x label
fraction) with each cell's confidence interval and balanced accuracy, best mean per column in bold; per
dataset and label fraction the paired comparisons of every backbone with the supervised baseline (or of all
pairs); calibration; the failed runs.

A cell with a failed run (†), with a run whose decisions are degenerate (⚠, ``decisions.py``) or with a run
whose results.json records another score than its own test predictions give (⚠: edited by hand, or the
predictions of another run) is marked, explained under its table and never bold: a mean over the seeds that
survived, a rank from probabilities that decide nothing, or a score nothing backs, is no best."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from ..stats.paired import holm, verdict
from .aggregate import TABLE_AXES, Cell, Collection, FailedRun, Record
from .uncertainty import Comparison, ReportStatistics

BASELINE_HINTS = ("supervised", ".tv_in1k", ".tv2_in1k")
MAX_LISTED = 30  # unfinished runs named in summary.md
FLAG_MARK, FAILED_MARK = "⚠", "†"


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
    """``mean ± std [low, high]; bal. acc x`` in points, or why the interval is missing; a cell whose runs all
    failed says so."""
    if cell.n == 0:
        return f"failed ({len(cell.failed)} of {len(cell.failed)} runs)"
    mean = f"**{points(cell.mean)}**" if best else points(cell.mean)
    spread = f" ± {points(cell.std)}" if cell.n > 1 else " (n=1)"
    if cell.interval is None:
        text = f"{mean}{spread} (no CI: {cell.interval_note})"
    else:
        low, high = cell.interval
        text = f"{mean}{spread} [{points(low)}, {points(high)}]"
    return text + balanced_accuracy_text(cell)


def balanced_accuracy_text(cell: Cell) -> str:
    """``; bal. acc x`` (mean over the runs with test predictions), or nothing when no run has them."""
    values = cell.balanced_accuracies
    if not values:
        return ""
    some = f" ({len(values)} of {cell.n} runs)" if len(values) < cell.n else ""
    return f"; bal. acc {points(sum(values) / len(values))}{some}"


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def best_rows(table: Table, column: Column) -> set[str]:
    """The rows of the best mean among the column's cells that may be ranked (``Cell.rankable``)."""
    present = [(row, table.cells[(row, column)]) for row in table.rows
               if (row, column) in table.cells and table.cells[(row, column)].rankable]
    if not present:
        return set()
    sign = 1 if higher_is_better(present[0][1].metric) else -1
    top = max(sign * cell.mean for _, cell in present)
    return {row for row, cell in present if math.isclose(sign * cell.mean, top, rel_tol=0, abs_tol=1e-12)}


def markdown_table(table: Table) -> list[str]:
    """The score table, then a note for each marked cell."""
    metric_of = {
        col: next(c.metric for (r, cc), c in table.cells.items() if cc == col) for col in table.columns
    }
    header = ["backbone", *(f"{col.title} ({metric_of[col]})" for col in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {col: best_rows(table, col) for col in table.columns}
    notes: list[str] = []
    for row in table.rows:
        cells = []
        for col in table.columns:
            cell = table.cells.get((row, col))
            if cell is None:
                cells.append("—")
                continue
            marks = ""
            for mark, text in cell_notes(cell):
                notes.append(f"- {mark}{len(notes) + 1} {row}, {col.title}: {text}")
                marks += f" {mark}{len(notes)}"
            cells.append(format_cell(cell, row in best[col]) + marks)
        lines.append("| " + " | ".join([row, *cells]) + " |")
    return [*lines, *([""] + notes if notes else [])]


def cell_notes(cell: Cell) -> list[tuple[str, str]]:
    """(mark, note) for a cell with degenerate decisions, with scores its predictions do not give, and with
    failed runs; none for others."""
    notes = []
    if cell.flagged:
        notes.append((FLAG_MARK, f"degenerate decisions in {len(cell.flagged)} of {cell.n} runs "
                                 f"({by_reason(cell.flagged, lambda r: r.flag)}); not ranked"))
    if cell.disputed:
        notes.append((FLAG_MARK, f"results.json records another score than the test predictions give in "
                                 f"{len(cell.disputed)} of {cell.n} runs "
                                 f"({by_reason(cell.disputed, lambda r: r.disagreement)}); not ranked"))
    if cell.failed:
        total = cell.n + len(cell.failed)
        kept = f"the mean is over the other {cell.n}" if cell.n else "no score"
        notes.append((FAILED_MARK, f"{len(cell.failed)} of {total} runs failed, {kept} "
                                   f"({by_reason(cell.failed, lambda r: r.failure.describe())}); not ranked"))
    return notes


def by_reason(runs: list[Record | FailedRun], reason) -> str:
    """``seeds 0, 1: <reason>; seed 2: <other reason>``: runs named by seed (else by run id or folder)."""
    grouped: dict[str, list[str]] = {}
    for run in runs:
        grouped.setdefault(reason(run), []).append(run_name(run))
    return "; ".join(f"{_names(names)}: {text}" for text, names in grouped.items())


def run_name(run: Record | FailedRun) -> str:
    if run.seed is not None:
        return str(run.seed)
    return run.run_id or run.path.parent.name


def _names(names: list[str]) -> str:
    word = "seed" if all(n.lstrip("-").isdigit() for n in names) else "run"
    return f"{word}{'s' if len(names) > 1 else ''} {', '.join(names)}"


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
            results.append(compare_cells(statistics, a, b, first, second))
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
        first, second = table.cells[(c.first, column)], table.cells[(c.second, column)]
        label = f"{c.first}{marks_of(first)} − {c.second}{marks_of(second)}"
        percent = f" ({100 * c.difference / abs(second.mean):+.1f}%)" if second.mean else ""
        text = "—" if math.isnan(c.difference) else f"{100 * c.difference:+.2f}{percent}"
        if c.paired is None:
            row = [label, f"{text} (no CI)", "—", *(["—"] * with_delong), "—", f"not tested: {c.reason}"]
        else:
            text += f" [{100 * c.paired.low:+.2f}, {100 * c.paired.high:+.2f}]"
            row = [label, text, p_text(c.paired.p_value), *([p_text(c.delong_p)] * with_delong),
                   p_text(c.holm_p), c.verdict]
        lines.append("| " + " | ".join(row) + " |")
    floor = 2 / (statistics.resamples + 1) * len(tested)  # the smallest Holm p these resamples can give
    if tested and floor >= alpha:
        lines += ["", f"With {statistics.resamples} resamples and {len(tested)} comparisons no Holm-adjusted "
                  f"p can fall below {floor:.3f}: report with more --resamples to detect differences."]
    return [*lines, ""]


def compare_cells(statistics: ReportStatistics, a: Cell, b: Cell, first: str, second: str) -> Comparison:
    """``first - second``, untested where every run of either failed."""
    if a.n and b.n:
        return statistics.compare(a, b, first, second)
    failed = first if not a.n else second
    return Comparison(first, second, math.nan, None, reason=f"every run of {failed} failed")


def marks_of(cell: Cell) -> str:
    """`` ⚠``, `` †`` or both: what the cell's notes under the score table say about it."""
    marks = "".join(mark for mark, _ in cell_notes(cell))
    return f" {marks}" if marks else ""


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
    runs = [*collection.records, *collection.failed, *collection.pretraining]
    grids = sorted({r.grid for r in runs if r.grid})
    grids = grids or ["(runs started by hand)"]
    metrics = sorted({f"{c.records[0].split}/{c.metric}" for c in cells if c.records})
    level = round(100 * statistics.confidence)
    unit = "test images (whole patients where the data knows them)" if statistics.grouped else "test images"
    lines = [
        f"# Benchmark summary: {', '.join(grids)}",
        "",
        f"{len(collection.records)} runs from {collection.files} results.json files"
        + (f"; {len(collection.failed)} failed (listed below, never scored)" if collection.failed else "")
        + (f"; {len(collection.pretraining)} pretraining run{'s' if len(collection.pretraining) > 1 else ''} "
           "(listed below, not scored)" if collection.pretraining else "")
        + (f"; {len(collection.excluded)} left out (listed below)." if collection.excluded else "."),
        "",
        f"Scores: {', '.join(metrics) or '—'}, in points (x 100). Each cell: mean ± standard deviation over "
        f"seeds [{level}% confidence interval of the mean: percentile bootstrap over seeds and {unit}, "
        f"{statistics.resamples} resamples, so it stays within the metric's range]; bal. acc: balanced "
        "accuracy of the test decisions (threshold 0.5 unless results.json records one, multiclass: the "
        "most probable class; chance is 50 for two classes, 100 / C for C), mean over seeds; **bold**: best "
        f"mean in its column among the cells without marks. {FLAG_MARK}: a run decides one class for every "
        "test sample, its probabilities are constant, or its results.json records another score than its "
        f"test predictions give; {FAILED_MARK}: a run failed; each mark is explained under its table, and a "
        "marked cell is never bold.",
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
    lines += pretraining_section(collection)
    lines += failed_section(collection)
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


def pretraining_section(collection: Collection) -> list[str]:
    """The pretraining runs: stages whose exported backbones the runs above load. They have no test split,
    so they are listed with what they trained and exported, never scored."""
    if not collection.pretraining:
        return []
    lines = ["## Pretraining runs", "",
             "The stages that pretrained the backbones the runs above load; they have no test split and are "
             "not scored. Training loss: the last one logged; kNN monitor: a kNN vote on the embeddings of "
             "the validation images, in points; steps: as the exported backbone records them.", "",
             "| run | method | steps | training loss | kNN monitor (val) | time | exported backbone |",
             "|---|---|---|---|---|---|---|"]
    for run in collection.pretraining:
        monitor = "—" if run.monitor is None else f"{run.monitor[0]} {points(run.monitor[1])}"
        export = "—" if run.export is None else f"`{run.export}`"
        cells = [run.run_id or _relative(run.path.parent, collection), run.method, _or_dash(run.steps),
                 "—" if run.loss is None else f"{run.loss:.4f}", monitor, duration(run.wall_time_s),
                 export + (f" ({run.export_note})" if run.export_note else "")]
        lines.append("| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |")
    return [*lines, ""]


def duration(seconds: float | None) -> str:
    """``95 s``, ``22.4 min``, or ``—`` when unknown."""
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def failed_section(collection: Collection) -> list[str]:
    """The failed runs: never scored, averaged or ranked, and redone by the next launch of their grid."""
    if not collection.failed:
        return []
    lines = ["## Failed runs", "",
             "Never scored, averaged or ranked. The next `medtransfer benchmark` of a grid redoes its failed "
             "runs, after moving each failed run's folder to `<output_dir>/moved/`.", "",
             "| run | failure | epoch | step | error |", "|---|---|---|---|---|"]
    for run in collection.failed:
        name = run.run_id or _relative(run.path.parent, collection)
        failure = run.failure
        cells = [name, failure.kind, _or_dash(failure.epoch), _or_dash(failure.step), failure.error]
        lines.append("| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |")
    return [*lines, ""]


def _or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)


def _relative(path, collection: Collection) -> str:
    try:
        return str(path.relative_to(collection.root))
    except ValueError:
        return str(path)
