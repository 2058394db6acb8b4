"""The one evaluation protocol every model goes through.

Stratified k-fold cross-validation on the training part, with the same folds
(from one recorded seed) for every model of a run; then a refit on the whole
training part and one score on the held-out test split, which no search sees.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from zoo.calibration import expected_calibration_error
from zoo.data import Dataset
from zoo.errors import ZooError
from zoo.validation import check_integer

Folds = list[tuple[np.ndarray, np.ndarray]]


def check_folds(y: np.ndarray, n_folds: int) -> None:
    """Checks that every class has enough training samples for ``n_folds`` folds.

    Raises:
        ZooError: ``n_folds`` below 2, or a class too small for it.
    """
    check_integer("--folds", n_folds, 2)
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < n_folds:
        raise ZooError(
            f"class {classes[counts.argmin()]} has only {counts.min()} training samples, "
            f"fewer than --folds {n_folds}; use fewer folds or more data"
        )


def make_folds(y: np.ndarray, n_folds: int, seed: int) -> Folds:
    """Returns the run's stratified, shuffled folds as ``(train_index, val_index)`` pairs."""
    check_folds(y, n_folds)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(train, val) for train, val in splitter.split(np.zeros(len(y)), y)]


def cross_validate(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    on_fold: Callable[[int, Any, float], None] | None = None,
    callbacks: list[Any] | None = None,
) -> list[float]:
    """Scores a fresh clone of ``estimator`` on each fold's validation part.

    Args:
        estimator: an unfitted scikit-learn classifier.
        X, y: the training part (features scaled to ``[0, 1]``).
        folds: the run's folds.
        on_fold: called as ``on_fold(index, fitted, accuracy)`` after each fold.
        callbacks: Keras callbacks for estimators that train all folds at
            once, passed as ``fit_folds(X, y, folds, callbacks=...)``; other
            estimators ignore them.

    Returns:
        The accuracy on each fold, in fold order.
    """
    fit_folds = getattr(estimator, "fit_folds", None)
    if fit_folds is not None:
        # Estimators that can train all folds at once (stacked dense nets) do so.
        fitted = fit_folds(X, y, folds, callbacks=callbacks)
    else:
        fitted = (clone(estimator).fit(X[train], y[train]) for train, _ in folds)
    scores = []
    for index, ((_, val), model) in enumerate(zip(folds, fitted, strict=True)):
        accuracy = float(accuracy_score(y[val], model.predict(X[val])))
        scores.append(accuracy)
        if on_fold is not None:
            on_fold(index, model, accuracy)
    return scores


def cross_validate_out_of_fold(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    folds: Folds,
    classes: np.ndarray | None = None,
    callbacks: list[Any] | None = None,
    on_fold: Callable[[int, Any, float], None] | None = None,
) -> tuple[list[float], np.ndarray | None]:
    """Cross-validates like :func:`cross_validate` and keeps the out-of-fold probabilities.

    Row ``i`` of the out-of-fold matrix is ``predict_proba`` of the one fold
    model that did not train on row ``i`` (the model of the fold whose
    validation part holds it), so the matrix scores any ensemble of models
    on the run's folds without training again.

    Args:
        estimator, X, y, folds, callbacks: as :func:`cross_validate`.
        classes: the class labels in column order (default: the labels in ``y``).
        on_fold: as :func:`cross_validate`'s, called after the fold's
            probabilities are kept.

    Returns:
        The accuracy on each fold, and the ``(n_samples, n_classes)`` float32
        out-of-fold probabilities (``None`` for a model without ``predict_proba``).

    Raises:
        ZooError: a fold model that learned other classes than ``classes``.
    """
    classes = np.unique(y) if classes is None else np.asarray(classes)
    out_of_fold: np.ndarray | None = np.zeros((len(y), len(classes)), dtype="float32")

    def keep(index: int, model: Any, accuracy: float) -> None:
        nonlocal out_of_fold
        if out_of_fold is None or not hasattr(model, "predict_proba"):
            out_of_fold = None
            return
        learned = np.asarray(model.classes_)
        if learned.shape != classes.shape or (learned != classes).any():
            raise ZooError(
                f"fold {index + 1}'s model learned classes {learned.tolist()}, expected "
                f"{classes.tolist()}; every fold's training part must hold every class"
            )
        val = folds[index][1]
        out_of_fold[val] = model.predict_proba(X[val])

    def keep_then_report(index: int, model: Any, accuracy: float) -> None:
        keep(index, model, accuracy)
        if on_fold is not None:
            on_fold(index, model, accuracy)

    scores = cross_validate(estimator, X, y, folds, on_fold=keep_then_report, callbacks=callbacks)
    return scores, out_of_fold


