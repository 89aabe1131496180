"""summary.md: the run count, the methods, how to read the tables, then per protocol the score table, the
paired comparisons of every backbone with the baseline (or of all pairs) and calibration; the report's
sections (label efficiency, feature maps), the plots, the pretraining runs, the failed runs, the runs trained
less than asked, the files left out and the runs not finished.

Every table is built once (``ReportTable``) and kept, so that ``write_report`` writes the same tables as CSV
and LaTeX and renders the same markdown as HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..run.whole_run import cut_short_warnings
from .aggregate import Cell, Collection
from .comparisons import comparison_pairs, comparison_table
from .report_table import ReportTable, frame_table
from .sections import Section
from .tables import FAILED_MARK, FLAG_MARK, Table, choose_baseline, points, score_table, slug
from .uncertainty import ReportStatistics

MAX_LISTED = 30  # unfinished runs named in summary.md


@dataclass
class Summary:
    """summary.md's text and every table in it that ``tables/`` holds as CSV and LaTeX."""

    markdown: str
    tables: list[ReportTable]


def calibration_table(table: Table) -> ReportTable | None:
    """Mean ECE and Brier score over seeds per cell, from results.json (runs from before calibration was
    recorded show —); None when no run records them."""
    header = ["backbone", *(col.title for col in table.columns)]
    rows = []
    found = False
    for row in table.rows:
        texts = []
        for col in table.columns:
            cell = table.cells.get((row, col))
            values = [_calibration(cell, name) for name in ("ece", "brier")] if cell else [math.nan] * 2
            found = found or not all(math.isnan(v) for v in values)
            texts.append(" / ".join("—" if math.isnan(v) else f"{v:.3f}" for v in values))
        rows.append([row, *texts])
    caption = (f"{table.title}: calibration, test ECE (15 bins) / Brier score, mean over seeds; lower is "
               "better.")
    return ReportTable(slug(table.title, "calibration"), caption, header, rows) if found else None


def _calibration(cell: Cell, name: str) -> float:
    values = [(r.results["metrics"].get(r.split) or {}).get(name) for r in cell.records]
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else math.nan


def summary(
    collection: Collection,
    tables: list[Table],
    plots: list[str],
    baseline: str | None,
    statistics: ReportStatistics,
    all_pairs: bool = False,
    methods: list[str] = (),
    sections: list[Section] = (),
) -> Summary:
    """summary.md and its tables.

    Args:
        collection: the report's runs.
        tables: the score tables (``build_tables``).
        plots: the figures' paths relative to the report's folder, shown under "Plots".
        baseline: the backbone label the others are compared with (None: one that looks supervised).
        statistics: the intervals and paired comparisons.
        all_pairs: compare every pair of backbones, not only each with the baseline.
        methods: the methods section's lines (``methods.methods_section``).
        sections: further sections, after the protocols' tables.
    """
    runs = [*collection.records, *collection.failed, *collection.pretraining]
    grids = sorted({r.grid for r in runs if r.grid})
    grids = grids or ["(runs started by hand)"]
    lines = [
        f"# Benchmark summary: {', '.join(grids)}",
        "",
        f"{len(collection.records)} runs from {collection.files} results.json files"
        + (f"; {len(collection.failed)} failed (listed below, never scored)" if collection.failed else "")
        + (f"; {len(collection.pretraining)} pretraining run{'s' if len(collection.pretraining) > 1 else ''} "
           "(listed below, not scored)" if collection.pretraining else "")
        + (f"; {len(collection.excluded)} left out (listed below)." if collection.excluded else "."),
        "",
        *methods,
        *reading_guide(statistics),
    ]
    shared: list[ReportTable] = []
    for table in tables:
        scores = score_table(table, statistics)
        shared.append(scores)
        lines += [f"## {table.title}", "", *scores.markdown(), ""]
        chosen = choose_baseline(table.rows, baseline)
        pairs = comparison_pairs(table.rows, chosen, all_pairs)
        if pairs:
            against = f"with {chosen}" if chosen is not None else "between every pair"
            lines += [f"### {table.title}: paired comparisons {against}", ""]
            for column in table.columns:
                compared = comparison_table(table, column, pairs, statistics, against)
                if compared is not None:
                    shared.append(compared)
                    lines += [*compared.markdown(), ""]
        elif len(table.rows) > 1:
            lines += [
                f"No comparisons: baseline {baseline!r} is not a backbone here (pass --baseline LABEL or "
                "--all_pairs)."
                if baseline
                else "No comparisons: no supervised baseline found (pass --baseline LABEL or --all_pairs).",
                "",
            ]
        calibration = calibration_table(table)
        if calibration is not None:
            shared.append(calibration)
            lines += [f"### {table.title}: calibration", "", *calibration.markdown(), ""]
    for section in sections:
        body = list(section.markdown)
        while body and not body[-1].strip():
            body.pop()
        lines += [f"## {section.title}", "", *body, ""]
        shared += [frame_table(name, frame, section.captions.get(name, name))
                   for name, frame in section.tables.items()]
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    lines += pretraining_section(collection)
    lines += failed_section(collection)
    lines += cut_short_section(collection)
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
    return Summary("\n".join(lines), shared)


