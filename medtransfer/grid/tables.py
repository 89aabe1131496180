"""The score tables of summary.md, in the paper's layout: one table per protocol; rows: backbones; columns:
dataset x label fraction (shown as percent and training images, "1% (47)"). Each cell holds the mean, the
standard deviation and the confidence interval of the primary metric, and beside it the balanced accuracy of
the test decisions (``decisions.py``).

**Bold** marks every cell not significantly different from the best of its column: the best mean among the
cells that may be ranked, and every other such cell whose paired comparison with it (``ReportStatistics``),
Holm-adjusted over the column's comparisons with the best, is not significant at ``1 - confidence``. One bold
number would claim a winner the test images cannot tell apart from the runners-up.

A cell with a failed run (†), with a run whose decisions are degenerate (⚠, ``decisions.py``) or with a run
whose results.json records another score than its own test predictions give (⚠: edited by hand, or the
predictions of another run) is marked, explained under its table and never bold: a mean over the seeds that
survived, a rank from probabilities that decide nothing, or a score nothing backs, is no best."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from ..stats.paired import holm
from .aggregate import TABLE_AXES, Cell, Collection, FailedRun, Record
from .decisions import recorded_decision
from .report_table import ReportTable
from .uncertainty import ReportStatistics

BASELINE_HINTS = ("supervised", ".tv_in1k", ".tv2_in1k")
FLAG_MARK, FAILED_MARK = "⚠", "†"


@dataclass(frozen=True)
class Column:
    dataset: str
    fraction: str  # the grid's label of the label fraction
    value: float  # numeric label fraction, for ordering
    count: int | None = None  # training images in the fraction (mean over the column's runs), if recorded

    @property
    def fraction_text(self) -> str:
        return fraction_text(self.fraction, self.value, self.count)

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.fraction_text}"


def fraction_text(label: str, value: float, count: int | None) -> str:
    """A label fraction as a paper states it: ``1% (47)``, the share of the training split and the training
    images it holds; ``1%`` when the runs do not record their sizes; a count fraction
    (``train_fraction: 500``) as ``500 images``; the grid's label when the value is unknown."""
    if math.isnan(value):
        return label
    if value > 1:
        return f"{count if count is not None else round(value)} images"
    share = f"{100 * value:.3g}%"
    return share if count is None else f"{share} ({count})"


