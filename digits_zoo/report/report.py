"""A run's report: its figures and an ``index.html`` that shows them (``digits-zoo report``).

Writes into ``RUN_DIR/report/``:

* ``leaderboard.png``: CV accuracy per model, fold spread as error bars, test accuracy marked;
* ``confusion_matrix.png`` and ``misclassified.png``: the best model on the held-out test split;
* ``reliability.png`` and ``coverage.png``: how far the best model's confidence can be
  trusted on the test split, as it comes and with the temperature an export applies;
* ``hyperparameter_effects.png`` and ``best_so_far.png``: the search's trials (``trials.csv``);
* ``learning_curves.png``: training and validation loss per epoch of the top trials;
* ``index.html``: every figure and the leaderboard table, with a note where a part is missing
  (the page is ``template.html``, filled with HTML-escaped values).

Figures are drawn through matplotlib's Agg canvas (no pyplot, no display
needed). The report is built in a temporary folder beside ``report/`` and
swapped in at the end, so a failed report never leaves half of one.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, NamedTuple

import numpy as np

from digits_zoo.artifacts import DamagedModel, load_run_model, remove_stale
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.report.figures.calibration import coverage_chart, reliability_diagram
from digits_zoo.report.figures.predictions import confusion_matrix, misclassified_gallery
from digits_zoo.report.figures.search import (
    best_so_far,
    completed_trials,
    hyperparameter_effects,
    leaderboard_chart,
    learning_curves,
)
from digits_zoo.report.figures.style import save_figure
from digits_zoo.rundir import (
    LEADERBOARD,
    REPORT_DIR,
    TRIALS_CSV,
    inside,
    report_dir,
    run_lock,
    trials_csv_path,
)
from digits_zoo.runs import load_run, read_run_meta
from digits_zoo.ship.rows import row_temperature
from search.records import read_record, read_trials_csv
from zoo.calibration import (
    apply_temperature,
    coverage_curve,
    expected_calibration_error,
    reliability_curve,
)
from zoo.errors import ZooError
from zoo.files import atomic_write_text
from zoo.space import DenseConfig
from zoo.validation import check_integer

# Figure file names, in the order index.html shows them.
FIGURES = (
    "leaderboard.png",
    "confusion_matrix.png",
    "misclassified.png",
    "reliability.png",
    "coverage.png",
    "hyperparameter_effects.png",
    "best_so_far.png",
    "learning_curves.png",
)
NO_SEARCH = "no search in this run"
# The figures drawn from the best model's predictions on the test split.
BEST_MODEL_FIGURES = (
    "confusion_matrix.png",
    "misclassified.png",
    "reliability.png",
    "coverage.png",
)


@dataclass
class Report:
    """What :func:`write_report` wrote.

    Attributes:
        folder: ``RUN_DIR/report``.
        index: the ``index.html`` path.
        figures: figure file name to its path, for every figure written.
        notes: figure file name to why it was left out, for every figure skipped.
    """

    folder: Path
    index: Path
    figures: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class SplitPredictions(NamedTuple):
    """A fitted leaderboard model's predictions on its run's held-out test split."""

    x_raw: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    image_shape: tuple[int, ...]
    classes: list[int]
    probabilities: np.ndarray | None = None
    temperature: float = 1.0


def predict_test_split(run_dir: str | Path, row: dict[str, Any]) -> SplitPredictions:
    """Predicts a run's exact held-out test split with a leaderboard row's fitted model.

    Args:
        run_dir: the run directory.
        row: a leaderboard row (its ``model_path`` names the fitted model).

    Returns:
        The raw test images, their labels and the model's predictions; its
        probabilities too (``None`` for a model without ``predict_proba``)
        and the temperature its export would apply (1 without out-of-fold
        probabilities).

    Raises:
        ZooError: the row names no model file, the file is missing, or the
            run's data changed since it ran.
    """
    run_dir = Path(run_dir)
    if not row.get("model_path"):
        raise ZooError(f"the leaderboard row of {row['model']} names no model file")
    model_file = inside(run_dir, row["model_path"])
    if not model_file.is_file():
        raise ZooError(f"the fitted model of {row['model']} is missing ({row['model_path']})")
    run = load_run(run_dir)
    try:
        model = load_run_model(run_dir, row["model_path"])
    except DamagedModel as error:
        raise ZooError(
            f"{error}; run digits-zoo export {run_dir} --model {row['model']} to refit it"
        ) from None
    dataset = run.dataset
    x_test = dataset.scale(dataset.x_test)
    y_pred = np.asarray(model.predict(x_test))
    probabilities = (
        np.asarray(model.predict_proba(x_test)) if hasattr(model, "predict_proba") else None
    )
    return SplitPredictions(
        dataset.x_test,
        dataset.y_test,
        y_pred,
        tuple(dataset.image_shape),
        dataset.classes,
        probabilities,
        row_temperature(run, row)["temperature"] if probabilities is not None else 1.0,
    )


def write_report(
    run_dir: str | Path,
    *,
    top: int | None = 25,
    curves: int = 3,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Draws a run's figures and writes ``RUN_DIR/report/index.html`` showing them.

    Args:
        run_dir: a run directory (``run.json`` and ``leaderboard.csv``).
        top: leaderboard rows in the bar chart (all when ``None``); the HTML table has all.
        curves: top trials whose learning curves are drawn.
        progress: receives one line per figure written.

    Returns:
        What was written, and a note for each figure left out.

    Raises:
        ZooError: not a run directory, no leaderboard, or a bad ``top``/``curves``.
    """
    if top is not None:
        check_integer("--top", top, 1)
    check_integer("--curves", curves, 1)
    say = progress or (lambda line: None)
    run_dir = Path(run_dir)
    meta = read_run_meta(run_dir)
    rows = read_leaderboard(run_dir)
    if not rows:
        raise ZooError(
            f"the leaderboard of {str(run_dir)!r} is empty; run digits-zoo baselines or search "
            "into it first"
        )
    with run_lock(run_dir):
        return _write_report(run_dir, meta, rows, top, curves, say)


