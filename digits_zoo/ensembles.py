"""Greedy ensembles of a run: the shipped one (networks) on the leaderboard, the mixed one measured.

After a dense search, greedy ensemble selection (``zoo.selection``, Caruana et
al., 2004) over the run's out-of-fold probabilities chooses weighted members
among the best trials of every search (:func:`ensemble_pool`) and the
baselines. The networks' ensemble becomes a leaderboard row; the mixed one
(networks, classic models, baselines) cannot be one SavedModel, so it is
measured into ``RUN_DIR/ensembles.json`` only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from digits_zoo.artifacts import is_loadable, load_run_model, save_fitted
from digits_zoo.baselines import read_baseline_out_of_fold
from digits_zoo.leaderboard import merge_rows, read_leaderboard_if_any
from digits_zoo.rundir import ensembles_path
from digits_zoo.runs import Run
from digits_zoo.trial_rows import leaderboard_name, refit_trial, trial_executions
from search.records import completed_trials, read_out_of_fold, read_trials, recorded_searches
from search.spec import SearchSpec
from zoo.ensemble import DenseEnsembleClassifier
from zoo.errors import ZooError
from zoo.families import DENSE
from zoo.files import atomic_write_text, read_json
from zoo.protocol import config_json, test_fitted
from zoo.selection import DEFAULT_ROUNDS, Selection, greedy_selection, weighted_mean

# The best trials of each search that greedy ensemble selection chooses among. Over
# every trial, a 1,437-row out-of-fold set let it give small weights to trials far
# below the best (CV 0.54-0.82 against 0.95): gains on the folds that did not hold on
# the test split, each costing a refit.
POOL_TRIALS = 10


def ensemble_name(spec: SearchSpec) -> str:
    """The leaderboard name of a search's greedy ensemble: ``ensemble_<tuner>_greedy``."""
    return f"ensemble_{spec.tuner}_greedy"


def ensemble_rounds(spec: SearchSpec) -> int:
    """The greedy selection rounds after a search (``--ensemble N``; below 2: no ensemble).

    Unset, :data:`zoo.selection.DEFAULT_ROUNDS` when ``--top-k`` is 2 or more
    and none below: an ensemble refits its members, and ``--top-k 1`` (or 0)
    asks for the least refitting. Always 0 for a classic family's search: the
    ensembles are selected after the dense search, which ``--family all``
    runs last.
    """
    if spec.family != DENSE:
        return 0
    if spec.ensemble is None:
        return DEFAULT_ROUNDS if spec.top_k >= 2 else 0
    return int(spec.ensemble)


@dataclass(frozen=True)
class Candidate:
    """A model of the run that greedy selection may pick, with its out-of-fold probabilities.

    Attributes:
        model: its leaderboard name.
        source: ``search`` (a trial of any family) or ``baselines``.
        trial: the trial (``search.records.read_trials``'s row), ``None`` for a baseline.
        probabilities: its out-of-fold probabilities, columns in the run's class order.
    """

    model: str
    source: str
    trial: dict[str, Any] | None
    probabilities: np.ndarray

    @property
    def network(self) -> bool:
        """Whether it is a dense network trial, which the shipped ensemble is made of."""
        return self.trial is not None and (self.trial.get("family") or DENSE) == DENSE


