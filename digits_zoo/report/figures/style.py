"""The house style of every figure, and how a figure is made and saved.

Every figure function returns a ``matplotlib.figure.Figure`` built without
pyplot, so nothing here touches a global backend: the report saves figures
through Agg on any headless machine, and a notebook shows them inline. Figure
functions take plain arrays and dicts (leaderboard rows, trial records), never
models.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zoo.files import atomic_write

# Readable at a glance on a laptop screen and in a browser at 100 % zoom.
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    "axes.grid": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 110,
    "figure.dpi": 90,
}
DIGIT_CMAP = "gray_r"
CLASS_CMAP = "tab10"


def styled(function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Builds a figure under the house style (fonts are fixed when artists are made)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """Returns an empty figure with constrained layout and an Agg canvas."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Saves a figure as PNG through a temporary name and a rename: never half-written.

    Returns:
        The path written.
    """

    def write(stream) -> None:
        # savefig takes its resolution (savefig.dpi) from the house style.
        with matplotlib.rc_context(STYLE):
            figure.savefig(stream, format="png", facecolor="white")

    return atomic_write(path, write, binary=True)
