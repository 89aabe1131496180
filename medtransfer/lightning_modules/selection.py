"""Choosing one of several heads on the validation split, and saying when the choice sits at a grid's edge."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytorch_lightning.utilities import rank_zero_warn


def best_index(scores: Sequence[float], losses: Sequence[float]) -> int:
    """The head with the highest score (the task's primary metric), ties going to the lower loss; an
    undefined score (NaN, e.g. AUROC of a split with one class) ranks last."""
    return max(range(len(scores)), key=lambda i: (_finite(scores[i]), _finite(-float(losses[i]))))


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def grid_edges(grids: dict[str, Sequence[float]], chosen: dict[str, float]) -> list[dict]:
    """One note per searched axis (more than one distinct value) whose chosen value is its lowest or highest:
    the optimum may lie outside the grid, and the grid should be extended that way."""
    notes = []
    for axis, values in grids.items():
        distinct = sorted({float(v) for v in values})
        if len(distinct) < 2:
            continue
        value = float(chosen[axis])
        if value not in (distinct[0], distinct[-1]):
            continue
        edge = "lowest" if value == distinct[0] else "highest"
        direction = "below" if edge == "lowest" else "above"
        notes.append({
            "axis": axis,
            "value": value,
            "edge": edge,
            "grid": distinct,
            "advice": f"the selected {axis} {value:g} is the {edge} value searched: extend the grid "
                      f"{direction} {value:g}",
        })
    return notes


def warn_grid_edges(owner: str, notes: list[dict]) -> None:
    """Say each grid-edge note in the log (rank zero)."""
    for note in notes:
        rank_zero_warn(f"{owner}: {note['advice']} (model.init_args.{note['axis']}); the optimum may lie "
                       "outside the grid")
