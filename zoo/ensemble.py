"""Ensembles of dense networks: the (weighted) mean of their class probabilities (soft voting)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from zoo.dense import _CHECKS, DenseNetClassifier, _rows
from zoo.errors import ZooError


class DenseEnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Averages the class probabilities of several :class:`DenseNetClassifier` networks.

    Args:
        members: one parameter dict per network (a ``DenseNetClassifier``'s
            ``get_params()``: hyperparameters, ``epochs``, ``seed``).
        weights: one non-negative weight per member (normalised to sum 1),
            such as greedy ensemble selection's (``zoo.selection``); ``None``
            weighs every member equally.

    After ``fit``, ``estimators_`` holds the fitted networks, ``weights_`` the
    normalised weights, and ``model_`` one Keras model that feeds its input to
    every network and takes the weighted mean of their outputs, ready for
    :func:`save_ensemble` and SavedModel export.
    """

    def __init__(
        self,
        members: Sequence[dict[str, Any]] = (),
        weights: Sequence[float] | None = None,
    ):
        self.members = members
        self.weights = weights

    def _checked_weights(self) -> np.ndarray:
        """The weights normalised to sum 1 (see :func:`normalised_weights`)."""
        return normalised_weights(self.weights, len(self.members))

    def _unfitted(self) -> list[DenseNetClassifier]:
        if isinstance(self.members, (str, bytes)) or len(self.members) < 2:
            raise ZooError(
                f"an ensemble needs at least 2 member networks (got {len(self.members)})"
            )
        self._checked_weights()
        try:
            return [DenseNetClassifier(**dict(params)) for params in self.members]
        except TypeError as error:
            raise ZooError(f"an ensemble member has an unknown parameter ({error})") from None

    def fit(self, X, y) -> DenseEnsembleClassifier:
        """Trains every member network on ``X, y``.

        Raises:
            ZooError: fewer than 2 members, a member's parameter or the weights are
                not valid, or the training data has one class.
            ValueError: ``X`` or ``y`` is not valid training data (scikit-learn's
                ``validate_data``, as in :meth:`DenseNetClassifier.fit`).
        """
        members = self._unfitted()
        X, y = validate_data(self, _rows(X), y, **_CHECKS)
        check_classification_targets(y)
        fitted = [member.fit(X, y) for member in members]
        self._adopt(fitted)
        return self

    def fit_folds(self, X, y, folds, callbacks=None) -> list[DenseEnsembleClassifier]:
        """Trains every member on each fold's training part; returns one ensemble per fold.

        Fold ``f``'s ensemble averages the members' fold-``f`` networks, each
        trained (by :meth:`DenseNetClassifier.fit_folds`) without fold ``f``'s
        validation rows, so scoring it on them is a fair CV score.

        Raises:
            ZooError, ValueError: as :meth:`fit`.
        """
        members = self._unfitted()
        # check_X_y, not validate_data: this ensemble stays unfitted, the fold ensembles are fitted.
        X, y = check_X_y(_rows(X), y, estimator=self, **_CHECKS)
        check_classification_targets(y)
        per_member = [member.fit_folds(X, y, folds, callbacks=callbacks) for member in members]
        fold_ensembles = []
        for fold_members in zip(*per_member, strict=True):
            ensemble = DenseEnsembleClassifier(members=self.members, weights=self.weights)
            ensemble._adopt(list(fold_members), build_model=False)
            fold_ensembles.append(ensemble)
        return fold_ensembles

    @classmethod
    def from_fitted(
        cls,
        estimators: Sequence[DenseNetClassifier],
        weights: Sequence[float] | None = None,
    ) -> DenseEnsembleClassifier:
        """Makes an ensemble of networks already fitted on the same data (no training).

        Args:
            estimators: the fitted networks, each once.
            weights: one weight per network, or ``None`` for equal ones.
        """
        members = tuple(_member_params(e) for e in estimators)
        if weights is not None:
            weights = tuple(float(w) for w in weights)
        ensemble = cls(members=members, weights=weights)
        ensemble._unfitted()
        ensemble._adopt(list(estimators))
        return ensemble

    def _adopt(self, estimators: list[DenseNetClassifier], build_model: bool = True) -> None:
        classes = [tuple(np.asarray(e.classes_).tolist()) for e in estimators]
        features = {int(e.n_features_in_) for e in estimators}
        if len(set(classes)) != 1 or len(features) != 1:
            raise ZooError("ensemble members must be trained on the same classes and features")
        self.estimators_ = estimators
        self.classes_ = np.asarray(estimators[0].classes_)
        self.n_features_in_ = features.pop()
        self.history_ = {}
        self.weights_ = self._checked_weights()
        if build_model:
            self.model_ = averaging_model([e.model_ for e in estimators], self.weights)

    def predict_proba(self, X) -> np.ndarray:
        """Returns the weighted mean of the members' class probabilities.

        Raises:
            sklearn.exceptions.NotFittedError: the ensemble is not fitted.
            ValueError: ``X`` is not valid input (NaN or infinity, no rows) or
                has another number of features than the training rows.
        """
        if getattr(self, "model_", None) is None:
            check_is_fitted(self, "estimators_")
        X = validate_data(self, _rows(X), reset=False, **_CHECKS)
        if getattr(self, "model_", None) is not None:
            return np.asarray(self.model_.predict(X, batch_size=4096, verbose=0))
        probabilities = [e.predict_proba(X) for e in self.estimators_]
        return np.average(probabilities, axis=0, weights=self.weights_)

    def predict(self, X) -> np.ndarray:
        """Returns the class with the highest (weighted) mean probability."""
        # The probabilities first: unfitted, predict_proba raises NotFittedError.
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def count_params(self) -> int:
        """Returns the trainable parameters of all members together."""
        if getattr(self, "estimators_", None):
            return int(sum(e.count_params() for e in self.estimators_))
        check_is_fitted(self, "model_")
        return int(sum(int(np.prod(w.shape)) for w in self.model_.trainable_weights))


