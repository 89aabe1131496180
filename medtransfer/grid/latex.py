"""A report table as LaTeX for a paper: booktabs rules, the caption and a label, special characters escaped,
``**bold**`` as ``\\textbf``. Needs only ``\\usepackage{booktabs}`` (the marks are math symbols of LaTeX's
kernel)."""

from __future__ import annotations

import re

from .report_table import BOLD, ReportTable

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "±": r"\ensuremath{\pm}",
    "−": r"\ensuremath{-}",  # the minus sign of the comparisons
    "×": r"\ensuremath{\times}",
    "·": r"\ensuremath{\cdot}",
    "≥": r"\ensuremath{\geq}",
    "≤": r"\ensuremath{\leq}",
    "—": "---",
    "–": "--",
    "⚠": r"\ensuremath{\triangle}",  # a cell whose decisions are degenerate, or whose score nothing backs
    "†": r"\ensuremath{\dagger}",  # a cell with a failed run
}


def latex_escape(text: str) -> str:
    """``text`` with every character LaTeX treats specially (and the report's symbols) spelt for LaTeX."""
    return "".join(SPECIAL.get(char, char) for char in text)


def latex_inline(text: str) -> str:
    """``text`` escaped, its ``**bold**`` parts as ``\\textbf{...}``."""
    parts = BOLD.split(text)  # even indices: plain text, odd: the bold parts
    return "".join(latex_escape(part) if i % 2 == 0 else rf"\textbf{{{latex_escape(part)}}}"
                   for i, part in enumerate(parts))


def latex_label(name: str) -> str:
    return "tab:" + re.sub(r"[^A-Za-z0-9:._+-]+", "-", name)


def latex_table(table: ReportTable) -> str:
    """``table`` as a LaTeX ``table`` float: caption and label above a booktabs ``tabular``, its notes below
    in small print."""
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_inline(table.caption)}}}",
        rf"\label{{{latex_label(table.name)}}}",
        r"\begin{tabular}{" + "l" * len(table.header) + "}",
        r"\toprule",
        " & ".join(latex_inline(text) for text in table.header) + r" \\",
        r"\midrule",
        *(" & ".join(latex_inline(text) for text in row) + r" \\" for row in table.rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if table.notes:
        notes = r" \\ ".join(latex_inline(note.removeprefix("- ")) for note in table.notes)
        lines.append(rf"\par\smallskip{{\footnotesize {notes}\par}}")
    return "\n".join([*lines, r"\end{table}", ""])
