"""A search trial's leaderboard row: its model's name, and the refit and test that make it.

A trial's networks were trained on the folds only; its row's model is refit
on the whole training part and tested once on the held-out split.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from typing import Any

from sklearn.exceptions import ConvergenceWarning

from digits_zoo.artifacts import is_loadable, save_fitted
from digits_zoo.leaderboard import merge_rows, read_leaderboard_if_any
from digits_zoo.runs import Run
from search.records import duration
from zoo.ensemble import seed_ensemble
from zoo.families import DENSE, get_family
from zoo.protocol import refit_and_test


def leaderboard_name(trial: dict[str, Any]) -> str:
    """The leaderboard name of a trial's model.

    ``search_<tuner>_<id>_<layers>x<units>_<activation>`` for a dense net
    (``..._<id>_conv<filters>_<layers>x...`` with a convolutional stem, and
    ``..._<n>seeds`` after it for a trial of ``n`` executions), ``search_<tuner>_<family>_<id>``
    for a classic model.
    """
    if trial.get("family", DENSE) != DENSE:
        return f"search_{trial['trial_id']}"
    # A record read back from trials.csv spells the filters as text ("0" for no stem).
    filters = int(float(trial.get("conv_filters") or 0))
    stem = f"conv{filters}_" if filters else ""
    shape = f"{trial['n_layers']}x{trial['units']}_{trial['activation']}"
    executions = trial_executions(trial)
    seeds = f"_{executions}seeds" if executions > 1 else ""
    return f"search_{trial['trial_id']}_{stem}{shape}{seeds}"


def trial_executions(trial: dict[str, Any]) -> int:
    """The networks a dense trial trained and averaged (1 when its record does not say)."""
    # A record read back from trials.csv spells it as text ("" for a classic trial).
    return int(float(trial.get("executions") or 1))


def refit_trial(
    run: Run, trial: dict[str, Any], progress: Callable[[str], None] = print
) -> list[dict[str, Any]] | None:
    """Refits one completed trial on the whole training part, tests it, merges its row.

    Returns:
        The leaderboard, or ``None`` when the trial's row is already there
        with its model on disk (nothing is refit).
    """
    name = leaderboard_name(trial)
    known = next((row for row in read_leaderboard_if_any(run.path) if row["model"] == name), None)
    if known and known.get("model_path") and is_loadable(run.path, known["model_path"]):
        return None
    family = get_family(trial.get("family") or DENSE)
    config = family.config.from_dict(trial)
    epochs = int(trial["epochs"]) if family.trains_by_epochs else None
    estimator = family.create(config, seed=run.seed, epochs=epochs)
    if family.trains_by_epochs:
        estimator = seed_ensemble(estimator, trial_executions(trial))
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
    return board
