"""Figures of accuracy against a setting (k, depth, width), drawn by the study notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from digits_zoo.report.figures.style import new_figure, styled


def plot_sweep(
    ax,
    values: Sequence[Any],
    fold_scores: Sequence[Sequence[float]],
    *,
    label: str | None = None,
    percent: bool = True,
    marker: str = "o",
    color: Any = None,
    shift: float = 0.0,
    scale: str = "linear",
) -> None:
    """Draws mean accuracy against a setting, with one standard deviation over folds as error bars.

    Args:
        ax: the axes to draw on.
        values: the settings; strings are placed as categories.
        fold_scores: for each setting, the accuracy of each fold.
        label: the legend label.
        percent: show accuracies in percent.
        marker: the marker of the means.
        color: the line colour.
        shift: moves the points sideways (in decades for ``scale="log"``, in
            doublings for ``"log2"``), so that lines drawn on the same settings
            keep their error bars apart.
        scale: the x axis's scale: ``linear``, ``log`` or ``log2``.
    """
    factor = 100.0 if percent else 1.0
    scores = [np.asarray(s, dtype=float) * factor for s in fold_scores]
    means = [float(s.mean()) for s in scores]
    spreads = [float(s.std()) for s in scores]
    categorical = any(isinstance(v, str) for v in values)
    positions = np.arange(len(values)) if categorical else np.asarray(values, dtype=float)
    if scale == "log2" and not categorical:
        shown = positions * 2.0**shift
    elif scale == "log" and not categorical:
        shown = positions * 10.0**shift
    else:
        shown = positions + shift
    ax.errorbar(
        shown,
        means,
        yerr=spreads,
        marker=marker,
        capsize=4,
        label=label,
        color=color,
        linestyle="-" if not categorical else "none",
    )
    if categorical:
        ax.set_xticks(positions, [str(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    elif scale in ("log", "log2"):
        ax.set_xscale("log", base=2 if scale == "log2" else 10)
    ax.set_ylabel("accuracy (%)" if percent else "accuracy")
    ax.grid(axis="y", alpha=0.3)


@styled
def sweep_figure(
    panels: Sequence[dict[str, Any]],
    *,
    title: str = "",
    height: float = 3.8,
) -> Figure:
    """Side-by-side sweeps, one panel each.

    Args:
        panels: dicts with ``values``, ``scores`` (a mapping from a line label
            to per-setting fold scores), ``xlabel``, optional ``title``,
            ``log2`` (a base-2 x axis, for widths) and ``log`` (base 10).
        title: the figure's title.
        height: inches.

    Returns:
        The figure.
    """
    figure = new_figure(4.4 * len(panels) + 0.4, height)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        values = panel["values"]
        scale = "log2" if panel.get("log2") else "log" if panel.get("log") else "linear"
        if any(isinstance(v, str) for v in values) or len(values) < 2:
            spacing = 1.0
        else:
            numbers = np.asarray(values, dtype=float)
            numbers = {"log2": np.log2, "log": np.log10}.get(scale, lambda a: a)(numbers)
            spacing = float(np.min(np.diff(np.sort(numbers))))
        lines = len(panel["scores"])
        for index, (line_label, fold_scores) in enumerate(panel["scores"].items()):
            # Lines over the same settings step aside a little, so their error bars stay apart.
            shift = (index - (lines - 1) / 2) * 0.08 * spacing
            plot_sweep(ax, values, fold_scores, label=line_label, shift=shift, scale=scale)
        if not any(isinstance(v, str) for v in values):
            # Ticks at the settings themselves; on a log axis, only those.
            ax.set_xticks(values, [str(v) for v in values])
            if scale != "linear":
                ax.minorticks_off()
        ax.set_xlabel(panel["xlabel"])
        ax.set_title(panel.get("title", ""))
        if len(panel["scores"]) > 1:
            ax.legend(loc="best", fontsize=9, framealpha=0.85)
    if title:
        figure.suptitle(title)
    return figure
