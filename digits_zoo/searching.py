"""The search runner: keras-tuner searches over a run, then their best trials on the leaderboard.

``search`` runs the trials (state in ``RUN_DIR/tuner/``, records in
``RUN_DIR/trials/``); this module gives it the run's data and folds, then
refits the top trials on the whole training part, tests them once on the
held-out split, and adds them (and, for the dense nets, their ensemble) to the
leaderboard. A search explores one model family (``zoo.families``), or several
one after another under one time budget (``--family all``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from digits_zoo.artifacts import is_loadable, load_run_model, save_fitted
from digits_zoo.leaderboard import merge_rows, read_leaderboard
from digits_zoo.rundir import leaderboard_path, run_lock
from digits_zoo.runs import Run
from search.records import (
    best_configs,
    completed_trials,
    duration,
    read_out_of_fold,
    write_trials_csv,
)
from search.runner import is_remote_worker, run_family_trials
from search.spec import DENSE_FIRST_TRIAL, SearchContext, SearchSpec
from zoo.ensemble import DenseEnsembleClassifier
from zoo.errors import ZooError
from zoo.families import DENSE, expand_families, get_family, parse_fixed_for
from zoo.protocol import config_json, refit_and_test, test_fitted

# The best configurations of an earlier run that a warm-started search begins with.
WARM_START_TRIALS = 3


def search_context(run: Run) -> SearchContext:
    """What the search needs of a run: its folder, data, folds, seed and data source."""
    source = {
        "data": run.meta["data"],
        "test_size": run.meta["test_size"],
        "folds": run.n_folds,
        "seed": run.seed,
    }
    return SearchContext(run.path, run.dataset, run.folds, run.seed, source)


def search_specs(
    family: str,
    fix: list[str] | None = None,
    warm_start: str | Path | None = None,
    strong_start: bool = False,
    **settings: Any,
) -> list[SearchSpec]:
    """The search settings of ``--family NAME``: one spec per family searched, in search order.

    Args:
        family: a family's name, or ``all`` (the classic families, then ``dense``).
        fix: ``--fix NAME=VALUE`` assignments; with several families each pins
            its name in every family that declares it.
        warm_start: an earlier run's folder; each family's first trials are
            the best configurations of its trials there
            (:data:`WARM_START_TRIALS` at most).
        strong_start: without ``warm_start``, a random or Bayesian dense
            search's first trial is ``search.spec.DENSE_FIRST_TRIAL`` (the
            command line's default).
        **settings: the other :class:`search.spec.SearchSpec` fields.

    Raises:
        ZooError: an unknown family or hyperparameter, bad settings, or a
            warm-start folder with no completed trial of the families.
    """
    families = expand_families(family)
    warm: dict[str, list[dict[str, Any]]] = {name: [] for name in families}
    if strong_start and DENSE in warm and settings.get("tuner", "bayesian") != "hyperband":
        warm[DENSE] = [dict(DENSE_FIRST_TRIAL)]
    if warm_start is not None:
        limit = min(WARM_START_TRIALS, int(settings.get("max_trials", WARM_START_TRIALS)))
        warm = {name: best_configs(warm_start, name, limit) for name in families}
        if not any(warm.values()):
            raise ZooError(
                f"--warm-start found no completed {family} trial in {warm_start} (got none); "
                "pass the folder of a search of the same family"
            )
    fixed = parse_fixed_for(families, list(fix or []))
    early_stop = settings.pop("early_stop", False)
    return [
        SearchSpec(
            **settings,
            family=name,
            fixed=fixed[name],
            # Only a family trained by epochs has curves to compare.
            early_stop=early_stop and get_family(name).trains_by_epochs,
            warm_start=warm[name],
        )
        for name in families
    ]


def run_search(
    run: Run,
    spec: SearchSpec,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[str], None] = print,
    worker_timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Runs (or resumes) a search, then refits its top trials into the leaderboard.

    Args:
        run: the opened run.
        spec: the search settings.
        workers: trials run at once (see ``search.runner.run_trials``).
        overwrite: forget this search's earlier trials in the run directory.
        progress: receives the progress lines.
        worker_timeout: with workers, seconds without a finished trial after
            which the search is stopped.

    Returns:
        The whole leaderboard, best first.

    Raises:
        ZooError: bad settings, before any training.
    """
    return run_searches(
        run,
        [spec],
        budget_minutes=spec.budget_minutes,
        workers=workers,
        overwrite=overwrite,
        progress=progress,
        worker_timeout=worker_timeout,
    )


