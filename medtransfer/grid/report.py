"""The report of a folder of results: results.csv, summary.md, report.html, plots/ and tables/.

results.csv has one row per finished run (failed runs are listed in summary.md only); summary.md the methods,
the tables and the sections (label efficiency, feature maps); report.html the same as one self-contained file
to share; plots/*.png the figures; tables/<name>.csv and tables/<name>.tex every table of summary.md (score,
paired comparisons, calibration, the sections' tables) for a paper.

Files are only rewritten when their contents change, so reporting the same results twice changes nothing;
files in plots/ and tables/ that the results no longer give are removed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..errors import MedTransferError
from ..stats.resampling import DEFAULT_RESAMPLES
from ..utils.atomic import write_bytes_atomic
from .aggregate import Cell, Collection, Record, cells, collect
from .feature_maps import feature_map_section
from .html import report_html
from .label_efficiency import label_efficiency_section
from .latex import latex_table
from .methods import methods_section
from .plots import fraction_figures, importance_figures
from .report_table import ReportTable
from .sections import Section
from .summary import summary
from .tables import Table, build_tables
from .uncertainty import ReportStatistics


@dataclass
class Report:
    """What ``write_report`` wrote: the report's folder, the results it collected, the files it changed."""

    folder: Path
    collection: Collection
    written: list[Path]  # files whose contents changed

    @property
    def summary(self) -> Path:
        return self.folder / "summary.md"

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


class UnknownBaselineError(MedTransferError, ValueError):
    """A ``--baseline`` that is the label of no backbone in the report's tables."""


def check_baseline(baseline: str | None, tables: list[Table]) -> None:
    """Refuse a requested baseline that no table has as a row (a typo).

    Every comparison would be left out, with only a line in summary.md saying why.
    """
    rows = list(dict.fromkeys(row for table in tables for row in table.rows))
    if baseline is not None and rows and baseline not in rows:
        raise UnknownBaselineError(f"--baseline {baseline!r} is not a backbone of these results; they have: "
                                   f"{', '.join(map(repr, rows))} (or leave it out, or use --all_pairs)")


def write_report(
    root: str | Path,
    out: str | Path | None = None,
    metric: str | None = None,
    split: str | None = None,
    baseline: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    all_pairs: bool = False,
) -> Report:
    """Collect the results under ``root`` and write the report into ``out`` (default ``root/report``).

    Args:
        root: the folder of results (searched recursively for results.json).
        out: the report's folder.
        metric: the metric to tabulate (default: the grid's, else each task's primary metric).
        split: the split to tabulate (default: the grid's, else ``test``).
        baseline: the backbone label the others are compared with, refused when no table has it (default:
            the grid's ``report.baseline``, only noted when its runs have not run yet, else one that looks
            supervised).
        resamples: bootstrap resamples of each test set for the intervals and paired comparisons (seeded, so
            the same results give the same report).
        all_pairs: compare every pair of backbones, not only each with the baseline.
    """
    root = Path(root)
    folder = Path(out) if out is not None else root / "report"
    collection = collect(root, metric=metric, split=split)
    all_cells = cells(collection)
    statistics = ReportStatistics(collection, resamples=resamples)
    for record in collection.records:
        record.decisions = statistics.decisions.get(record.path)
        record.disagreement = statistics.disagreeing.get(record.path)
    for cell in all_cells:
        cell.interval, cell.interval_note = statistics.cell_interval(cell)
    tables = build_tables(collection, all_cells)
    check_baseline(baseline, tables)
    figures = {**fraction_figures(tables), **importance_figures(all_cells)}
    plots = [f"plots/{name}" for name in sorted(figures, key=lambda n: (n.startswith("importance_"), n))]
    sections = report_sections(collection, all_cells, statistics, baseline or collection.baseline)
    for section in sections:
        figures.update(section.figures)
    text = summary(collection, tables, plots, baseline or collection.baseline, statistics, all_pairs,
                   methods_section(collection, tables, statistics), sections)
    files: dict[str, bytes] = {
        "results.csv": results_csv(collection.records, root).encode(),
        "summary.md": text.markdown.encode(),
        "report.html": report_html(text.markdown, {f"plots/{n}": png for n, png in figures.items()}).encode(),
    }
    files.update({f"plots/{name}": data for name, data in figures.items()})
    files.update(table_files(text.tables))
    written = [folder / name for name, data in files.items() if write_if_changed(folder / name, data)]
    for stale in [*sorted((folder / "plots").glob("*.png")), *sorted((folder / "tables").glob("*.csv")),
                  *sorted((folder / "tables").glob("*.tex"))]:
        if f"{stale.parent.name}/{stale.name}" not in files:
            stale.unlink()
            written.append(stale)
    return Report(folder, collection, written)


def report_sections(collection: Collection, all_cells: list[Cell], statistics: ReportStatistics,
                    baseline: str | None) -> list[Section]:
    """The sections after the protocols' tables, each where the results give it one.

    Label efficiency, then the feature maps of the grid's feature stores.
    """
    found = [label_efficiency_section(collection, all_cells, statistics, baseline),
             feature_map_section(collection)]
    return [section for section in found if section is not None]


def table_files(tables: list[ReportTable]) -> dict[str, bytes]:
    """``tables/<name>.csv`` and ``tables/<name>.tex`` for every table (a name given twice numbered)."""
    files: dict[str, bytes] = {}
    for table in tables:
        name, n = table.name, 1
        while f"tables/{name}.csv" in files:
            n += 1
            name = f"{table.name}_{n}"
        files[f"tables/{name}.csv"] = table.csv().encode()
        files[f"tables/{name}.tex"] = latex_table(replace(table, name=name)).encode()
    return files


def results_csv(records: list[Record], root: Path) -> str:
    """results.csv's text: a row per finished run: labels, score, interval, path relative to ``root``."""
    rows = []
    for r in records:
        intervals = (r.results.get("intervals") or {}).get(r.split) or {}
        interval = intervals.get("metrics", {}).get(r.metric, {})
        row = {
            "grid": r.grid or "",
            "run": r.run_id or "",
            **{k: v for k, v in r.labels.items()},
            "train_fraction": r.fraction,
            "seed": r.seed,
            "fraction_seed": r.results["data"].get("fraction_seed"),
            "score": r.value,
            "score_name": f"{r.split}/{r.metric}",
            "score_low": interval.get("low"),  # this run's bootstrap interval over its test images
            "score_high": interval.get("high"),
            "balanced_accuracy": r.decisions.balanced_accuracy if r.decisions else None,  # of its decisions
            "degenerate": r.flag or "",  # why its test decisions are degenerate (decisions.py)
            "model": r.results["model"].get("name"),
            "backbones": "+".join(b.get("name", "?") for b in r.results["model"].get("backbones") or []),
            "backbone_fingerprints": "+".join(
                b.get("fingerprint", "?") for b in r.results["model"].get("backbones") or []
            ),
            "config_fingerprint": r.fingerprint,
            "group": r.group,
            "wall_time_s": r.results.get("wall_time_s"),
            "path": _relative(r.path, root),
            "predictions": (r.results.get("predictions") or {}).get(r.split),
        }
        for split, values in sorted(r.results["metrics"].items()):
            if isinstance(values, dict):
                row.update(
                    {f"{split}/{k}": v for k, v in sorted(values.items()) if isinstance(v, (int, float))}
                )
        rows.append(row)
    frame = pd.DataFrame(rows)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file holds it already; say whether it was written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes_atomic(path, data)
    return True
