"""Figures of digits, models and searches, shared by ``digits-zoo report`` and the notebooks.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so
nothing here touches a global backend: the report saves figures through Agg
on any headless machine, and a notebook shows them inline. Functions take
plain arrays and dicts (leaderboard rows, trial records), never models.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import colors, lines, patches, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(handle)
    try:
        with matplotlib.rc_context(STYLE):
            figure.savefig(temporary, format="png", facecolor="white")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _image(row: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    return np.asarray(row, dtype="float32").reshape(tuple(image_shape))


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


# --- digits ---------------------------------------------------------------------------------


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


# --- predictions ------------------------------------------------------------------------------


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
    position = {label: index for index, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for true, predicted in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        matrix[position[true], position[predicted]] += 1
    return matrix, labels


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


# --- sweeps (notebooks) -----------------------------------------------------------------------


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
    scale = 100.0 if percent else 1.0
    scores = [np.asarray(s, dtype=float) * scale for s in fold_scores]
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
        if panel.get("log2"):
            ax.set_xscale("log", base=2)
            ax.set_xticks(panel["values"], [str(v) for v in panel["values"]])
            ax.minorticks_off()
        elif panel.get("log"):
            ax.set_xscale("log")
            ax.set_xticks(panel["values"], [str(v) for v in panel["values"]])
            ax.minorticks_off()
        elif not any(isinstance(v, str) for v in panel["values"]):
            ax.set_xticks(panel["values"], [str(v) for v in panel["values"]])
        ax.set_xlabel(panel["xlabel"])
        ax.set_title(panel.get("title", ""))
        if len(panel["scores"]) > 1:
            ax.legend(loc="best", fontsize=9, framealpha=0.85)
    if title:
        figure.suptitle(title)
    return figure


# --- leaderboard and search (report) ----------------------------------------------------------

_SOURCE_COLOURS = {
    ("baselines", "sklearn"): "#7f9cc0",
    ("baselines", "keras"): "#f0a35e",
    ("search", "keras"): "#4caf7a",
}


def _fold_count(row: dict[str, Any]) -> int:
    try:
        return len(json.loads(row.get("cv_folds") or "[]"))
    except ValueError:
        return 0


@styled
def leaderboard_chart(rows: Sequence[dict[str, Any]], *, top: int | None = 25) -> Figure:
    """The leaderboard as horizontal bars of CV accuracy, fold spread as error bars, test marked.

    Args:
        rows: leaderboard rows, best first (``digits_zoo.leaderboard.read_leaderboard``).
        top: only the best rows (all when ``None``).

    Returns:
        The figure.
    """
    rows = list(rows)[:top] if top else list(rows)
    shown = rows[::-1]  # barh draws bottom-up; the best goes on top.
    n_folds = max((_fold_count(r) for r in rows), default=0)
    means = np.array([r["cv_accuracy_mean"] for r in shown], dtype=float) * 100
    spreads = np.array([r["cv_accuracy_std"] for r in shown], dtype=float) * 100
    tests = np.array([r["test_accuracy"] for r in shown], dtype=float) * 100
    colours = [
        _SOURCE_COLOURS.get((r.get("source", ""), r.get("kind", "")), "#a0a0a0") for r in shown
    ]
    lowest = float(min((means - spreads).min(), tests.min()))
    # Accuracies sit close together near the top; zoom in, on a round number.
    left = max(0.0, math.floor((lowest - 3) / 5) * 5)
    longest = max(len(str(r["model"])) for r in rows)
    figure = new_figure(max(7.5, 5.5 + 0.09 * longest), 1.6 + 0.42 * len(rows))
    ax = figure.add_subplot()
    positions = np.arange(len(shown))
    ax.barh(
        positions,
        means - left,
        left=left,
        color=colours,
        height=0.65,
        xerr=spreads,
        error_kw={"capsize": 3, "elinewidth": 1.2, "ecolor": "#333333"},
    )
    ax.scatter(tests, positions, marker="D", s=36, color="black", zorder=3)
    ax.set_yticks(positions, [str(r["model"]) for r in shown])
    ax.set_xlim(left, 100.5)
    ax.set_xlabel(
        f"accuracy (%), axis starts at {left:g} %" if left else "accuracy (%)",
    )
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Leaderboard: {n_folds}-fold CV accuracy and held-out test accuracy")
    handles = [
        patches.Patch(color=colour, label=f"{source} ({kind})")
        for (source, kind), colour in _SOURCE_COLOURS.items()
        if any((r.get("source"), r.get("kind")) == (source, kind) for r in rows)
    ]
    handles.append(
        lines.Line2D(
            [], [], color="#333333", marker="|", linestyle="none", markersize=10,
            label="± 1 std over folds",
        )
    )  # fmt: skip
    handles.append(
        lines.Line2D([], [], color="black", marker="D", linestyle="none", label="test accuracy")
    )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def completed_trials(trials: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that finished with a CV score, with numbers parsed."""
    done = []
    for trial in trials:
        if trial.get("status") != "COMPLETED" or trial.get("cv_accuracy_mean") in (None, ""):
            continue
        parsed = dict(trial)
        floats = ("cv_accuracy_mean", "cv_accuracy_std", "learning_rate", "dropout_rate", "l2")
        for key in (*floats, "label_smoothing"):
            if parsed.get(key) not in (None, ""):
                parsed[key] = float(parsed[key])
        for key in ("n_layers", "units", "batch_size"):
            if parsed.get(key) not in (None, ""):
                parsed[key] = int(float(parsed[key]))
        done.append(parsed)
    return done