def model_size(estimator: Any) -> int:
    """Counts a fitted model's parameters.

    For a network, its trainable weights; for any other estimator, the
    numbers its fitted state stores (tree nodes, support vectors, stored
    training samples...).
    """
    count_params = getattr(estimator, "count_params", None)
    if count_params is not None:
        return int(count_params())
    seen: set[int] = set()

    def count(value: Any) -> int:
        if id(value) in seen:
            return 0
        seen.add(id(value))
        if isinstance(value, np.ndarray):
            return int(value.size) if value.dtype != object else sum(count(v) for v in value.flat)
        if isinstance(value, dict):
            return sum(count(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(count(v) for v in value)
        if hasattr(value, "get_params") and hasattr(value, "fit"):
            return model_size(value)
        if hasattr(value, "__getstate__") and type(value).__module__.startswith("sklearn"):
            state = value.__getstate__()
            if isinstance(state, dict):
                return sum(count(v) for k, v in state.items() if not k.startswith("_"))
        return 0

    # Fitted state ends in "_" (coef_, tree_) or, for neighbours, is the stored _fit_X.
    return sum(
        count(value)
        for name, value in vars(estimator).items()
        if name.endswith("_") or name.startswith("_fit")
    )


def config_json(estimator: Any) -> str:
    """The estimator's full parameter set as sorted, compact JSON."""
    params = {
        key: value
        for key, value in estimator.get_params(deep=False).items()
        if isinstance(value, (int, float, str, bool, type(None), list, tuple))
    }
    return json.dumps(params, sort_keys=True, default=str)


@dataclass
class Evaluation:
    """What the protocol measured for one model; ``row()`` is its leaderboard row.

    ``out_of_fold`` holds the cross-validation's out-of-fold probabilities
    when they were kept (:func:`cross_validate_out_of_fold`), else ``None``.
    """

    model: str
    kind: str
    cv_scores: list[float]
    test_accuracy: float
    test_macro_f1: float
    fit_seconds: float
    predict_seconds_per_1000: float
    params: int
    config: str
    extra: dict[str, Any] = field(default_factory=dict)
    fitted: Any = None
    test_ece: float | None = None
    out_of_fold: np.ndarray | None = None

    def row(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.kind,
            "cv_accuracy_mean": float(np.mean(self.cv_scores)),
            "cv_accuracy_std": float(np.std(self.cv_scores)),
            "test_accuracy": self.test_accuracy,
            "test_macro_f1": self.test_macro_f1,
            # Empty for a model without predict_proba.
            "test_ece": "" if self.test_ece is None else self.test_ece,
            "fit_seconds": self.fit_seconds,
            "predict_seconds_per_1000": self.predict_seconds_per_1000,
            "params": self.params,
            "config": self.config,
            "cv_folds": json.dumps([round(s, 6) for s in self.cv_scores]),
            **self.extra,
        }


def refit_and_test(
    name: str,
    kind: str,
    estimator: Any,
    dataset: Dataset,
    cv_scores: list[float],
    extra: dict[str, Any] | None = None,
) -> Evaluation:
    """Refits on the whole training part and scores once on the held-out test split."""
    model = clone(estimator)
    started = time.perf_counter()
    model.fit(dataset.scale(dataset.x_train), dataset.y_train)
    fit_seconds = time.perf_counter() - started
    return test_fitted(name, kind, model, dataset, cv_scores, fit_seconds, extra)


def test_fitted(
    name: str,
    kind: str,
    model: Any,
    dataset: Dataset,
    cv_scores: list[float],
    fit_seconds: float,
    extra: dict[str, Any] | None = None,
) -> Evaluation:
    """Scores a model fitted on the whole training part once on the held-out test split.

    Args:
        name: the leaderboard name.
        kind: ``keras`` or ``sklearn``.
        model: the fitted model.
        dataset: the run's data.
        cv_scores: the model's per-fold CV scores (measured before).
        fit_seconds: how long fitting it took.
        extra: more leaderboard columns.

    The ``test_ece`` column is the expected calibration error (15 bins) of the
    model's own ``predict_proba`` on the test split, before any temperature.
    """
    x_test = dataset.scale(dataset.x_test)
    started = time.perf_counter()
    predicted = model.predict(x_test)
    predict_seconds = time.perf_counter() - started
    test_ece = None
    if hasattr(model, "predict_proba"):
        probabilities = np.asarray(model.predict_proba(x_test))
        test_ece = expected_calibration_error(probabilities, dataset.y_test, model.classes_)
    return Evaluation(
        model=name,
        kind=kind,
        cv_scores=[float(s) for s in cv_scores],
        test_accuracy=float(accuracy_score(dataset.y_test, predicted)),
        test_macro_f1=float(f1_score(dataset.y_test, predicted, average="macro")),
        fit_seconds=round(fit_seconds, 4),
        predict_seconds_per_1000=round(predict_seconds * 1000 / max(1, len(predicted)), 6),
        params=model_size(model),
        config=config_json(model),
        extra=dict(extra or {}),
        fitted=model,
        test_ece=test_ece,
    )


def evaluate_model(
    name: str, kind: str, estimator: Any, dataset: Dataset, folds: Folds
) -> Evaluation:
    """Runs the whole protocol on one model: CV on the run's folds, refit, test.

    The result keeps the CV's out-of-fold probabilities (``out_of_fold``),
    columns in ``dataset.classes`` order, for ensembles of the run's models.
    """
    X_train = dataset.scale(dataset.x_train)
    scores, out_of_fold = cross_validate_out_of_fold(
        estimator, X_train, dataset.y_train, folds, classes=np.asarray(dataset.classes)
    )
    result = refit_and_test(name, kind, estimator, dataset, scores)
    result.out_of_fold = out_of_fold
    return result
