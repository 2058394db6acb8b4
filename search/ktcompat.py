"""Every use of keras-tuner's private internals, in one place.

keras-tuner's public API does not cover seven things the search needs; each
is wrapped here and pinned to the version it was written against by
``tests/test_ktcompat.py``, so an upgrade that moves them fails one test
instead of a search.
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt
import numpy as np

TESTED_VERSION = "1.4.8"


def oracle_seed(seed: int) -> int:
    """The seed to give an oracle for a run's ``seed``.

    keras-tuner reads ``seed=0`` as "no seed" (``seed or random.randint(...)``),
    so every seed is shifted by one.
    """
    return seed + 1


def quiet_failed_trial_tracebacks() -> None:
    """Stops keras-tuner from printing a failed trial's traceback (its ``DEBUG`` flag)."""
    try:
        from keras_tuner.src import config as tuner_config
    except ImportError:  # a keras-tuner that moved it: tracebacks stay
        return
    tuner_config.DEBUG = False


def attach_oracle(oracle: kt.Oracle, directory: str, project: str) -> None:
    """Points a stand-alone oracle at a tuner's saved state, as a ``Tuner`` would."""
    oracle._set_project_dir(directory, project)


def fail_orphaned_trials(oracle: kt.Oracle, message: str) -> list[str]:
    """Marks the reloaded oracle's RUNNING trials as FAILED and saves it.

    ``Oracle.reload`` moves trials that were running into its retry queue; a
    worker that asks again gets them back. When that worker is gone for good,
    they are taken out of the queue and ended here.

    Returns:
        The ids of the trials marked failed.
    """
    failed = []
    for trial_id in list(oracle._retry_queue):
        trial = oracle.trials[trial_id]
        if trial.status != "RUNNING":
            continue
        oracle._retry_queue.remove(trial_id)
        trial.status = "FAILED"
        trial.message = message
        oracle.end_order.append(trial_id)
        oracle._save_trial(trial)
        failed.append(trial_id)
    oracle.save()
    return failed


def seed_first_trials(oracle: kt.Oracle, values: list[dict[str, Any]]) -> None:
    """Makes the oracle's first trials take ``values``, one trial each, in order (a warm start).

    ``Oracle.create_trial`` asks ``populate_space`` for each new trial's
    values; for the first ``len(values)`` trials (counted over the oracle's
    saved trials, so a resumed search hands out the rest) it answers with the
    given ones, then the oracle proposes as before. Trials it creates are
    ordinary trials: the Bayesian oracle learns from their scores.
    """
    propose = oracle.populate_space
    given = [dict(entry) for entry in values]

    def populate_space(trial_id: str) -> dict[str, Any]:
        index = len(oracle.trials)
        if index < len(given):
            return {"status": "RUNNING", "values": dict(given[index])}
        return propose(trial_id)

    oracle.populate_space = populate_space


def reseed_gaussian_process_proposals(oracle: kt.Oracle, draw: int) -> None:
    """Seeds the Bayesian oracle's restart points for its ``draw``-th proposal.

    ``BayesianOptimizationOracle`` draws the starting points of its acquisition
    search from ``_random_state``, created from the seed in ``__init__`` and not
    saved with the oracle: every resumed process started that stream afresh and
    proposed again what the first process had proposed. Seeding it from the
    seed and the number of trials so far makes a resumed search continue the
    same sequence as an uninterrupted one.
    """
    oracle._random_state = np.random.RandomState((oracle.seed * 7919 + draw) % (2**32))


def random_proposal(oracle: kt.Oracle) -> dict[str, Any]:
    """A random configuration of the oracle's space not tried yet, as ``populate_space`` answers.

    The oracle's own random draw (``Oracle._random_values``, which skips tried
    configurations): it advances the oracle's saved seed state, so a resumed
    search draws what an uninterrupted one would. Its ``status`` is
    ``STOPPED`` (and ``values`` ``None``) once no untried configuration is found.
    """
    values = oracle._random_values()
    if values is None:
        return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
    return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}


# The acquisition search of gaussian_process_proposal: keras-tuner's 50 random starting
# points, 2,000 more random points scored in the same call, and L-BFGS-B from the best 5.
ACQUISITION_STARTS = 50
ACQUISITION_SCREENED = 2000
ACQUISITION_REFINED = 5


def gaussian_process_proposal(oracle: kt.Oracle) -> dict[str, Any]:
    """``BayesianOptimizationOracle.populate_space`` with its acquisition search vectorised.

    The same Gaussian process (keras-tuner's ``gpr``, fit as it fits it) and the
    same upper confidence bound, minimised as keras-tuner frames it. keras-tuner
    runs L-BFGS-B with finite-difference gradients from each of 50 random
    points, one Gaussian-process prediction per evaluation: several seconds a
    proposal on 2 cores, while a trial stopped by the median rule trains in 3-5.
    This scores the 50 points and 2,000 more in one prediction and runs
    L-BFGS-B from the best 5. Before ``num_initial_points`` completed trials it
    is keras-tuner's random draw, as there. The random points come from the
    oracle's ``_random_state`` (reseeded per proposal by
    :func:`reseed_gaussian_process_proposals`), so a proposal is reproducible.
    """
    import scipy.optimize

    completed = [trial for trial in oracle.trials.values() if trial.status == "COMPLETED"]
    dimensions = len(oracle.hyperparameters.space)
    initial = oracle.num_initial_points or max(3 * dimensions, 3)
    if len(completed) < initial:
        return oracle._random_populate_space()
    x, y = oracle._vectorize_trials()
    x = np.nan_to_num(x, posinf=0, neginf=0)
    y = np.nan_to_num(y, posinf=0, neginf=0)
    oracle.gpr.fit(x, y)

    def bound(points: np.ndarray) -> np.ndarray:
        mean, std = oracle.gpr.predict(np.atleast_2d(points), return_std=True)
        return np.ravel(mean) - oracle.beta * np.ravel(std)

    bounds = oracle._get_hp_bounds()
    points = oracle._random_state.uniform(
        bounds[:, 0],
        bounds[:, 1],
        size=(ACQUISITION_STARTS + ACQUISITION_SCREENED, bounds.shape[0]),
    )
    scores = bound(points)
    best_value, best_point = float("inf"), None
    for start in points[np.argsort(scores, kind="stable")[:ACQUISITION_REFINED]]:
        result = scipy.optimize.minimize(
            lambda point: float(bound(point)[0]), x0=start, bounds=bounds, method="L-BFGS-B"
        )
        if float(result.fun) < best_value:
            best_value, best_point = float(result.fun), result.x
    return {
        "status": kt.engine.trial.TrialStatus.RUNNING,
        "values": oracle._vector_to_values(best_point),
    }