def reading_guide(statistics: ReportStatistics) -> list[str]:
    """How to read the score and comparison tables (each table's caption adds its metric and rules)."""
    level = round(100 * statistics.confidence)
    unit = "test images (whole patients where the data knows them)" if statistics.grouped else "test images"
    return [
        "## How to read the tables",
        "",
        f"Scores in points (x 100). Each cell: mean ± standard deviation over seeds [{level}% confidence "
        f"interval of the mean: percentile bootstrap over seeds and {unit}, {statistics.resamples} "
        "resamples, so it stays within the metric's range]; bal. acc: balanced accuracy of the test "
        "decisions, mean over seeds (chance is 50 for two classes, 100 / C for C; each table's caption says "
        "how its runs decided: the threshold chosen on validation where results.json records one, else 0.5, "
        "or the most probable class). Column titles give the label fraction as a share of the training "
        "split and, in brackets, the training images it holds (mean over the column's runs). **Bold**: the "
        "best mean of its column and every cell whose paired comparison with that best (as below), "
        "Holm-adjusted over the column's comparisons with the best, is not significant at "
        f"{100 - level}%: the cells these test images cannot tell apart from the best. {FLAG_MARK}: a run "
        "decides one class for every test sample, its probabilities are constant, or its results.json "
        f"records another score than its test predictions give; {FAILED_MARK}: a run failed; each mark is "
        "explained under its table, and a marked cell is never bold.",
        "",
        "Paired comparisons, per dataset and label fraction: difference of the means over seeds (first minus "
        f"second), in points, absolute [{level}% CI: paired bootstrap, both methods scored on the same "
        "resampled test images, seeds resampled too]; p (bootstrap): two-sided, from the same resamples; "
        "p (DeLong): DeLong's test of the seed-averaged AUROCs, for binary AUROC (test-image variation only, "
        "seeds fixed); p (Holm): the bootstrap p adjusted over the comparisons of one table; verdict: better "
        f"or worse at {100 - level}% on p (Holm), else no detected difference.",
        "",
    ]


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


def cut_short_section(collection: Collection) -> list[str]:
    """The scored runs whose training was not what their config asked (``run.whole_run``): ended by a time
    limit before ``max_epochs``, or tested on their last weights because nothing chose a best checkpoint.
    Their scores stand in the tables; this says which ones a reader should weigh."""
    short = [(r, r.results["training"]) for r in collection.records
             if isinstance(r.results.get("training"), dict) and cut_short_warnings(r.results["training"])]
    if not short:
        return []
    lines = ["## Trained less than asked", "",
             "Scored above, but not as their configs ask: training ended by `trainer.max_time` before "
             "`max_epochs`, or the last weights tested because no validation chose a best checkpoint.", "",
             "| run | epochs | ended by | tested checkpoint |", "|---|---|---|---|"]
    for record, training in short:
        name = record.run_id or _relative(record.path.parent, collection)
        cells = [name, f"{training['epochs']} of {training['max_epochs']}", training["ended_by"],
                 str(training["tested_checkpoint"])]
        lines.append("| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |")
    return [*lines, ""]


def _or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)


def _relative(path, collection: Collection) -> str:
    try:
        return str(path.relative_to(collection.root))
    except ValueError:
        return str(path)