def training_images(cells: list[Cell]) -> int | None:
    """The mean over the cells' runs of the training images they used (results.json ``data.num_samples``),
    rounded; None when no run records it."""
    counts = [r.results["data"].get("num_samples", {}).get("train") for c in cells for r in c.records]
    counts = [n for n in counts if isinstance(n, int) and not isinstance(n, bool)]
    return round(sum(counts) / len(counts)) if counts else None


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
    """The score tables, one per protocol (and level of any further axis), in the grid's order."""
    order = collection.level_order
    sections: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        extras = tuple(sorted((k, v) for k, v in cell.labels.items() if k not in TABLE_AXES))
        sections[(cell.labels["protocol"], extras)].append(cell)
    tables = []
    for (protocol, extras), members in sorted(
        sections.items(), key=lambda kv: _rank(order, "protocol", kv[0][0])
    ):
        by_key: dict[tuple, list[Cell]] = defaultdict(list)
        for c in members:
            by_key[(c.labels["dataset"], c.labels["fraction"], c.fraction)].append(c)
        column_of = {key: Column(*key, training_images(found)) for key, found in by_key.items()}
        columns = sorted(
            column_of.values(),
            key=lambda col: (_rank(order, "dataset", col.dataset), col.value, col.fraction),
        )
        rows = sorted({c.labels["backbone"] for c in members}, key=lambda b: _rank(order, "backbone", b))
        by_position = {
            (c.labels["backbone"], column_of[(c.labels["dataset"], c.labels["fraction"], c.fraction)]): c
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


def best_rows(table: Table, column: Column) -> set[str]:
    """The rows of the best mean among the column's cells that may be ranked (``Cell.rankable``)."""
    present = [(row, table.cells[(row, column)]) for row in table.rows
               if (row, column) in table.cells and table.cells[(row, column)].rankable]
    if not present:
        return set()
    sign = 1 if higher_is_better(present[0][1].metric) else -1
    top = max(sign * cell.mean for _, cell in present)
    return {row for row, cell in present if math.isclose(sign * cell.mean, top, rel_tol=0, abs_tol=1e-12)}


def bold_rows(table: Table, column: Column, statistics: ReportStatistics) -> set[str]:
    """The rows not significantly different from the best of the column: the best (``best_rows``) and every
    other rankable cell whose paired comparison with it, Holm-adjusted over the column's comparisons with the
    best, has p >= 1 - confidence. A cell without a valid comparison (no test predictions, another test set)
    is not bold."""
    best = best_rows(table, column)
    if not best:
        return set()
    reference = next(row for row in table.rows if row in best)
    others = [row for row in table.rows if row not in best and (row, column) in table.cells
              and table.cells[(row, column)].rankable]
    compared = [(row, statistics.compare(table.cells[(row, column)], table.cells[(reference, column)], row,
                                         reference)) for row in others]
    tested = [(row, c.paired.p_value) for row, c in compared if c.paired is not None]
    adjusted = holm([p for _, p in tested])
    alpha = 1 - statistics.confidence
    alike = {row for (row, _), p in zip(tested, adjusted, strict=True) if not math.isnan(p) and p >= alpha}
    return best | alike


def score_table(table: Table, statistics: ReportStatistics) -> ReportTable:
    """The table's scores (rows: backbones; columns: dataset x label fraction) with bold by Holm (see the
    module), its caption, and a note under it for each marked cell."""
    metric_of = {
        col: next(c.metric for (r, cc), c in table.cells.items() if cc == col) for col in table.columns
    }
    header = ["backbone", *(f"{col.title} · {metric_of[col]}" for col in table.columns)]
    bold = {col: bold_rows(table, col, statistics) for col in table.columns}
    notes: list[str] = []
    rows = []
    for row in table.rows:
        texts = []
        for col in table.columns:
            cell = table.cells.get((row, col))
            if cell is None:
                texts.append("—")
                continue
            marks = ""
            for mark, text in cell_notes(cell):
                notes.append(f"- {mark}{len(notes) + 1} {row}, {col.title}: {text}")
                marks += f" {mark}{len(notes)}"
            texts.append(format_cell(cell, row in bold[col]) + marks)
        rows.append([row, *texts])
    return ReportTable(slug(table.title), score_caption(table, statistics), header, rows, notes)


def score_caption(table: Table, statistics: ReportStatistics) -> str:
    """What the score table shows: the metric, the interval, the thresholded metric's rule and the bold
    rule."""
    found = list(table.cells.values())
    split = next((c.records[0].split for c in found if c.records), "test")
    metrics = ", ".join(sorted({c.metric for c in found}))
    level = round(100 * statistics.confidence)
    unit = "test images (whole patients where the data knows them)" if statistics.grouped else "test images"
    rules = decision_rules(found)
    thresholded = (f"; bal. acc: balanced accuracy of the {split} decisions at {rules}, mean over seeds"
                   if rules else "")
    return (f"{table.title}: {split} {metrics} in points, mean ± std over seeds [{level}% CI: bootstrap over "
            f"seeds and {unit}]{thresholded}. **Bold**: the best mean of its column and every cell not "
            f"significantly different from it (paired bootstrap p, Holm-adjusted over the column's "
            f"comparisons with the best, ≥ {1 - statistics.confidence:.2g}); marked cells "
            f"({FLAG_MARK}, {FAILED_MARK}) are never bold.")


VALIDATION_RULE = "the threshold chosen on validation"
DEFAULT_RULE, ARGMAX_RULE = "0.5", "the most probable class"


def decision_rule(record: Record) -> str:
    """How the run's test decisions were made (``decisions.py``): the most probable class (multiclass), the
    threshold results.json records, chosen on validation (``extra.decision.rule`` names the rule, e.g.
    ``youden``), or 0.5."""
    if record.results["task"].get("kind") == "multiclass":
        return ARGMAX_RULE
    if not recorded_decision(record.results):
        return DEFAULT_RULE
    rule = (record.results.get("extra") or {}).get("decision", {}).get("rule")
    return f"{VALIDATION_RULE} ({rule})" if isinstance(rule, str) and rule else VALIDATION_RULE


def decision_rules(cells: list[Cell]) -> str:
    """``the threshold chosen on validation (youden) for 36 runs, 0.5 for 0``: each rule with the runs that
    used it (of the runs with test decisions); a thresholded task always states both counts."""
    counts = Counter(decision_rule(r) for c in cells for r in c.records if r.decisions is not None)
    if not counts:
        return ""
    if any(rule != ARGMAX_RULE for rule in counts):
        if not any(rule.startswith(VALIDATION_RULE) for rule in counts):
            counts[VALIDATION_RULE] = 0
        counts.setdefault(DEFAULT_RULE, 0)
    order = sorted(counts, key=lambda r: (not r.startswith(VALIDATION_RULE), r == ARGMAX_RULE, r))
    return ", ".join(f"{rule} for {counts[rule]}" + (" runs" if i == 0 else "")
                     for i, rule in enumerate(order))


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


def marks_of(cell: Cell) -> str:
    """`` ⚠``, `` †`` or both: what the cell's notes under the score table say about it."""
    marks = "".join(mark for mark, _ in cell_notes(cell))
    return f" {marks}" if marks else ""


def slug(*parts: str) -> str:
    """A file name stem from labels (``plots/``, ``tables/``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", "_".join(parts)).strip("_")
