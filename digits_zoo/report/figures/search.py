"""Figures of a run's leaderboard and search: ranking, hyperparameter effects, learning curves."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib import lines, patches, ticker
from matplotlib.figure import Figure

from digits_zoo.report.figures.style import new_figure, styled

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
        floats = (
            "cv_accuracy_mean",
            "cv_accuracy_std",
            "learning_rate",
            "dropout_rate",
            "l2",
            "augment_strength",
        )
        for key in (*floats, "label_smoothing"):
            if parsed.get(key) not in (None, ""):
                parsed[key] = float(parsed[key])
        for key in ("n_layers", "units", "batch_size", "conv_filters"):
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
    ("augment_strength", "strength of the copies (augment_strength)", "linear"),
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
    figure = new_figure(15.0, 11.4)
    axes = list(figure.subplots(3, 3, squeeze=False).flat)
    best = max(done, key=lambda t: t["cv_accuracy_mean"]) if done else None
    generator = np.random.default_rng(0)
    for ax, (name, label, scale) in zip(axes, EFFECTS, strict=True):
        present = [t for t in done if t.get(name) not in (None, "")]
        if name == "augment_strength":
            # A strength scales the training copies: without copies it means nothing.
            present = [t for t in present if t.get("augment") != "none"]
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
