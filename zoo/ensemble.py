"""Ensembles of dense networks: the mean of their class probabilities (soft voting)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from zoo.dense import DenseNetClassifier, _as_features
from zoo.errors import ZooError


class DenseEnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Averages the class probabilities of several :class:`DenseNetClassifier` networks.

    Args:
        members: one parameter dict per network (a ``DenseNetClassifier``'s
            ``get_params()``: hyperparameters, ``epochs``, ``seed``).

    After ``fit``, ``estimators_`` holds the fitted networks and ``model_`` one
    Keras model that feeds its input to every network and averages their
    outputs, ready for :func:`save_ensemble` and SavedModel export.
    """

    def __init__(self, members: Sequence[dict[str, Any]] = ()):
        self.members = members

    def _unfitted(self) -> list[DenseNetClassifier]:
        if isinstance(self.members, (str, bytes)) or len(self.members) < 2:
            raise ZooError(
                f"an ensemble needs at least 2 member networks (got {len(self.members)})"
            )
        try:
            return [DenseNetClassifier(**dict(params)) for params in self.members]
        except TypeError as error:
            raise ZooError(f"an ensemble member has an unknown parameter ({error})") from None

    def fit(self, X, y) -> DenseEnsembleClassifier:
        """Trains every member network on ``X, y``."""
        fitted = [member.fit(X, y) for member in self._unfitted()]
        self._adopt(fitted)
        return self

    def fit_folds(self, X, y, folds, callbacks=None) -> list[DenseEnsembleClassifier]:
        """Trains every member on each fold's training part; returns one ensemble per fold.

        Fold ``f``'s ensemble averages the members' fold-``f`` networks, each
        trained (by :meth:`DenseNetClassifier.fit_folds`) without fold ``f``'s
        validation rows, so scoring it on them is a fair CV score.
        """
        per_member = [
            member.fit_folds(X, y, folds, callbacks=callbacks) for member in self._unfitted()
        ]
        fold_ensembles = []
        for fold_members in zip(*per_member, strict=True):
            ensemble = DenseEnsembleClassifier(members=self.members)
            ensemble._adopt(list(fold_members), build_model=False)
            fold_ensembles.append(ensemble)
        return fold_ensembles

    @classmethod
    def from_fitted(cls, estimators: Sequence[DenseNetClassifier]) -> DenseEnsembleClassifier:
        """Makes an ensemble of networks already fitted on the same data (no training)."""
        ensemble = cls(members=tuple(_member_params(e) for e in estimators))
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
        if build_model:
            self.model_ = averaging_model([e.model_ for e in estimators])

    def predict_proba(self, X) -> np.ndarray:
        """Returns the mean of the members' class probabilities."""
        if getattr(self, "model_", None) is not None:
            X = _as_features(X)
            if X.shape[1] != self.n_features_in_:
                raise ZooError(
                    f"X has {X.shape[1]} features but the ensemble was trained on "
                    f"{self.n_features_in_}"
                )
            return np.asarray(self.model_.predict(X, batch_size=4096, verbose=0))
        check_is_fitted(self, "estimators_")
        return np.mean([e.predict_proba(X) for e in self.estimators_], axis=0)

    def predict(self, X) -> np.ndarray:
        """Returns the class with the highest mean probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def count_params(self) -> int:
        """Returns the trainable parameters of all members together."""
        if getattr(self, "estimators_", None):
            return int(sum(e.count_params() for e in self.estimators_))
        check_is_fitted(self, "model_")
        return int(sum(int(np.prod(w.shape)) for w in self.model_.trainable_weights))


def _member_params(estimator: DenseNetClassifier) -> dict[str, Any]:
    params = estimator.get_params(deep=False)
    params.pop("verbose", None)
    return params


def averaging_model(models: Sequence[Any]):
    """Returns one Keras model whose output is the mean of ``models``' outputs."""
    import keras

    plain = [m.to_keras() if hasattr(m, "to_keras") else m for m in models]
    inputs = keras.Input(shape=plain[0].input_shape[1:], name="pixels")
    outputs = [model(inputs) for model in _renamed(plain)]
    averaged = keras.layers.Average(name="probabilities")(outputs)
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
        "params": {"members": [dict(m) for m in estimator.members]},
        "classes": [int(c) for c in estimator.classes_],
        "n_features_in": int(estimator.n_features_in_),
    }
    Path(f"{path}.json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")


def load_ensemble(path: str | Path, sidecar: dict[str, Any]) -> DenseEnsembleClassifier:
    """Loads an ensemble saved by :func:`save_ensemble` (``sidecar`` is its parsed JSON)."""
    import keras

    estimator = DenseEnsembleClassifier(members=tuple(sidecar["params"]["members"]))
    estimator.model_ = keras.saving.load_model(path)
    estimator.classes_ = np.asarray(sidecar["classes"])
    estimator.n_features_in_ = sidecar["n_features_in"]
    estimator.history_ = {}
    return estimator


def is_network(estimator: Any) -> bool:
    """Whether a fitted estimator is a Keras network (one, or an ensemble of them)."""
    return isinstance(estimator, (DenseNetClassifier, DenseEnsembleClassifier))
