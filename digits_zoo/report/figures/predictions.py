"""Figures of a classifier's predictions: the confusion matrix and the misclassified digits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure
from sklearn import metrics

from digits_zoo.report.figures.digits import digit_gallery
from digits_zoo.report.figures.style import new_figure, styled


def confusion_counts(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[Any] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """Counts (true, predicted) pairs.

    Returns:
        The matrix (rows: true class, columns: predicted class) and the class labels.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if classes is None:
        classes = np.unique(np.concatenate([y_true, y_pred]))
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    return metrics.confusion_matrix(y_true, y_pred, labels=labels), labels


def most_confused_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, top: int = 5
) -> list[tuple[Any, Any, int]]:
    """The class pairs mistaken for each other most often, counting both directions.

    Returns:
        ``(class_a, class_b, mistakes)`` tuples, most mistakes first.
    """
    matrix, labels = confusion_counts(y_true, y_pred)
    pairs = []
    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            mistakes = int(matrix[a, b] + matrix[b, a])
            if mistakes:
                pairs.append((labels[a], labels[b], mistakes))
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return pairs[:top]


@styled
def confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    classes: Sequence[Any] | None = None,
    title: str = "Confusion matrix",
) -> Figure:
    """The confusion matrix as counts, with every cell written out.

    Returns:
        The figure.
    """
    matrix, labels = confusion_counts(y_true, y_pred, classes)
    size = max(4.8, 0.5 * len(labels) + 2.2)
    figure = new_figure(size + 1.0, size)
    ax = figure.add_subplot()
    # Off-diagonal counts are small; a square-root scale keeps them visible next to the diagonal.
    shown = ax.imshow(
        matrix, cmap="Blues", norm=colors.PowerNorm(0.5, vmin=0, vmax=matrix.max() or 1)
    )
    threshold = (matrix.max() or 1) * 0.45
    for (row, column), count in np.ndenumerate(matrix):
        if count or row == column:
            ax.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=9 if len(labels) <= 12 else 7,
                color="white" if count > threshold else ("black" if row == column else "#b00020"),
            )
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, [str(label) for label in labels])
    ax.set_yticks(ticks, [str(label) for label in labels])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    figure.colorbar(shown, ax=ax, label="test images", shrink=0.8)
    return figure


def misclassified_gallery(
    x: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    image_shape: Sequence[int],
    *,
    limit: int = 40,
    columns: int = 10,
    title: str = "",
) -> Figure:
    """Shows up to ``limit`` misclassified images captioned with their true and predicted labels.

    Returns:
        The figure.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[:limit]
    captions = [f"true {y_true[i]}\npred {y_pred[i]}" for i in shown]
    suffix = f" (first {len(shown)} shown)" if len(wrong) > len(shown) else ""
    count = f"{len(wrong)} of {len(y_true)} digits misclassified{suffix}"
    return digit_gallery(
        np.asarray(x)[shown],
        image_shape,
        captions,
        columns=columns,
        title=f"{title}: {count}" if title else count[0].upper() + count[1:],
        cell=1.05,
        empty_text="no misclassified digits",
    )
