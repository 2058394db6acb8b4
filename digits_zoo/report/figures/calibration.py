"""Figures of how far a model's confidence can be trusted: reliability and coverage."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from digits_zoo.report.figures.style import new_figure, styled


@styled
def reliability_diagram(
    curves: dict[str, dict[str, np.ndarray]], *, title: str = "Reliability diagram"
) -> Figure:
    """Accuracy against confidence per bin, one line per labelled curve, with the diagonal.

    Args:
        curves: label (with its ECE, say) to a
            :func:`zoo.calibration.reliability_curve` result.
        title: the figure's title.

    Returns:
        The figure: above, accuracy against mean confidence per bin (on the
        diagonal: confidence that can be trusted); below, how many rows each bin holds.
    """
    figure = new_figure(6.4, 6.2)
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for label, curve in curves.items():
        filled = curve["count"] > 0
        top.plot(curve["confidence"][filled], curve["accuracy"][filled], marker="o", label=label)
        centres = (curve["edges"][:-1] + curve["edges"][1:]) / 2
        bottom.step(centres, curve["count"], where="mid", label=label)
    top.set_ylabel("accuracy in the bin")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.legend(loc="upper left")
    top.set_title(title)
    # Most rows sit in the last bin; a symmetric-log scale keeps the bins with one row visible.
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("confidence (largest probability), 15 equal-width bins")
    bottom.set_ylabel("rows")
    return figure


@styled
def coverage_chart(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str = "Accuracy against coverage"
) -> Figure:
    """Accuracy on the answered rows against the share answered, most confident first.

    Args:
        curves: label to ``(coverage, accuracy)`` from :func:`zoo.calibration.coverage_curve`.
        title: the figure's title.

    Returns:
        The figure.
    """
    figure = new_figure(6.4, 4.4)
    ax = figure.add_subplot()
    for label, (coverage, accuracy) in curves.items():
        ax.plot(100 * np.asarray(coverage), 100 * np.asarray(accuracy), label=label)
    ax.set_xlabel("coverage: share of test images answered (%)")
    ax.set_ylabel("accuracy on the answered images (%)")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower left")
    ax.set_title(title)
    return figure
