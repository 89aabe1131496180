"""The report of a folder of results: results.csv, summary.md and plots.

results.csv has one row per finished run (failed runs are listed in summary.md only), summary.md the tables,
and plots/*.png the figures.

Files are only rewritten when their contents change, so reporting the same results twice changes nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..stats.resampling import DEFAULT_RESAMPLES
from ..utils.atomic import write_bytes_atomic
from .aggregate import Collection, Record, cells, collect
from .plots import fraction_figures, importance_figures
from .tables import build_tables, summary_markdown
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
        baseline: the backbone label the others are compared with (default: the grid's
            ``report.baseline``, else one that looks supervised).
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
    figures = {**fraction_figures(tables), **importance_figures(all_cells)}
    plots = [f"plots/{name}" for name in sorted(figures, key=lambda n: (n.startswith("importance_"), n))]
    summary = summary_markdown(
        collection, tables, all_cells, plots, baseline or collection.baseline, statistics, all_pairs
    )
    written = []
    files: dict[str, bytes] = {
        "results.csv": results_csv(collection.records, root).encode(),
        "summary.md": summary.encode(),
    }
    files.update({f"plots/{name}": data for name, data in figures.items()})
    for name, data in files.items():
        if write_if_changed(folder / name, data):
            written.append(folder / name)
    for stale in sorted((folder / "plots").glob("*.png")):
        if f"plots/{stale.name}" not in files:
            stale.unlink()
            written.append(stale)
    return Report(folder, collection, written)


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