# The hyperparameters whose effect the report shows, with axis labels and scales.
EFFECTS = (
    ("n_layers", "hidden layers", "category"),
    ("units", "units per hidden layer", "log2"),
    ("activation", "activation", "category"),
    ("learning_rate", "learning rate (log scale)", "log"),
    ("dropout_rate", "dropout rate", "linear"),
    ("optimizer", "optimizer", "category"),
    ("augment", "training copies (augment)", "category"),
    ("normalization", "normalization", "category"),
)


@styled
def hyperparameter_effects(trials: Sequence[dict[str, Any]]) -> Figure:
    """CV accuracy of each completed trial against each main hyperparameter.

    Each point is one trial (error bar: one std over its folds); a short bar
    marks the mean of each category. The best trial is a star.

    Args:
        trials: rows of ``trials.csv`` (strings or numbers).

    Returns:
        The figure.
    """
    done = completed_trials(trials)
    figure = new_figure(17.5, 7.6)
    axes = list(figure.subplots(2, 4, squeeze=False).flat)
    best = max(done, key=lambda t: t["cv_accuracy_mean"]) if done else None
    generator = np.random.default_rng(0)
    for ax, (name, label, scale) in zip(axes, EFFECTS, strict=True):
        present = [t for t in done if t.get(name) not in (None, "")]
        ax.set_xlabel(label)
        ax.set_ylabel("CV accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        if not present:
            ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
            continue
        scores = np.array([t["cv_accuracy_mean"] for t in present]) * 100
        spreads = np.array([t["cv_accuracy_std"] or 0.0 for t in present]) * 100
        values = [t[name] for t in present]
        if scale == "category":
            categories = sorted(set(values), key=lambda v: (isinstance(v, str), v))
            index = {v: i for i, v in enumerate(categories)}
            positions = np.array([index[v] for v in values], dtype=float)
            positions += generator.uniform(-0.12, 0.12, len(positions))
            for category, where in index.items():
                mean = scores[[v == category for v in values]].mean()
                ax.plot([where - 0.3, where + 0.3], [mean, mean], color="#c0392b", lw=2)
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
            ax.set_xlim(-0.6, len(categories) - 0.4)
        else:
            positions = np.array(values, dtype=float)
            if scale == "log2":
                ax.set_xscale("log", base=2)
                ticks = sorted(set(values))
                ax.set_xticks(ticks, [str(t) for t in ticks])
                ax.minorticks_off()
            elif scale == "log":
                ax.set_xscale("log")
                # Ticks at 1 and 3 of each decade, written out: 0.0003, 0.001, 0.003...
                ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 3.0)))
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.minorticks_off()
                low, high = min(positions), max(positions)
                if high / low < 3.5:
                    # A narrow range would show one tick or none; widen it around the points.
                    middle = math.sqrt(low * high)
                    ax.set_xlim(middle / 2.2, middle * 2.2)
        ax.errorbar(
            positions, scores, yerr=spreads, fmt="o", color="#2c7fb8", alpha=0.75, capsize=2
        )
        if best is not None and best.get(name) not in (None, ""):
            at = present.index(best)
            ax.scatter(
                positions[at], scores[at], marker="*", s=220, color="#f1c40f",
                edgecolor="black", zorder=4,
            )  # fmt: skip
    figure.suptitle(
        f"Hyperparameter effects: CV accuracy of {len(done)} completed trials "
        "(★ best; red bar: category mean)"
    )
    return figure