def _write_report(run_dir, meta, rows, top, curves, say) -> Report:
    # Under the run's lock, staging folders of an earlier report are leftovers of a kill;
    # the same rule as an export's and a save's leftovers.
    remove_stale(run_dir, ".report-")
    inside(run_dir, REPORT_DIR)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=run_dir))
    try:
        figures, notes = _draw_all(run_dir, staging, rows, top, curves, say)
        page = render_html(run_dir, meta, rows, figures, notes)
        atomic_write_text(staging / "index.html", page)
        folder = _swap_in(staging, report_dir(run_dir))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = {name: folder / name for name in figures}
    say(f"report: {folder / 'index.html'}")
    return Report(folder=folder, index=folder / "index.html", figures=written, notes=notes)


def _draw_all(
    run_dir: Path,
    out: Path,
    rows: list[dict[str, Any]],
    top: int | None,
    curves: int,
    say: Callable[[str], None],
) -> tuple[list[str], dict[str, str]]:
    figures: list[str] = []
    notes: dict[str, str] = {}

    def save(name: str, figure) -> None:
        save_figure(figure, out / name)
        figures.append(name)
        say(f"wrote {name}")

    save("leaderboard.png", leaderboard_chart(rows, top=top))

    best = rows[0]
    try:
        predictions = predict_test_split(run_dir, best)
    except (ZooError, FileNotFoundError) as error:
        for name in BEST_MODEL_FIGURES:
            notes[name] = f"best model's figures left out: {error}"
    else:
        x_test, y_test, y_pred, image_shape, classes = predictions[:5]
        accuracy = float(np.mean(y_pred == y_test))
        save(
            "confusion_matrix.png",
            confusion_matrix(
                y_test,
                y_pred,
                classes=classes,
                title=f"Confusion matrix of {best['model']}\n"
                f"held-out test split, accuracy {accuracy:.2%}",
            ),
        )
        save(
            "misclassified.png",
            misclassified_gallery(
                x_test, y_test, y_pred, image_shape, title=f"{best['model']}, test split"
            ),
        )
        if predictions.probabilities is None:
            for name in ("reliability.png", "coverage.png"):
                notes[name] = f"{best['model']} gives no probabilities"
        else:
            for name, figure in _confidence_figures(best["model"], predictions).items():
                save(name, figure)

    trials = read_trials_csv(run_dir)
    done = completed_trials(trials)
    if not trials:
        for name in ("hyperparameter_effects.png", "best_so_far.png", "learning_curves.png"):
            notes[name] = NO_SEARCH
        return figures, notes
    if not done:
        for name in ("hyperparameter_effects.png", "best_so_far.png", "learning_curves.png"):
            notes[name] = f"none of the search's {len(trials)} trials completed"
        return figures, notes
    save("hyperparameter_effects.png", hyperparameter_effects(done))
    save("best_so_far.png", best_so_far(done))
    leaders = sorted(done, key=lambda t: (-t["cv_accuracy_mean"], t["trial_id"]))[:curves]
    histories = {}
    for trial in leaders:
        record = read_record(run_dir, trial["trial_id"])
        if record.get("histories"):
            label = (
                f"{trial['trial_id']}: CV {trial['cv_accuracy_mean']:.2%}\n{_short_config(trial)}"
            )
            histories[label] = record["histories"]
    if histories:
        save(
            "learning_curves.png",
            learning_curves(
                histories,
                title=f"Learning curves of the top {len(histories)} trials "
                "(mean over CV folds; band: min to max)",
            ),
        )
    else:
        notes["learning_curves.png"] = "the top trials recorded no learning curves"
    return figures, notes


