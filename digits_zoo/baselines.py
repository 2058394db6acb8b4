"""Evaluating zoo entries (the baselines by default) into a run's leaderboard.

Each evaluated entry also leaves its out-of-fold probabilities in
``RUN_DIR/baselines/<name>.oof.npy`` (as a search trial does in ``trials/``),
so the greedy ensemble selection after a search can weigh it among the trials.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.artifacts import save_fitted
from digits_zoo.leaderboard import merge_rows
from digits_zoo.rundir import baseline_out_of_fold_path, run_lock
from digits_zoo.runs import Run
from zoo.errors import ZooError
from zoo.files import read_array, write_array
from zoo.protocol import evaluate_model
from zoo.registry import create_model, list_models, model_entry


def default_baselines() -> list[str]:
    """The scikit-learn entries of the zoo."""
    return list_models(kind="sklearn")


def run_baselines(
    run: Run,
    models: list[str] | None = None,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Evaluates zoo entries under the run's protocol and merges them into its leaderboard.

    Each model's row is merged as soon as it is measured, so an interrupted
    run keeps what it finished.

    Args:
        run: the opened run (data, folds, seed).
        models: zoo names; the scikit-learn baselines when ``None``.
        progress: receives one line per model.

    Returns:
        The whole leaderboard after the merge, best first.

    Raises:
        ZooError: an unknown model name (before anything is trained).
    """
    names = models or default_baselines()
    entries = [model_entry(name) for name in names]
    with run_lock(run.path):
        return _evaluate_entries(run, entries, progress)


def _evaluate_entries(run: Run, entries: list, progress: Callable[[str], None]):
    board: list[dict[str, Any]] = []
    for number, entry in enumerate(entries, start=1):
        estimator = create_model(entry.name, seed=run.seed)
        result = evaluate_model(entry.name, entry.kind, estimator, run.dataset, run.folds)
        row = result.row()
        row["source"] = "baselines"
        row["model_path"] = save_fitted(result.fitted, run.path, entry.name)
        if result.out_of_fold is not None:
            write_baseline_out_of_fold(run.path, entry.name, result.out_of_fold)
        # The row last: once it is on the leaderboard, its files are on disk too.
        board = merge_rows(run.path, [row])
        progress(
            f"[{number}/{len(entries)}] {entry.name:<20} cv {row['cv_accuracy_mean']:.4f} "
            f"± {row['cv_accuracy_std']:.4f}  test {row['test_accuracy']:.4f}  "
            f"fit {row['fit_seconds']:.2f}s"
        )
    return board


def write_baseline_out_of_fold(run_dir: str | Path, name: str, probabilities: np.ndarray) -> None:
    """Writes a baseline's out-of-fold probabilities (atomically)."""
    write_array(baseline_out_of_fold_path(run_dir, name), probabilities)


def read_baseline_out_of_fold(run_dir: str | Path, name: str) -> np.ndarray | None:
    """A baseline's out-of-fold probabilities, or ``None`` if it has none (or a damaged one).

    A name that is not a plain file name has none either.
    """
    try:
        path = baseline_out_of_fold_path(run_dir, name)
    except ZooError:
        return None
    return read_array(path)
