"""A part of the report beyond its main tables (label efficiency, feature maps): its markdown, its figures
and its tables, which ``write_report`` writes into summary.md, ``plots/``, ``tables/`` (CSV and LaTeX) and the
HTML report alike, so every output of the report says the same thing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Section:
    """One report section.

    ``markdown``: the section's lines under its ``## title`` heading, which may link its figures as
    ``plots/<name>``; ``figures``: PNG bytes by file name under ``plots/``; ``tables``: frames by name,
    written as ``tables/<name>.csv`` and ``tables/<name>.tex``; ``captions``: each table's caption, by the
    same name.
    """

    title: str
    markdown: list[str]
    figures: dict[str, bytes] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
