"""Selecting a head on validation, and the grid-edge notes."""

from __future__ import annotations

import math

from medtransfer.lightning_modules.selection import best_index, grid_edges


def test_the_best_score_wins_ties_go_to_the_lower_loss_and_nan_ranks_last():
    assert best_index([0.7, 0.9, 0.8], [0.1, 0.5, 0.2]) == 1
    assert best_index([0.9, 0.9], [0.4, 0.3]) == 1
    assert best_index([math.nan, 0.1], [0.0, 9.0]) == 1


def test_grid_edges_name_each_searched_axis_whose_choice_is_an_end():
    grids = {"lrs": [1e-3, 1e-2, 1e-1], "weight_decays": [0.0, 0.1]}
    assert grid_edges(grids, {"lrs": 1e-2, "weight_decays": 0.0}) == [
        {"axis": "weight_decays", "value": 0.0, "edge": "lowest", "grid": [0.0, 0.1],
         "advice": "the selected weight_decays 0 is the lowest value searched: extend the grid below 0"}]
    (note,) = grid_edges(grids, {"lrs": 1e-1, "weight_decays": 0.05})
    assert (note["axis"], note["edge"]) == ("lrs", "highest") and "above 0.1" in note["advice"]
    assert grid_edges(grids, {"lrs": 1e-2, "weight_decays": 0.05}) == []


def test_an_axis_with_one_value_was_not_searched():
    assert grid_edges({"lrs": [0.1, 0.1], "weight_decays": [0.0]}, {"lrs": 0.1, "weight_decays": 0.0}) == []