def ensemble_pool(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials of one search that greedy selection may choose among, best first.

    The best :data:`POOL_TRIALS` completed trials, leaving out a trial stopped
    early by the median rule: its out-of-fold probabilities are those of
    networks stopped after a few epochs, while its refit, which an ensemble
    ships, would train every epoch. A trial of several executions
    (``--executions-per-trial``) is left out too: it is an ensemble already,
    and the shipped ensemble's members are single networks.

    Args:
        trials: rows as ``search.records.read_trials`` gives them (at least
            ``trial_id``, ``status``, ``cv_accuracy_mean``, ``stopped_early``).
    """
    trained = [
        trial for trial in trials if not trial.get("stopped_early") and trial_executions(trial) == 1
    ]
    return completed_trials(trained)[:POOL_TRIALS]


def ensemble_candidates(run: Run, progress: Callable[[str], None] = print) -> list[Candidate]:
    """The scored models of the run with out-of-fold probabilities on disk.

    The :func:`ensemble_pool` of every search of the run (any tuner, any
    family), best first within each search, then the baselines on the
    leaderboard (``digits-zoo baselines`` keeps their out-of-fold
    probabilities). A file of another shape (another dataset or split) is
    left out, and so is a damaged one, with a warning line: the ensembles are
    chosen among the others.
    """
    shape = (len(run.dataset.y_train), len(run.dataset.classes))
    candidates = []
    for searched in recorded_searches(run.path):
        for trial in ensemble_pool(read_trials(run.path, searched)):
            name = leaderboard_name(trial)
            probabilities = _out_of_fold(name, read_out_of_fold, run, trial["trial_id"], progress)
            if probabilities is not None and probabilities.shape == shape:
                candidates.append(Candidate(name, "search", trial, probabilities))
    for row in read_leaderboard_if_any(run.path):
        if row.get("source") == "baselines":
            name = row["model"]
            probabilities = _out_of_fold(name, read_baseline_out_of_fold, run, name, progress)
            if probabilities is not None and probabilities.shape == shape:
                candidates.append(Candidate(name, "baselines", None, probabilities))
    return candidates


def _out_of_fold(
    model: str,
    read: Callable[[Any, str], np.ndarray | None],
    run: Run,
    file_name: str,
    progress: Callable[[str], None],
) -> np.ndarray | None:
    """A candidate's out-of-fold probabilities, ``read(run.path, file_name)``.

    A damaged file gives ``None`` after one warning line naming it.
    """
    try:
        return read(run.path, file_name)
    except ZooError as error:
        progress(f"warning: {model} left out of the ensembles: {error}")
        return None


def select_ensemble(run: Run, candidates: list[Candidate], rounds: int) -> Selection:
    """Greedy ensemble selection (``zoo.selection``) among candidates, on the run's folds."""
    return greedy_selection(
        [candidate.probabilities for candidate in candidates],
        run.dataset.y_train,
        run.dataset.classes,
        run.folds,
        rounds,
    )


def add_ensembles(
    run: Run, spec: SearchSpec, rounds: int, progress: Callable[[str], None] = print
) -> list[dict[str, Any]] | None:
    """Selects the run's greedy ensembles: the shipped one (networks) and the mixed one.

    The *shipped* ensemble is greedy selection (Caruana et al., 2004) over the
    run's network trials; with two members or more it becomes the leaderboard
    row :func:`ensemble_name` (:func:`add_shipped_ensemble`). The *mixed* one
    selects among every candidate (networks, classic trials, baselines); it
    cannot be one SavedModel, so it is measured and written to
    ``RUN_DIR/ensembles.json`` only (:func:`measure_mixed_ensemble`).

    Returns:
        The leaderboard, or ``None`` when it did not change.
    """
    candidates = ensemble_candidates(run, progress)
    networks = [candidate for candidate in candidates if candidate.network]
    if not networks:
        progress("no ensemble: no network trial has out-of-fold probabilities on disk")
        return None
    board, shipped = add_shipped_ensemble(run, spec, networks, rounds, progress)
    record = {"rounds": rounds, "shipped": shipped, "mixed": None}
    mixed_pool = len(candidates) - len(networks)
    if mixed_pool == 0:
        # Nothing but networks to choose from: the shipped ensemble is the mixed one.
        record["mixed_skipped"] = "no classic trial or baseline has out-of-fold probabilities"
    else:
        selection = select_ensemble(run, candidates, rounds)
        chosen = [candidates[index] for index in selection.members]
        if all(candidate.network for candidate in chosen):
            record["mixed_skipped"] = (
                f"greedy selection over all {len(candidates)} models picked networks only"
            )
        else:
            previous = _read_ensembles(run)
            mixed = _same_mixed(previous, chosen, selection)
            if mixed is None:
                mixed, refit_board = measure_mixed_ensemble(run, chosen, selection, progress)
                board = refit_board or board
                progress(
                    f"mixed ensemble cv {mixed['cv_accuracy_mean']:.4f} test "
                    f"{mixed['test_accuracy']:.4f} vs shipped networks-only cv "
                    f"{shipped['cv_accuracy_mean']:.4f} test {_format_score(shipped['test_accuracy'])}; "
                    "the mixed one is not exported: a SavedModel cannot hold scikit-learn "
                    f"models (members and weights in {ensembles_path(run.path)})"
                )
            record["mixed"] = mixed
    if mixed_pool and "mixed_skipped" in record:
        if _read_ensembles(run).get("mixed_skipped") != record["mixed_skipped"]:
            progress(f"no mixed ensemble: {record['mixed_skipped']}")
    atomic_write_text(ensembles_path(run.path), json.dumps(record, indent=1) + "\n")
    return board


def add_shipped_ensemble(
    run: Run,
    spec: SearchSpec,
    networks: list[Candidate],
    rounds: int,
    progress: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """Selects the networks' greedy ensemble and adds it to the leaderboard.

    Its CV score is measured on the run's folds with no new training: for
    fold ``f``, the weighted mean of the members' out-of-fold probabilities on
    fold ``f``'s validation rows, each predicted by the member's fold-``f``
    network, which never trained on those rows. Greedy selection keeps its
    best prefix, so this score is never below its best member's. Its test
    score is the weighted refit members' (a member not on the leaderboard yet
    is refit and added first) on the held-out test split.

    Returns:
        The leaderboard (``None`` when unchanged), and the selection's figures
        for ``ensembles.json``.
    """
    selection = select_ensemble(run, networks, rounds)
    chosen = [networks[index] for index in selection.members]
    # The best single network, as the leaderboard scores it (its trial's fold scores).
    scored = [(float(np.mean(json.loads(c.trial["cv_folds"]))), c.model) for c in networks]
    best_cv, best_model = max(scored, key=lambda pair: pair[0])
    figures: dict[str, Any] = {
        "model": None,
        "members": [candidate.model for candidate in chosen],
        "trials": [candidate.trial["trial_id"] for candidate in chosen],
        "weights": list(selection.weights),
        "rounds_kept": selection.rounds,
        "cv_folds": list(selection.cv_scores),
        "cv_accuracy_mean": selection.cv_accuracy_mean,
        "test_accuracy": None,
        "best_member": {"model": best_model, "cv_accuracy_mean": best_cv},
    }
    if len(chosen) < 2:
        member = next(
            (r for r in read_leaderboard_if_any(run.path) if r["model"] == chosen[0].model), None
        )
        figures["test_accuracy"] = member["test_accuracy"] if member else None
        if len(networks) < 2:
            return None, figures
        progress(
            f"no ensemble: greedy selection over {len(networks)} network trials kept "
            f"{chosen[0].model} alone (cv {selection.cv_accuracy_mean:.4f}); no weighted "
            "mean of networks beats it on the folds"
        )
        return None, figures
    board: list[dict[str, Any]] | None = None
    for candidate in chosen:
        board = refit_trial(run, candidate.trial, progress) or board
    rows = {row["model"]: row for row in read_leaderboard_if_any(run.path)}
    member_rows = [rows[candidate.model] for candidate in chosen]
    name = ensemble_name(spec)
    figures["model"] = name
    fitted = [load_run_model(run.path, row["model_path"]) for row in member_rows]
    ensemble = DenseEnsembleClassifier.from_fitted(fitted, weights=selection.weights)
    # The config column: the members' parameters and weights (the ensemble's own
    # parameters), and the trials whose out-of-fold probabilities they stand for.
    params = {**json.loads(config_json(ensemble)), "trials": figures["trials"]}
    config = json.dumps(params, sort_keys=True, default=str)
    known = rows.get(name)
    if (
        known
        and known.get("config") == config
        and known.get("model_path")
        and is_loadable(run.path, known["model_path"])
    ):
        figures["test_accuracy"] = known["test_accuracy"]
        return board, figures
    fit_seconds = sum(float(row["fit_seconds"]) for row in member_rows)
    row = test_fitted(
        name, "keras", ensemble, run.dataset, list(selection.cv_scores), fit_seconds
    ).row()
    row["config"] = config
    row["source"] = "search"
    row["model_path"] = save_fitted(ensemble, run.path, name)
    weighted = ", ".join(
        f"{candidate.trial['trial_id']} {weight:.2f}"
        for candidate, weight in zip(chosen, selection.weights, strict=True)
    )
    progress(
        f"ensemble of {weighted} ({selection.rounds} greedy rounds kept of {rounds}): "
        f"cv {row['cv_accuracy_mean']:.4f} (best member {best_cv:.4f}), "
        f"test {row['test_accuracy']:.4f}"
    )
    board = merge_rows(run.path, [row])
    # As the leaderboard holds it, so that a rerun records the same figure.
    saved = read_leaderboard_if_any(run.path)
    figures["test_accuracy"] = next(r["test_accuracy"] for r in saved if r["model"] == name)
    return board, figures


def measure_mixed_ensemble(
    run: Run,
    chosen: list[Candidate],
    selection: Selection,
    progress: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """Tests a mixed selection's weighted members on the held-out test split.

    Its members are the leaderboard's fitted models: baselines as saved, and
    trials refit on the whole training part (a selected trial not on the
    leaderboard yet is refit and added, as a top trial is).

    Returns:
        Its figures for ``ensembles.json``, and the leaderboard when a refit
        changed it (else ``None``).
    """
    board: list[dict[str, Any]] | None = None
    for candidate in chosen:
        if candidate.trial is not None:
            board = refit_trial(run, candidate.trial, progress) or board
    rows = {row["model"]: row for row in read_leaderboard_if_any(run.path)}
    classes = np.asarray(run.dataset.classes)
    x_test = run.dataset.scale(run.dataset.x_test)
    probabilities = []
    for candidate in chosen:
        model = load_run_model(run.path, rows[candidate.model]["model_path"])
        learned = np.asarray(model.classes_)
        if learned.shape != classes.shape or (learned != classes).any():
            raise ZooError(
                f"{candidate.model} learned classes {learned.tolist()}, expected "
                f"{classes.tolist()}; re-evaluate it into this run"
            )
        probabilities.append(model.predict_proba(x_test))
    predicted = classes[weighted_mean(probabilities, selection.weights).argmax(axis=1)]
    figures = {
        "members": [
            {
                "model": candidate.model,
                "source": candidate.source,
                "kind": rows[candidate.model]["kind"],
                "trial": None if candidate.trial is None else candidate.trial["trial_id"],
            }
            for candidate in chosen
        ],
        "weights": list(selection.weights),
        "rounds_kept": selection.rounds,
        "cv_folds": list(selection.cv_scores),
        "cv_accuracy_mean": selection.cv_accuracy_mean,
        "test_accuracy": float(np.mean(predicted == run.dataset.y_test)),
        "exported": False,
        "why": "a SavedModel cannot hold scikit-learn models; the leaderboard holds only "
        "models that export as one file",
    }
    return figures, board


def _read_ensembles(run: Run) -> dict[str, Any]:
    """The last recorded selections, or ``{}`` (none, or a damaged file, rewritten next)."""
    path = ensembles_path(run.path)
    if not path.is_file():
        return {}
    try:
        record = read_json(path, "ensemble record")
    except ZooError:
        return {}
    return record if isinstance(record, dict) else {}


def _same_mixed(
    previous: dict[str, Any], chosen: list[Candidate], selection: Selection
) -> dict[str, Any] | None:
    """The recorded mixed ensemble if it is this selection (nothing to measure again)."""
    mixed = previous.get("mixed")
    if not isinstance(mixed, dict):
        return None
    names = [member.get("model") for member in mixed.get("members", [])]
    same = names == [candidate.model for candidate in chosen] and mixed.get("weights") == list(
        selection.weights
    )
    return mixed if same else None


def _format_score(value: Any) -> str:
    """A score with four decimals, or ``n/a`` where there is none."""
    return "n/a" if value is None or value == "" else f"{float(value):.4f}"