def _confidence_figures(model: str, predictions: SplitPredictions) -> dict[str, Any]:
    """The reliability diagram and the coverage chart of a model's test probabilities."""
    y, classes = predictions.y_true, np.asarray(predictions.classes)
    versions = {"as the model gives them": predictions.probabilities}
    if predictions.temperature != 1.0:
        label = f"temperature {predictions.temperature:.2f} (as exported)"
        versions[label] = apply_temperature(predictions.probabilities, predictions.temperature)
    reliability = {
        f"{label}, ECE {expected_calibration_error(p, y, classes):.2%}": reliability_curve(
            p, y, classes
        )
        for label, p in versions.items()
    }
    # The temperature never reorders a row's classes, but it can reorder rows by confidence.
    coverage = {label: coverage_curve(p, y, classes) for label, p in versions.items()}
    return {
        "reliability.png": reliability_diagram(
            reliability, title=f"Reliability of {model}, held-out test split"
        ),
        "coverage.png": coverage_chart(
            coverage, title=f"Accuracy against coverage of {model}, test split"
        ),
    }


def _short_config(trial: dict[str, Any]) -> str:
    try:
        text = DenseConfig.from_dict(trial).short()
    except (ZooError, TypeError, ValueError):
        text = f"{trial.get('n_layers')}x{trial.get('units')} {trial.get('activation')}"
    # Two short lines fit above a panel; one long line would run into its neighbour.
    return "\n".join(textwrap.wrap(text, width=42)[:2])