def normalised_weights(weights: Sequence[float] | None, n_members: int) -> np.ndarray:
    """One weight per member, normalised to sum 1; equal ones for ``None``.

    Raises:
        ZooError: not one finite, non-negative number per member, or all zero.
    """
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    try:
        checked = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ZooError(f"ensemble weights must be numbers (got {weights!r})") from None
    if checked.shape != (n_members,):
        raise ZooError(
            f"ensemble weights must be one number per member ({n_members}) (got {weights!r})"
        )
    if not np.isfinite(checked).all() or (checked < 0).any() or checked.sum() <= 0:
        raise ZooError(
            f"ensemble weights must be finite, non-negative and not all zero (got {weights!r})"
        )
    return checked / checked.sum()


def seed_ensemble(
    network: DenseNetClassifier, executions: int
) -> DenseNetClassifier | DenseEnsembleClassifier:
    """``network`` trained ``executions`` times: itself for one, else the equal-weight
    ensemble of copies of it seeded ``network.seed``, ``network.seed + 1``, and so on.

    keras-tuner's executions per trial, whose models are averaged instead of only
    their scores: the copies differ in their initial weights, dropout, shuffling
    and augmented copies.

    Raises:
        ZooError: ``executions`` is not a positive integer.
    """
    from zoo.validation import check_integer

    executions = check_integer("executions", executions, 1)
    if executions == 1:
        return network
    params = _member_params(network)
    seed = int(params.get("seed") or 0)
    return DenseEnsembleClassifier(
        members=tuple({**params, "seed": seed + index} for index in range(executions))
    )


def _member_params(estimator: DenseNetClassifier) -> dict[str, Any]:
    params = estimator.get_params(deep=False)
    params.pop("verbose", None)
    return params


def averaging_model(models: Sequence[Any], weights: Sequence[float] | None = None):
    """Returns one Keras model whose output is the (weighted) mean of ``models``' outputs.

    Args:
        models: the fitted Keras models (or objects with ``to_keras()``).
        weights: one non-negative weight per model, normalised here to sum 1;
            ``None`` takes the plain mean (a ``keras.layers.Average``).

    With weights, each output is scaled by its weight (``keras.layers.Rescaling``)
    and the scaled outputs are summed (``keras.layers.Add``): standard layers
    that save, load and export like the rest of the model.
    """
    import keras

    plain = [m.to_keras() if hasattr(m, "to_keras") else m for m in models]
    inputs = keras.Input(shape=plain[0].input_shape[1:], name="pixels")
    outputs = [model(inputs) for model in _renamed(plain)]
    if weights is None:
        averaged = keras.layers.Average(name="probabilities")(outputs)
    else:
        normalised = normalised_weights(weights, len(plain))
        scaled = [
            keras.layers.Rescaling(scale=float(weight), name=f"weight_{index}")(output)
            for index, (weight, output) in enumerate(zip(normalised, outputs, strict=True))
        ]
        averaged = keras.layers.Add(name="probabilities")(scaled)
    # Left uncompiled: it only predicts, and a compiled optimizer would be
    # saved without its variables and warn when the file is loaded.
    return keras.Model(inputs, averaged, name=f"dense_ensemble_{len(plain)}")


def _renamed(models: list[Any]) -> list[Any]:
    # Nested models need distinct names; members built from one config share one.
    for index, model in enumerate(models):
        model.name = f"member_{index}"
    return models


def save_ensemble(estimator: DenseEnsembleClassifier, path: str | Path) -> None:
    """Saves a fitted ensemble as one ``.keras`` model plus a ``.json`` sidecar."""
    check_is_fitted(estimator, "model_")
    path = Path(path)
    estimator.model_.save(path)
    sidecar = {
        "ensemble": True,
        "params": {
            "members": [dict(m) for m in estimator.members],
            "weights": None if estimator.weights is None else [float(w) for w in estimator.weights],
        },
        "classes": [int(c) for c in estimator.classes_],
        "n_features_in": int(estimator.n_features_in_),
    }
    Path(f"{path}.json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")


def load_ensemble(path: str | Path, sidecar: dict[str, Any]) -> DenseEnsembleClassifier:
    """Loads an ensemble saved by :func:`save_ensemble` (``sidecar`` is its parsed JSON)."""
    import keras

    params = sidecar["params"]
    weights = params.get("weights")
    estimator = DenseEnsembleClassifier(
        members=tuple(params["members"]),
        weights=None if weights is None else tuple(weights),
    )
    estimator.weights_ = estimator._checked_weights()
    estimator.model_ = keras.saving.load_model(path)
    estimator.classes_ = np.asarray(sidecar["classes"])
    estimator.n_features_in_ = sidecar["n_features_in"]
    estimator.history_ = {}
    return estimator


def is_network(estimator: Any) -> bool:
    """Whether a fitted estimator is a Keras network (one, or an ensemble of them)."""
    return isinstance(estimator, (DenseNetClassifier, DenseEnsembleClassifier))
