"""Figures of the digits themselves: galleries, class rows, pixel maps and 2-D projections."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from digits_zoo.report.figures.style import CLASS_CMAP, DIGIT_CMAP, new_figure, styled


def _image(row: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    return np.asarray(row, dtype="float32").reshape(tuple(image_shape))


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@styled
def digit_gallery(
    images: np.ndarray,
    image_shape: Sequence[int],
    titles: Sequence[str] | None = None,
    *,
    columns: int = 10,
    title: str = "",
    cell: float = 1.0,
    empty_text: str = "no images",
    cmap: str = DIGIT_CMAP,
) -> Figure:
    """Shows images in a grid, each with an optional caption.

    Args:
        images: flat pixel rows, one per image.
        image_shape: the shape of one image, such as ``(8, 8)``.
        titles: one caption per image (kept short: two lines at most).
        columns: images per row.
        title: the figure's title.
        cell: inches per image.
        empty_text: shown instead when there are no images.
        cmap: the colour map; the default draws high values dark, like ink.

    Returns:
        The figure.
    """
    images = np.asarray(images)
    count = len(images)
    if count == 0:
        figure = new_figure(6, 1.6)
        ax = figure.add_subplot()
        _bare(ax)
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", fontsize=12)
        figure.suptitle(title)
        return figure
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    caption = 0.35 if titles is not None else 0.0
    figure = new_figure(columns * cell, rows * (cell + caption) + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        _bare(ax)
        if index >= count:
            ax.set_visible(False)
            continue
        ax.imshow(_image(images[index], image_shape), cmap=cmap, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[index], fontsize=9, pad=2)
    if title:
        figure.suptitle(title)
    return figure


@styled
def digits_by_class(
    x: np.ndarray,
    y: np.ndarray,
    image_shape: Sequence[int],
    *,
    per_class: int = 10,
    seed: int = 0,
    title: str = "Sample digits, one row per class",
) -> Figure:
    """Shows ``per_class`` randomly chosen images of every class, one row per class.

    Returns:
        The figure.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    generator = np.random.default_rng(seed)
    figure = new_figure(per_class * 0.75 + 0.8, len(classes) * 0.75 + 0.6)
    axes = figure.subplots(len(classes), per_class, squeeze=False)
    for row, label in enumerate(classes):
        members = np.flatnonzero(y == label)
        chosen = generator.choice(members, size=min(per_class, len(members)), replace=False)
        for column, ax in enumerate(axes[row]):
            _bare(ax)
            if column < len(chosen):
                ax.imshow(
                    _image(x[chosen[column]], image_shape), cmap=DIGIT_CMAP, interpolation="nearest"
                )
        axes[row][0].set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=12)
    figure.suptitle(title)
    return figure


@styled
def class_images(
    images: np.ndarray,
    image_shape: Sequence[int],
    labels: Sequence[Any],
    *,
    title: str,
    cmap: str = DIGIT_CMAP,
) -> Figure:
    """Shows one image per class in a row (class means, for example), with one shared scale.

    Returns:
        The figure.
    """
    images = np.asarray(images, dtype="float32")
    figure = new_figure(len(images) * 1.1 + 0.4, 1.9)
    axes = figure.subplots(1, len(images), squeeze=False)[0]
    low, high = float(images.min()), float(images.max())
    for ax, image, label in zip(axes, images, labels, strict=True):
        _bare(ax)
        ax.imshow(
            _image(image, image_shape), cmap=cmap, vmin=low, vmax=high, interpolation="nearest"
        )
        ax.set_title(str(label))
    figure.suptitle(title)
    return figure


@styled
def pixel_map(
    values: np.ndarray,
    image_shape: Sequence[int],
    *,
    title: str,
    colorbar_label: str,
    cmap: str = "magma",
) -> Figure:
    """Shows one value per pixel (a variance, an importance) as a heat map with a colour bar.

    Returns:
        The figure.
    """
    figure = new_figure(4.6, 3.8)
    ax = figure.add_subplot()
    shown = ax.imshow(_image(values, image_shape), cmap=cmap, interpolation="nearest")
    ax.set_xlabel("pixel column")
    ax.set_ylabel("pixel row")
    ax.set_title(title)
    figure.colorbar(shown, ax=ax, label=colorbar_label)
    return figure


@styled
def projection(
    points: np.ndarray,
    y: np.ndarray,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Figure:
    """A 2-D scatter of a projection (PCA, t-SNE), coloured by class and labelled at each centre.

    Returns:
        The figure.
    """
    points = np.asarray(points)
    y = np.asarray(y)
    figure = new_figure(6.4, 5.4)
    ax = figure.add_subplot()
    classes = np.unique(y)
    colours = matplotlib.colormaps[CLASS_CMAP]
    for index, label in enumerate(classes):
        members = points[y == label]
        colour = colours(index % 10)
        ax.scatter(members[:, 0], members[:, 1], s=9, alpha=0.6, color=colour, label=str(label))
        centre = np.median(members, axis=0)
        ax.text(
            centre[0],
            centre[1],
            str(label),
            fontsize=14,
            fontweight="bold",
            ha="center",
            va="center",
            color=colour,
            bbox={"boxstyle": "circle,pad=0.2", "facecolor": "white", "alpha": 0.8, "lw": 0},
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(title="class", loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2)
    return figure
