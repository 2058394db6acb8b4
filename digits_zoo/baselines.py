"""Evaluating zoo entries (the baselines by default) into a run's leaderboard.

Each evaluated entry also leaves its out-of-fold probabilities in
``RUN_DIR/baselines/<name>.oof.npy`` (as a search trial does in ``trials/``),
so the greedy ensemble selection after a search can weigh it among the trials.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

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


def baseline_threads() -> int:
    """How many baselines are evaluated at once: one per core, at most 2.

    See :func:`_evaluate_entries`.
    """
    return max(1, min(2, os.cpu_count() or 1))


def _evaluate_entries(run: Run, entries: list, progress: Callable[[str], None]):
    """Evaluates the entries, :func:`baseline_threads` at a time, merging each row as it ends.

    scikit-learn's fits and predictions spend most of their time in compiled
    code that releases the GIL, so two threads, each with one BLAS/OpenMP
    thread, keep two cores busy without a second process's imports. Each
    model's numbers do not depend on which thread ran it (every estimator has
    its own seed, and BLAS has one thread either way). The rows are merged by
    this thread only, as each model ends; the progress lines come in that
    order, numbered as they end. A list with a network in it is evaluated one
    model at a time.
    """
    board: list[dict[str, Any]] = []
    # Networks train one at a time: Keras's state is per process, and XLA has threads of its own.
    threads = baseline_threads() if all(entry.kind == "sklearn" for entry in entries) else 1

    def evaluate(entry) -> tuple[Any, Any]:
        estimator = create_model(entry.name, seed=run.seed)
        return entry, evaluate_model(entry.name, entry.kind, estimator, run.dataset, run.folds)

    # One BLAS/OpenMP thread per model: two busy fits with a thread per core each
    # made an MLP fit 45x slower. Set one at a time too, so that a model's numbers
    # do not depend on how many ran at once (an iterative solver's do on the threads).
    with threadpool_limits(1), ThreadPoolExecutor(max_workers=threads) as pool:
        pending = set()
        queue = list(entries)
        done_count = 0
        try:
            while queue or pending:
                while queue and len(pending) < threads:
                    pending.add(pool.submit(evaluate, queue.pop(0)))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    entry, result = future.result()
                    done_count += 1
                    board = _keep(run, entry, result)
                    row = next(r for r in board if r["model"] == entry.name)
                    progress(
                        f"[{done_count}/{len(entries)}] {entry.name:<20} "
                        f"cv {row['cv_accuracy_mean']:.4f} ± {row['cv_accuracy_std']:.4f}  "
                        f"test {row['test_accuracy']:.4f}  fit {row['fit_seconds']:.2f}s"
                    )
        except BaseException:
            # Ctrl-C or an error: start nothing more; what finished is kept.
            for future in pending:
                future.cancel()
            raise
    return board


def _keep(run: Run, entry, result) -> list[dict[str, Any]]:
    """Saves one evaluated entry's model and out-of-fold probabilities, then merges its row."""
    row = result.row()
    row["source"] = "baselines"
    row["model_path"] = save_fitted(result.fitted, run.path, entry.name)
    if result.out_of_fold is not None:
        write_baseline_out_of_fold(run.path, entry.name, result.out_of_fold)
    # The row last: once it is on the leaderboard, its files are on disk too.
    return merge_rows(run.path, [row])


def write_baseline_out_of_fold(run_dir: str | Path, name: str, probabilities: np.ndarray) -> None:
    """Writes a baseline's out-of-fold probabilities (atomically)."""
    write_array(baseline_out_of_fold_path(run_dir, name), probabilities)


def read_baseline_out_of_fold(run_dir: str | Path, name: str) -> np.ndarray | None:
    """A baseline's out-of-fold probabilities, or ``None`` if it has none.

    A name that is not a plain file name has none either.

    Raises:
        ZooError: the file is damaged (empty, cut short, not a ``.npy`` file).
    """
    try:
        path = baseline_out_of_fold_path(run_dir, name)
    except ZooError:
        return None
    return read_array(path, "out-of-fold probabilities")