def run_searches(
    run: Run,
    specs: list[SearchSpec],
    *,
    budget_minutes: float | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[str], None] = print,
    worker_timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Runs (or resumes) several families' searches under one budget, then refits their top trials.

    The trials of every family run first, one family after another (see
    ``search.runner.run_family_trials`` for how the budget is shared); then
    each family's top trials are refit and tested into the leaderboard, so the
    refits do not eat into the budget of a later family.

    Args:
        run: the opened run.
        specs: one spec per family, in search order (:func:`search_specs`).
        budget_minutes: the time budget the families share, or ``None``.
        workers, overwrite, progress, worker_timeout: as :func:`run_search`.

    Returns:
        The whole leaderboard, best first.

    Raises:
        ZooError: bad settings, before any training.
    """
    # One writer per run directory; a worker of a search spread over hosts by
    # hand writes only its own trials' files, under its chief's lock.
    lock = nullcontext() if is_remote_worker() else run_lock(run.path)
    with lock:
        ran, finish = run_family_trials(
            search_context(run),
            specs,
            budget_minutes=budget_minutes,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
            worker_timeout=worker_timeout,
        )
        if not finish:
            return rank_existing(run)
        board: list[dict[str, Any]] = []
        for spec in ran:
            board = finish_search(run, spec, progress)
        return board or rank_existing(run)


def leaderboard_name(trial: dict[str, Any]) -> str:
    """The leaderboard name of a trial's model.

    ``search_<tuner>_<id>_<layers>x<units>_<activation>`` for a dense net,
    ``search_<tuner>_<family>_<id>`` for a classic model.
    """
    if trial.get("family", DENSE) != DENSE:
        return f"search_{trial['trial_id']}"
    return f"search_{trial['trial_id']}_{trial['n_layers']}x{trial['units']}_{trial['activation']}"


def ensemble_name(spec: SearchSpec, n_members: int) -> str:
    """The leaderboard name of a search's ensemble: ``ensemble_<tuner>_top<n>``."""
    return f"ensemble_{spec.tuner}_top{n_members}"


def finish_search(
    run: Run, spec: SearchSpec, progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Refits the top trials on the whole training part, tests them, merges them into the leaderboard.

    Idempotent: a top trial already on the leaderboard with its model on disk
    is not refit again. A classic model's ``config`` column holds its family's
    hyperparameters and the seed (the names ``--fix`` takes), as a network's
    holds its space's values, the epochs and the seed.

    Returns:
        The whole leaderboard, best first.
    """
    family = spec.model_family
    completed = completed_trials(write_trials_csv(run.path, spec))
    existing = {row["model"]: row for row in rank_existing(run)}
    board = list(existing.values())
    for trial in completed[: spec.top_k]:
        name = leaderboard_name(trial)
        known = existing.get(name)
        if known and known.get("model_path") and is_loadable(run.path, known["model_path"]):
            continue
        config = family.config.from_dict(trial)
        epochs = int(trial["epochs"]) if family.trains_by_epochs else None
        estimator = family.create(config, seed=run.seed, epochs=epochs)
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = refit_and_test(
                name, family.kind, estimator, run.dataset, json.loads(trial["cv_folds"])
            )
        row = result.row()
        if not family.trains_by_epochs:
            row["config"] = json.dumps({**config.to_dict(), "seed": run.seed}, sort_keys=True)
        row["source"] = "search"
        row["model_path"] = save_fitted(result.fitted, run.path, name)
        board = merge_rows(run.path, [row])
        progress(
            f"refit {name}: cv {row['cv_accuracy_mean']:.4f}, test {row['test_accuracy']:.4f} "
            f"({duration(time.monotonic() - started)})"
        )
    if spec.ensemble_size >= 2:
        board = add_ensemble(run, spec, completed[: spec.ensemble_size], progress) or board
    return board or rank_existing(run)


def add_ensemble(
    run: Run,
    spec: SearchSpec,
    members: list[dict[str, Any]],
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]] | None:
    """Adds the soft-voting ensemble of the best trials to the leaderboard.

    Its CV score is measured on the run's folds with no new training: for
    fold ``f`` it averages the members' out-of-fold probabilities on fold
    ``f``'s validation rows, each predicted by the member's fold-``f`` network,
    which never trained on those rows. Its test score averages the refit
    members (already on the leaderboard) on the held-out test split.

    Returns:
        The leaderboard, or ``None`` when there are too few members with
        out-of-fold probabilities on disk (trials of an older search).
    """
    if len(members) < 2:
        return None
    probabilities = [read_out_of_fold(run.path, m["trial_id"]) for m in members]
    if any(p is None for p in probabilities):
        progress("no ensemble: some top trials have no out-of-fold probabilities on disk")
        return None
    board = {row["model"]: row for row in read_leaderboard(run.path)}
    member_rows = [board.get(leaderboard_name(m)) for m in members]
    if any(row is None or not row.get("model_path") for row in member_rows):
        progress("no ensemble: some top trials are not on the leaderboard")
        return None
    name = ensemble_name(spec, len(members))
    fitted = [load_run_model(run.path, row["model_path"]) for row in member_rows]
    ensemble = DenseEnsembleClassifier.from_fitted(fitted)
    known = board.get(name)
    if known and known.get("config") == config_json(ensemble) and known.get("model_path"):
        if is_loadable(run.path, known["model_path"]):
            return None
    y = run.dataset.y_train
    classes = np.asarray(run.dataset.classes)
    averaged = np.mean(probabilities, axis=0)
    cv_scores = [
        float(np.mean(classes[averaged[val].argmax(axis=1)] == y[val])) for _, val in run.folds
    ]
    fit_seconds = sum(float(row["fit_seconds"]) for row in member_rows)
    row = test_fitted(name, "keras", ensemble, run.dataset, cv_scores, fit_seconds).row()
    row["source"] = "search"
    row["model_path"] = save_fitted(ensemble, run.path, name)
    progress(
        f"ensemble of {', '.join(m['trial_id'] for m in members)}: "
        f"cv {row['cv_accuracy_mean']:.4f}, test {row['test_accuracy']:.4f}"
    )
    return merge_rows(run.path, [row])


def rank_existing(run: Run) -> list[dict[str, Any]]:
    """The run's leaderboard, or nothing if it has none yet."""
    return read_leaderboard(run.path) if leaderboard_path(run.path).is_file() else []
