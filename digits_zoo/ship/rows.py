"""Which leaderboard row ships, and the fitted model and temperature behind it.

A row is chosen by rank or model name (by default the best Keras row); its
fitted model is the one saved in the run directory, or, when that file is
missing or damaged, a refit from the row's recorded config. The temperature an
export applies is fitted on the out-of-fold probabilities of the search trials
that stand for the row; with it, a second temperature and a gate
(:class:`zoo.calibration.StrangerCalibration`) fitted on the model's
probabilities for handwriting copies of the training rows
(:func:`stranger_copies`), so that confidence holds for writers of another
population as well as for the training writers' own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from digits_zoo.artifacts import DamagedModel, load_run_model, save_fitted
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.rundir import inside
from digits_zoo.runs import Run
from digits_zoo.trial_rows import leaderboard_name
from search.records import read_out_of_fold, read_trials_csv
from zoo.augment import KIND_TRANSFORMS, random_rows
from zoo.calibration import (
    StrangerCalibration,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
)
from zoo.dense import DenseNetClassifier
from zoo.ensemble import DenseEnsembleClassifier
from zoo.errors import ZooError
from zoo.registry import create_model, list_models

# Handwriting copies at this strength (slant, stroke width, elastic distortion, turn, scale
# and shift, zoo.augment's unit amounts) stand for another population's writers in the
# strangers' calibration. A network read them at 0.79 and another population's digits (MNIST's
# SD-3) at 0.82; copies at 1.5 and 2 read 0.44 and 0.26, far worse than any population
# measured (benchmarks/RESULTS.md, "Reading other writers").
STRANGER_STRENGTH = 1.0


def select_row(
    rows: list[dict[str, Any]], *, rank: int | None = None, model: str | None = None
) -> dict[str, Any]:
    """Picks the leaderboard row to export.

    Args:
        rows: the leaderboard, best first.
        rank: the row with this leaderboard rank (any kind).
        model: the row of this model name.

    Returns:
        The row; by default the best ``keras`` row.

    Raises:
        ZooError: both or a missing choice, or no Keras row to default to.
    """
    if rank is not None and model is not None:
        raise ZooError(f"pass --rank or --model, not both (got --rank {rank} --model {model})")
    if rank is not None:
        chosen = [row for row in rows if int(row["rank"]) == rank]
        if not chosen:
            raise ZooError(
                f"no leaderboard row has rank {rank}; ranks run from 1 to {len(rows)} "
                "(see digits-zoo leaderboard RUN_DIR)"
            )
        return chosen[0]
    if model is not None:
        chosen = [row for row in rows if row["model"] == model]
        if not chosen:
            names = ", ".join(row["model"] for row in rows)
            raise ZooError(f"no leaderboard row for model {model!r}; the rows are: {names}")
        return chosen[0]
    keras_rows = [row for row in rows if row["kind"] == "keras"]
    if not keras_rows:
        raise ZooError(
            "the leaderboard has no keras row to export by default; pass --model NAME or "
            "--rank N to export a scikit-learn row, or run digits-zoo search first"
        )
    return keras_rows[0]


def refit_row(run: Run, row: dict[str, Any]) -> Any:
    """Refits a leaderboard row's model from its recorded config on the run's training part
    (the estimator of :func:`row_estimator`).

    Raises:
        ZooError: the row's config cannot be rebuilt.
    """
    estimator = row_estimator(row, run.seed)
    return estimator.fit(run.dataset.scale(run.dataset.x_train), run.dataset.y_train)


def row_estimator(row: dict[str, Any], seed: int) -> Any:
    """A leaderboard row's model, unfitted, rebuilt from its recorded config.

    Keras rows are rebuilt as ``DenseNetClassifier(**config)`` (the config
    holds the epochs and the seed), ensembles as
    ``DenseEnsembleClassifier(members=...)``; scikit-learn rows as their zoo entry
    (seeded with the run's ``seed``) with the recorded parameters set again.

    Raises:
        ZooError: the row's config cannot be rebuilt.
    """
    config = json.loads(row["config"] or "{}")
    if row["kind"] == "keras":
        try:
            if "members" in config:
                estimator = DenseEnsembleClassifier(
                    members=tuple(config["members"]), weights=config.get("weights")
                )
            else:
                estimator = DenseNetClassifier(**config)
        except TypeError as error:
            raise ZooError(
                f"cannot rebuild {row['model']} from its recorded config ({error}); "
                "re-evaluate it into the leaderboard"
            ) from None
    elif row["model"] in list_models():
        estimator = create_model(row["model"], seed=seed)
        valid = estimator.get_params(deep=False)
        estimator.set_params(**{key: value for key, value in config.items() if key in valid})
    else:
        raise ZooError(
            f"cannot refit {row['model']}: it is not a zoo entry and its fitted model "
            f"({row.get('model_path') or 'no model_path'}) is not on disk or is damaged"
        )
    return estimator


def fitted_model(
    run: Run, row: dict[str, Any], progress: Callable[[str], None] = print
) -> tuple[Any, bool]:
    """Returns a row's fitted model and whether it had to be refit.

    The model saved in the run directory is used when it is there and loads;
    a missing or damaged one (a save that was cut short) is refit (and saved
    back), and ``progress`` says so.

    Raises:
        ZooError: the row's ``model_path`` leads outside the run directory,
            its file names untrusted types, or it cannot be refit.
    """
    relative = row.get("model_path") or ""
    path = inside(run.path, relative) if relative else None
    if path is None:
        problem = "fitted model not on disk (no model_path in the leaderboard)"
    elif not path.is_file():
        problem = f"fitted model not on disk ({path})"
    else:
        try:
            return load_run_model(run.path, relative), False
        except DamagedModel as damage:
            problem = f"fitted model damaged ({damage.reason}: {path})"
    progress(
        f"{row['model']}: {problem}; refitting it from its recorded config (seed "
        f"{json.loads(row['config'] or '{}').get('seed', run.seed)}) on the run's "
        f"{len(run.dataset.y_train)} training images"
    )
    estimator = refit_row(run, row)
    saved = save_fitted(estimator, run.path, row["model"])
    progress(f"{row['model']}: refit done; saved as {run.path / saved}")
    return estimator, True


def _comparable(params: dict[str, Any]) -> dict[str, Any]:
    """A network's parameters as its leaderboard config records them (JSON, no ``verbose``)."""
    plain = json.loads(json.dumps(params, sort_keys=True, default=str))
    plain.pop("verbose", None)
    return plain


def row_trials(run: Run, row: dict[str, Any]) -> tuple[list[str], list[float]]:
    """The search trials whose out-of-fold probabilities stand for a leaderboard row's model.

    A searched model's row (``search_<trial>...``) is its trial's; an ensemble's
    row is its members', found by their configs among the searched rows (or
    named in its config as ``trials``, with ``weights``), weighted equally
    unless the config says otherwise.

    Returns:
        ``(trial ids, weights)``, both empty for a model no search trained
        (a baseline) or whose trials are not recorded.
    """
    trials = read_trials_csv(run.path)
    by_name = {leaderboard_name(trial): trial["trial_id"] for trial in trials}
    if row["model"] in by_name:
        return [by_name[row["model"]]], [1.0]
    config = json.loads(row.get("config") or "{}")
    if "trials" in config:
        ids = [str(trial) for trial in config["trials"]]
    elif "members" in config:
        searched = {
            json.dumps(_comparable(json.loads(other.get("config") or "{}")), sort_keys=True): name
            for other in read_leaderboard(run.path)
            if (name := by_name.get(other["model"])) is not None
        }
        ids = [searched.get(json.dumps(_comparable(m), sort_keys=True)) for m in config["members"]]
    else:
        return [], []
    weights = [float(w) for w in config.get("weights") or [1.0] * len(ids)]
    if not ids or None in ids or len(weights) != len(ids):
        return [], []
    return [str(trial) for trial in ids], weights


def stranger_copies(dataset: Any, seed: int) -> np.ndarray | None:
    """One handwriting copy of each training row, as raw pixels: written as another hand might.

    Each copy (:func:`zoo.augment.random_images`, every transform of the
    ``handwriting`` kind at ``STRANGER_STRENGTH``) is slanted, thicker or
    thinner, distorted, turned and moved a little.

    Returns:
        ``[n_train, n_features]`` raw pixels, or ``None`` when the rows are not
        square images (nothing to write differently).
    """
    rng = np.random.default_rng(seed)
    return random_rows(
        dataset.x_train,
        dataset.pixel_max,
        dataset.image_shape,
        rng,
        STRANGER_STRENGTH,
        KIND_TRANSFORMS["handwriting"],
    )


def row_temperature(run: Run, row: dict[str, Any], estimator: Any = None) -> dict[str, Any]:
    """Fits a leaderboard row's temperature on its out-of-fold probabilities and, given its
    fitted model, the strangers' temperature and gate on handwriting copies of the training
    rows (:func:`stranger_copies`, :class:`zoo.calibration.StrangerCalibration`).

    The out-of-fold probabilities are the search's (see :func:`row_trials`; an
    ensemble's are its members' weighted mean), with the run's training labels
    in the same row order. A model without them (a baseline, or a search
    whose records are gone) keeps temperature 1: its probabilities are
    shipped as the model gives them.

    Returns:
        ``temperature`` and ``fitted_on`` (what it was fitted on, in words),
        plus ``trials`` and the out-of-fold ``oof_ece_before``/``oof_ece_after``
        when it was fitted; with the copies, ``stranger`` (the strangers'
        calibration, :meth:`~zoo.calibration.StrangerCalibration.to_dict`),
        ``copies_accuracy`` and ``copies_ece_before``/``copies_ece_after``.
    """
    trial_ids, weights = row_trials(run, row)
    probabilities = [read_out_of_fold(run.path, trial) for trial in trial_ids]
    y = run.dataset.y_train
    usable = bool(probabilities) and all(
        p is not None and p.shape == (len(y), len(run.dataset.classes)) for p in probabilities
    )
    if not usable:
        return {"temperature": 1.0, "fitted_on": "nothing: no out-of-fold probabilities"}
    averaged = np.average(np.asarray(probabilities), axis=0, weights=weights)
    classes = np.asarray(run.dataset.classes)
    temperature = fit_temperature(averaged, y, classes)
    calibration: dict[str, Any] = {
        "temperature": temperature,
        "fitted_on": f"out-of-fold probabilities of {len(y)} training rows",
        "trials": trial_ids,
        "oof_ece_before": expected_calibration_error(averaged, y, classes),
        "oof_ece_after": expected_calibration_error(
            apply_temperature(averaged, temperature), y, classes
        ),
    }
    copies = None if estimator is None else stranger_copies(run.dataset, run.seed)
    if copies is None:
        return calibration
    scaled = run.dataset.scale(copies)
    copies_probabilities = np.asarray(estimator.predict_proba(scaled), dtype="float64")
    if copies_probabilities.shape != averaged.shape:
        return calibration
    stranger = StrangerCalibration.fit(
        run.dataset.scale(run.dataset.x_train), y, scaled, copies_probabilities, y, classes
    )
    calibration["fitted_on"] += (
        "; for strangers' digits, the model's probabilities for a handwriting copy of each "
        f"(strength {STRANGER_STRENGTH:g})"
    )
    calibration["stranger"] = stranger.to_dict()
    calibration["copies_accuracy"] = float(
        np.mean(classes[np.argmax(copies_probabilities, axis=1)] == y)
    )
    calibration["copies_ece_before"] = expected_calibration_error(copies_probabilities, y, classes)
    calibration["copies_ece_after"] = expected_calibration_error(
        stranger.apply(copies_probabilities, scaled, temperature), y, classes
    )
    return calibration