def _tuner_of(trial_id: str) -> str:
    return str(trial_id).rsplit("_", 1)[0]


def _trial_number(trial_id: str) -> int:
    tail = str(trial_id).rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@styled
def best_so_far(trials: Sequence[dict[str, Any]]) -> Figure:
    """Each trial's CV accuracy in trial order, with the best-so-far curve (one per tuner).

    Returns:
        The figure.
    """
    done = completed_trials(trials)
    figure = new_figure(7.5, 4.4)
    ax = figure.add_subplot()
    tuners = sorted({_tuner_of(t["trial_id"]) for t in done})
    colours = matplotlib.colormaps["Dark2"]
    for index, tuner in enumerate(tuners):
        mine = sorted(
            (t for t in done if _tuner_of(t["trial_id"]) == tuner),
            key=lambda t: _trial_number(t["trial_id"]),
        )
        numbers = np.arange(1, len(mine) + 1)
        scores = np.array([t["cv_accuracy_mean"] for t in mine]) * 100
        colour = colours(index % 8)
        ax.scatter(numbers, scores, color=colour, alpha=0.6, s=28, label=f"{tuner}: each trial")
        ax.step(
            numbers,
            np.maximum.accumulate(scores),
            where="post",
            color=colour,
            lw=2,
            label=f"{tuner}: best so far",
        )
    ax.set_xlabel("trial number (completed trials, in order)")
    ax.set_ylabel("CV accuracy (%)")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Search progress: best CV accuracy so far")
    return figure


@styled
def learning_curves(
    curves: dict[str, Sequence[dict[str, Sequence[float]]]],
    *,
    metric: str = "loss",
    title: str = "Learning curves (mean over folds, band: min to max)",
    columns: int = 3,
) -> Figure:
    """Training and validation curves per epoch, one panel per model, averaged over CV folds.

    Args:
        curves: a panel title (a trial, a model) to its per-fold Keras
            histories (dicts holding ``loss``, ``val_loss``...).
        metric: ``loss`` or ``accuracy``.
        title: the figure's title.
        columns: panels per row.

    Returns:
        The figure.
    """
    names = list(curves)
    columns = max(1, min(columns, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure = new_figure(4.6 * columns + 0.3, 3.6 * rows + 0.5)
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    ylabel = "loss (cross-entropy)" if metric == "loss" else "accuracy (%)"
    scale = 100.0 if metric == "accuracy" else 1.0
    for ax, name in zip(axes, names, strict=False):
        histories = [h for h in curves[name] if h.get(metric)]
        for key, label, colour in (
            (metric, "training", "#2c7fb8"),
            (f"val_{metric}", "validation", "#d95f02"),
        ):
            series = [np.asarray(h[key], dtype=float) * scale for h in histories if h.get(key)]
            if not series:
                continue
            length = min(len(s) for s in series)
            stacked = np.stack([s[:length] for s in series])
            epochs = np.arange(1, length + 1)
            ax.plot(epochs, stacked.mean(axis=0), color=colour, lw=2, label=label, marker=".")
            ax.fill_between(
                epochs, stacked.min(axis=0), stacked.max(axis=0), color=colour, alpha=0.2, lw=0
            )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.suptitle(title)
    return figure
