"""The search runner: keras-tuner searches over a run, then their best trials on the leaderboard.

``search`` runs the trials (state in ``RUN_DIR/tuner/``, records in
``RUN_DIR/trials/``); this module gives it the run's data and folds, then
refits the top trials on the whole training part, tests them once on the
held-out split, and adds them to the leaderboard (:mod:`digits_zoo.trial_rows`).
After a dense search, the run's greedy ensembles are selected
(:mod:`digits_zoo.ensembles`). A search explores one model family
(``zoo.families``), or several one after another under one time budget
(``--family all``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from digits_zoo.ensembles import add_ensembles, ensemble_rounds
from digits_zoo.leaderboard import read_leaderboard_if_any
from digits_zoo.rundir import run_lock
from digits_zoo.runs import Run
from digits_zoo.trial_rows import refit_trial
from search.records import best_configs, completed_trials, write_trials_csv
from search.runner import is_remote_worker, run_family_trials
from search.spec import SearchContext, SearchSpec, dense_first_trials
from zoo.errors import ZooError
from zoo.families import DENSE, expand_families, get_family, parse_fixed_for

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
            search's first trials are ``search.spec.dense_first_trials`` (as
            many as ``max_trials`` allows; the command line's default): three
            cheap 1x256 networks, the third a 2x256 one under a budget of at
            least ``search.spec.ROOMY_BUDGET_MINUTES``.
        **settings: the other :class:`search.spec.SearchSpec` fields.

    Raises:
        ZooError: an unknown family or hyperparameter, bad settings, or a
            warm-start folder with no completed trial of the families.
    """
    families = expand_families(family)
    warm: dict[str, list[dict[str, Any]]] = {name: [] for name in families}
    if strong_start and DENSE in warm and settings.get("tuner", "bayesian") != "hyperband":
        trials = int(settings.get("max_trials", SearchSpec.max_trials))
        first = dense_first_trials(settings.get("budget_minutes"))
        warm[DENSE] = [dict(values) for values in first[:trials]]
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
    executions = settings.pop("executions_per_trial", 1)
    return [
        SearchSpec(
            **settings,
            family=name,
            fixed=fixed[name],
            # Only a family trained by epochs has curves to compare.
            early_stop=early_stop and get_family(name).trains_by_epochs,
            # With several families, the networks only; one classic family refuses it.
            executions_per_trial=(
                executions if get_family(name).trains_by_epochs or len(families) == 1 else 1
            ),
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
            return read_leaderboard_if_any(run.path)
        board: list[dict[str, Any]] = []
        for spec in ran:
            board = finish_search(run, spec, progress)
        return board or read_leaderboard_if_any(run.path)


def finish_search(
    run: Run, spec: SearchSpec, progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Refits the top trials on the whole training part, tests them, merges them into the leaderboard.

    Idempotent: a top trial already on the leaderboard with its model on disk
    is not refit again. A classic model's ``config`` column holds its family's
    hyperparameters and the seed (the names ``--fix`` takes), as a network's
    holds its space's values, the epochs and the seed. After a dense search,
    :func:`digits_zoo.ensembles.add_ensembles` selects the run's greedy ensembles.

    Returns:
        The whole leaderboard, best first.
    """
    completed = completed_trials(write_trials_csv(run.path, spec))
    board = read_leaderboard_if_any(run.path)
    for trial in completed[: spec.top_k]:
        board = refit_trial(run, trial, progress) or board
    rounds = ensemble_rounds(spec)
    if rounds >= 2:
        board = add_ensembles(run, spec, rounds, progress) or board
    return board or read_leaderboard_if_any(run.path)
