"""Report figures as PNG bytes: the metric against the label fraction per backbone with its 95% CIs
(bootstrap over seeds and test images; one figure per dataset and protocol), and DVME's per-backbone
importance as a bar chart.

Built on ``matplotlib.figure.Figure`` (no pyplot state, no display) and saved without a timestamp, so the same
results give byte-identical files.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from .aggregate import TABLE_AXES, Cell
from .tables import Table, fraction_text, slug, training_images


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def draw_intervals(axes, x: np.ndarray, low: np.ndarray, high: np.ndarray, color) -> None:
    """Each point's interval as a capped whisker, and a band between neighbouring points. The whisker is what
    shows the interval of a lone point (a grid with one label fraction), where a band has no width. Drawn
    from the bounds alone: a percentile interval need not contain the mean. Points without an interval (NaN)
    get neither."""
    known = ~np.isnan(low)
    if not known.any():
        return
    x, low, high = x[known], low[known], high[known]
    axes.vlines(x, low, high, color=color, linewidth=1)
    axes.plot(np.concatenate([x, x]), np.concatenate([low, high]), linestyle="none", marker="_", markersize=7,
              color=color)
    axes.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)


def fraction_figures(tables: list[Table]) -> dict[str, bytes]:
    """``{file name: png}``: per table (protocol) and dataset, mean +- 95% CI against the label fraction."""
    figures = {}
    for table in tables:
        for dataset in dict.fromkeys(col.dataset for col in table.columns):
            columns = [col for col in table.columns if col.dataset == dataset]
            figure = Figure(figsize=(5.5, 3.8), layout="constrained")
            axes = figure.add_subplot()
            metric = ""
            for row in table.rows:
                cells = [(col, table.cells[(row, col)]) for col in columns
                         if (row, col) in table.cells and table.cells[(row, col)].n]  # not where all failed
                if not cells:
                    continue
                metric = f"{cells[0][1].records[0].split} {cells[0][1].metric}"
                x = np.array([col.value for col, _ in cells])
                mean = np.array([100 * c.mean for _, c in cells])
                low = np.array([100 * c.interval[0] if c.interval else np.nan for _, c in cells])
                high = np.array([100 * c.interval[1] if c.interval else np.nan for _, c in cells])
                line = axes.plot(x, mean, marker="o", label=row)[0]
                draw_intervals(axes, x, low, high, line.get_color())
            if not metric:  # every run of this dataset failed: nothing to draw
                continue
            values = sorted(c.value for c in columns if not math.isnan(c.value))
            if len(values) > 1 and values[0] > 0 and values[-1] / values[0] >= 10:
                axes.set_xscale("log")
            ticks = sorted((c for c in columns if not math.isnan(c.value)), key=lambda c: c.value)
            axes.set_xticks([c.value for c in ticks], [c.fraction_text.replace(" ", "\n") for c in ticks])
            axes.minorticks_off()
            axes.set_xlabel("label fraction of the training split")
            axes.set_ylabel(f"{metric} (points)")
            axes.set_title(f"{dataset} · {table.title}: mean, 95% CI over seeds and test images", fontsize=10)
            axes.grid(alpha=0.3)
            axes.legend(fontsize=8)
            figures[slug(dataset, table.title) + ".png"] = png_bytes(figure)
    return figures


def importance_of(results: dict) -> dict[str, float] | None:
    """DVME's overall per-backbone importance from results.json: ``extra.dvme.importance.overall``, a
    mapping of backbone to share (see ``medtransfer.lightning_modules.dvme``)."""
    extra = results.get("extra") or {}
    dvme = extra.get("dvme") if isinstance(extra.get("dvme"), dict) else {}
    for value in (dvme.get("importance"), extra.get("importance")):
        overall = value.get("overall") if isinstance(value, dict) else None
        if (
            isinstance(overall, dict)
            and overall
            and all(isinstance(v, (int, float)) for v in overall.values())
        ):
            return {str(k): float(v) for k, v in overall.items()}
    return None


def importance_figures(cells: list[Cell]) -> dict[str, bytes]:
    """``{file name: png}``: per dataset and protocol, each backbone's mean importance (+- std over seeds) for
    every label fraction."""
    grouped: dict[tuple, list[Cell]] = defaultdict(list)
    for cell in cells:
        if any(importance_of(r.results) for r in cell.records):
            extras = tuple(sorted((k, v) for k, v in cell.labels.items() if k not in TABLE_AXES))
            grouped[
                (cell.labels["dataset"], cell.labels["protocol"], cell.labels["backbone"], extras)
            ].append(cell)
    figures = {}
    for (dataset, protocol, model, extras), members in grouped.items():
        members.sort(key=lambda c: c.fraction)
        backbones = list(
            dict.fromkeys(b for c in members for r in c.records for b in (importance_of(r.results) or {}))
        )
        figure = Figure(figsize=(max(4.5, 1.3 * len(backbones) + 2), 3.6), layout="constrained")
        axes = figure.add_subplot()
        width = 0.8 / len(members)
        for i, cell in enumerate(members):
            label = cell.labels["fraction"]
            shares = np.array(
                [[(importance_of(r.results) or {}).get(b, np.nan) for b in backbones] for r in cell.records]
            )
            mean = np.nanmean(shares, axis=0)
            std = np.nanstd(shares, axis=0, ddof=1) if len(shares) > 1 else None
            axes.bar(
                np.arange(len(backbones)) + (i - (len(members) - 1) / 2) * width,
                mean,
                width,
                yerr=std,
                capsize=3,
                label=f"fraction {fraction_text(label, cell.fraction, training_images([cell]))} "
                      f"(n={len(shares)})",
            )
        axes.set_xticks(np.arange(len(backbones)), backbones, rotation=20, ha="right", fontsize=8)
        axes.set_ylabel("importance (share, rows sum to 1)")
        title = protocol + "".join(f", {k.rsplit('.', 1)[-1]}={v}" for k, v in extras)
        axes.set_title(f"{dataset} · {title} · {model}: per-backbone importance", fontsize=10)
        axes.legend(fontsize=8)
        figures[slug("importance", dataset, title, model) + ".png"] = png_bytes(figure)
    return figures