def _swap_in(staging: Path, target: Path) -> Path:
    """Replaces ``target`` by ``staging`` with renames, so readers see one report or the other."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".report-old-", dir=target.parent))
        target.rename(old / REPORT_DIR)
    staging.chmod(0o755)  # mkdtemp makes it private; a report is meant to be shared.
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _read_parts() -> dict[str, Template]:
    """The named parts of ``template.html``, each running from its ``part:`` line to the next."""
    text = resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8")
    pieces = re.split(r"^<!-- part: (\w+) -->\n", text, flags=re.MULTILINE)
    return {
        name: Template(body.rstrip("\n"))
        for name, body in zip(pieces[1::2], pieces[2::2], strict=True)
    }


_PARTS = _read_parts()

_SECTIONS = (
    ("Leaderboard", ("leaderboard.png",)),
    ("Best model on the held-out test split", BEST_MODEL_FIGURES),
    ("Search", ("hyperparameter_effects.png", "best_so_far.png", "learning_curves.png")),
)

_ALT = {
    "leaderboard.png": "Leaderboard bar chart of CV accuracy with fold spread and test accuracy",
    "confusion_matrix.png": "Confusion matrix of the best model on the test split",
    "misclassified.png": "Misclassified test digits with true and predicted labels",
    "reliability.png": "Reliability diagram: test accuracy against confidence, per bin",
    "coverage.png": "Test accuracy against the share of images answered, most confident first",
    "hyperparameter_effects.png": "CV accuracy against depth, width, activation, learning rate",
    "best_so_far.png": "Best CV accuracy so far over the search's trials",
    "learning_curves.png": "Training and validation loss per epoch of the top trials",
}


def _fill(part: str, markup: dict[str, str] | None = None, **values: Any) -> str:
    """Fills one part of ``template.html``: ``values`` as text, HTML-escaped; ``markup`` as it is."""
    escaped = {key: html.escape(str(value)) for key, value in values.items()}
    return _PARTS[part].substitute(escaped, **(markup or {}))


def _table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        folds = json.loads(row.get("cv_folds") or "[]")
        lines.append(
            _fill(
                "row",
                rank=row.get("rank", ""),
                model=row["model"],
                kind=row.get("kind", ""),
                source=row.get("source", ""),
                cv_accuracy=f"{row['cv_accuracy_mean']:.2%} ± {row['cv_accuracy_std']:.2%}",
                folds=len(folds),
                test_accuracy=f"{row['test_accuracy']:.2%}",
                test_macro_f1=f"{row['test_macro_f1']:.4f}",
                fit_seconds=f"{row['fit_seconds']:.2f}",
                predict_seconds=f"{row['predict_seconds_per_1000']:.4f}",
                params=f"{row['params']:,}" if isinstance(row.get("params"), int) else "",
            )
        )
    return _fill("table", {"rows": "\n".join(lines)})


def render_html(
    run_dir: Path,
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    figures: list[str],
    notes: dict[str, str],
) -> str:
    """Renders ``index.html`` from ``template.html``: summary, leaderboard, each figure or its note.

    Returns:
        The HTML text (figures referenced by relative file name).
    """
    dataset = meta.get("dataset", {})
    shape = "x".join(str(n) for n in dataset.get("image_shape", []))
    summary = (
        f"{dataset.get('name', '?')}: {dataset.get('n_train', '?')} training and "
        f"{dataset.get('n_test', '?')} test images of {shape} pixels; "
        f"{meta.get('folds', '?')}-fold cross-validation, seed {meta.get('seed', '?')}; "
        f"device {meta.get('device', '?')}; created {meta.get('created', '?')}"
    )
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    sources = [_fill("source", file=LEADERBOARD)]
    if trials_csv_path(run_dir).is_file():
        sources.append(_fill("source", file=TRIALS_CSV))
    sections = []
    for title, names in _SECTIONS:
        sections.append(_fill("heading", title=title))
        shown_notes = set()
        for name in names:
            if name in figures:
                sections.append(_fill("figure", file=name, alt=_ALT[name]))
            elif name in notes and notes[name] not in shown_notes:
                shown_notes.add(notes[name])
                sections.append(_fill("note", note=notes[name]))
        if title == "Leaderboard":
            sections.append(_table(rows))
    best = rows[0]
    page = _fill(
        "page",
        {"sources": " · ".join(sources), "sections": "\n".join(sections)},
        run_name=run_dir.resolve().name,
        summary=summary,
        versions=versions,
        best_model=best["model"],
        best_cv=f"{best['cv_accuracy_mean']:.2%}",
        best_cv_std=f"{best['cv_accuracy_std']:.2%}",
        best_test=f"{best['test_accuracy']:.2%}",
    )
    # The part ends at </html>; the file, as any text file, ends in a newline.
    return page + "\n"
