"""One table of the report in the form every output takes it from: summary.md and report.html (markdown),
``tables/<name>.csv`` and ``tables/<name>.tex``. Building each table once and rendering it four ways keeps the
outputs saying the same thing.

Cell texts carry one piece of markup, ``**bold**`` (the markdown spelling): the LaTeX writer turns it into
``\\textbf``, the CSV writer drops it.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field

import pandas as pd

BOLD = re.compile(r"\*\*(.+?)\*\*")


@dataclass
class ReportTable:
    """A table: ``name`` (file stem under ``tables/``), ``caption``, ``header``, ``rows`` of cell texts,
    ``notes`` (lines under it, explaining its marks) and, for a section's table, the ``data`` frame it came
    from (its CSV keeps the numbers unrounded)."""

    name: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame | None = None

    def markdown(self) -> list[str]:
        """The caption, the table and its notes, as summary.md shows them."""
        lines = [self.caption, "", markdown_row(self.header), "|" + "---|" * len(self.header)]
        lines += [markdown_row(row) for row in self.rows]
        return [*lines, *([""] + self.notes if self.notes else [])]

    def csv(self) -> str:
        """The table as CSV: the section's frame where there is one, else the cell texts without bold."""
        frame = self.data if self.data is not None else pd.DataFrame(
            [[plain(text) for text in row] for row in self.rows], columns=[plain(h) for h in self.header])
        return csv_text(frame)


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |"


def plain(text: str) -> str:
    """``text`` without its ``**bold**`` markup."""
    return BOLD.sub(r"\1", text)


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (its index only where it says something: named, or not 0..n-1)."""
    keep_index = frame.index.name is not None or not isinstance(frame.index, pd.RangeIndex)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=keep_index, lineterminator="\n")
    return buffer.getvalue()


def frame_table(name: str, frame: pd.DataFrame, caption: str) -> ReportTable:
    """A section's ``frame`` as a report table (numbers to four significant digits, NaN as —)."""
    shown = frame.reset_index() if frame.index.name is not None or not isinstance(frame.index,
                                                                                  pd.RangeIndex) else frame
    rows = [[value_text(value) for value in row] for row in shown.itertuples(index=False)]
    return ReportTable(name, caption, [str(c) for c in shown.columns], rows, data=frame)


def value_text(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)
