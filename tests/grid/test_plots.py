"""The report figures' interval drawing: every point's 95% CI is visible, a lone point's too."""

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from medtransfer.grid.plots import draw_intervals


def whiskers(axes) -> list[np.ndarray]:
    lines = [c for c in axes.collections if isinstance(c, LineCollection)]
    return [segment for c in lines for segment in c.get_segments()]


def test_a_lone_point_shows_its_interval_as_a_whisker():
    axes = Figure().add_subplot()
    draw_intervals(axes, np.array([1.0]), np.array([91.9]), np.array([96.0]), "C0")
    (segment,) = whiskers(axes)
    np.testing.assert_allclose(segment, [[1.0, 91.9], [1.0, 96.0]])


def test_points_get_whiskers_and_a_band_and_those_without_an_interval_get_neither():
    axes = Figure().add_subplot()
    x = np.array([0.01, 0.1, 1.0])
    low, high = np.array([55.0, np.nan, 78.0]), np.array([65.0, np.nan, 82.0])
    draw_intervals(axes, x, low, high, "C1")
    spans = sorted((s[0][0], s[0][1], s[1][1]) for s in whiskers(axes))
    assert spans == [(0.01, 55.0, 65.0), (1.0, 78.0, 82.0)]
    (band,) = [c for c in axes.collections if isinstance(c, PolyCollection)]
    xs = band.get_paths()[0].vertices[:, 0]
    assert xs.min() == 0.01 and xs.max() == 1.0


def test_no_interval_draws_nothing():
    axes = Figure().add_subplot()
    draw_intervals(axes, np.array([1.0]), np.array([np.nan]), np.array([np.nan]), "C0")
    assert len(axes.collections) == 0


def test_an_interval_that_misses_the_mean_is_drawn_as_it_is():
    """A percentile bootstrap interval need not contain the point estimate; the figure must not fail on it."""
    axes = Figure().add_subplot()
    axes.plot([1.0], [90.0], marker="o")
    draw_intervals(axes, np.array([1.0]), np.array([90.5]), np.array([92.0]), "C0")
    (segment,) = whiskers(axes)
    np.testing.assert_allclose(segment, [[1.0, 90.5], [1.0, 92.0]])
