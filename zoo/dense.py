"""The dense Keras network as a scikit-learn estimator, and its saving and loading.

The network itself is built by :mod:`zoo.network`; training runs on the
stacked trainer of :mod:`zoo.stacked`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from zoo.errors import ZooError
from zoo.space import DenseConfig, space_names

_DEFAULTS = DenseConfig()


class DenseNetClassifier(ClassifierMixin, BaseEstimator):
    """A dense Keras network with scikit-learn's estimator interface.

    The parameters are the hyperparameters of :class:`zoo.space.DenseConfig`
    plus how long and with which seed to train. Inputs are flat feature rows
    scaled to ``[0, 1]``; labels are any integers.

    Args:
        n_layers, units, activation, dropout_rate, normalization, l2, optimizer,
            learning_rate, batch_size, label_smoothing, lr_schedule, augment,
            augment_strength, conv_filters: see ``DenseConfig``. Augmentation copies only
            the training rows (:mod:`zoo.augment`); validation and prediction see the
            inputs as given.
        epochs: passes over the training data; an epoch is
            ``ceil(n / batch_size)`` steps of equal size (at most
            ``batch_size`` rows each) rather than full batches and a short one.
        seed: seeds weights, dropout and shuffling.
        verbose: Keras's verbosity for ``fit``.
    """

    def __init__(
        self,
        n_layers: int = _DEFAULTS.n_layers,
        units: int = _DEFAULTS.units,
        activation: str = _DEFAULTS.activation,
        dropout_rate: float = _DEFAULTS.dropout_rate,
        normalization: str = _DEFAULTS.normalization,
        l2: float = _DEFAULTS.l2,
        optimizer: str = _DEFAULTS.optimizer,
        learning_rate: float = _DEFAULTS.learning_rate,
        batch_size: int = _DEFAULTS.batch_size,
        label_smoothing: float = _DEFAULTS.label_smoothing,
        lr_schedule: str = _DEFAULTS.lr_schedule,
        augment: str = _DEFAULTS.augment,
        augment_strength: float = _DEFAULTS.augment_strength,
        conv_filters: int = _DEFAULTS.conv_filters,
        epochs: int = 30,
        seed: int = 0,
        verbose: int = 0,
    ):
        self.n_layers = n_layers
        self.units = units
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.normalization = normalization
        self.l2 = l2
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.label_smoothing = label_smoothing
        self.lr_schedule = lr_schedule
        self.augment = augment
        self.augment_strength = augment_strength
        self.conv_filters = conv_filters
        self.epochs = epochs
        self.seed = seed
        self.verbose = verbose

    @classmethod
    def from_config(cls, config: DenseConfig, **fit_params: Any) -> DenseNetClassifier:
        """Returns an unfitted estimator for a config (``epochs``, ``seed`` as keywords)."""
        return cls(**config.to_dict(), **fit_params)

    @property
    def config(self) -> DenseConfig:
        """The validated hyperparameters of this estimator."""
        return DenseConfig(**{name: getattr(self, name) for name in space_names()})

    def fit(self, X, y, validation_data=None, callbacks=None) -> DenseNetClassifier:
        """Trains a fresh network on ``X, y``.

        Training runs on the zoo's stacked trainer (:mod:`zoo.stacked`) with
        one member: the data stay in memory on the device, each epoch is one
        compiled call, and fits of one shape share the compiled program. ``model_`` is then the plain network of
        :func:`zoo.network.build_dense_model` holding the trained weights (compiled with a
        fresh optimizer), ready for :func:`save_dense` and export.

        Args:
            X: array of shape ``(n_samples, n_features)``, scaled to ``[0, 1]``
                (an array of images, ``(n_samples, height, width)``, is flattened).
            y: integer labels.
            validation_data: optional ``(X_val, y_val)`` scored after each epoch.
            callbacks: optional Keras callbacks, called once per epoch; their
                ``model`` is the trainer, not ``model_``.

        Returns:
            self.

        Raises:
            ZooError: a parameter is out of range, the training data has one
                class, the validation rows have another number of features, or
                ``y_val`` holds a label ``y`` does not.
            ValueError: ``X`` or ``y`` is not valid training data (scikit-learn's
                ``validate_data``: NaN or infinity, lengths that differ, a
                continuous ``y``, no rows or no features), or the validation
                data is not valid.
            zoo.network.TrainingDiverged: the loss became NaN or infinite.
        """
        # zoo.stacked imports keras at module level: imported here so `import zoo` stays keras-free.
        from zoo.stacked import fit_stacked, plain_network

        config = self.config
        self._check_epochs()
        X, y = validate_data(self, _rows(X), y, **_CHECKS)
        classes, y_index = _class_indices(y)
        features, labels = X, y_index
        val_rows = None
        if validation_data is not None:
            X_val, y_val = validation_data
            X_val, y_val = check_X_y(_rows(X_val), y_val, estimator=self, **_CHECKS)
            if X_val.shape[1] != X.shape[1]:
                raise ZooError(
                    f"validation rows have {X_val.shape[1]} features but the training rows "
                    f"have {X.shape[1]}; pass validation data shaped like X"
                )
            val_index = known_class_indices(classes, y_val)
            features = np.concatenate([X, X_val])
            labels = np.concatenate([y_index, val_index])
            val_rows = [np.arange(len(X), len(features))]
        self.classes_ = classes
        stack = fit_stacked(
            config,
            features,
            labels,
            len(classes),
            [np.arange(len(X))],
            val_rows,
            epochs=int(self.epochs),
            seed=int(self.seed),
            callbacks=list(callbacks or []),
            verbose=self.verbose,
        )
        self.model_ = plain_network(stack, 0)
        self.history_ = stack.histories[0]
        return self

    def _check_epochs(self) -> None:
        if (
            isinstance(self.epochs, bool)
            or not isinstance(self.epochs, (int, np.integer))
            or (self.epochs < 1)
        ):
            raise ZooError(f"epochs must be a positive integer (got {self.epochs!r})")

    def fit_folds(self, X, y, folds, callbacks=None) -> list[DenseNetClassifier]:
        """Trains one fresh network per cross-validation fold, all k in one stacked model.

        The k networks are the members of one :mod:`zoo.stacked` model: one
        compilation and one dispatch per epoch serve them all, and a later
        call with the same shapes (convolutional stem, layers, width, activation,
        normalization, optimizer family, data) reuses that compilation. Each member
        starts from the initial weights a fresh fit with this ``seed`` has,
        trains only on its own fold's training part (in full; folds of
        different sizes are padded and masked) and is scored on its own
        validation part after every epoch. The result is what separate
        ``clone(self).fit(X[train], y[train])`` calls give, up to
        floating-point rounding and dropout noise.

        Each returned estimator has ``classes_`` (every class of ``y``),
        ``n_features_in_``, ``history_`` (``loss``, ``accuracy``, ``val_loss``,
        ``val_accuracy`` per epoch, for learning curves) and, as ``model_``, a
        :class:`zoo.stacked.StackedMember`: a view of its member that predicts
        with that member's weights and whose ``to_keras()`` gives the plain
        network (:func:`save_dense` uses it).

        Args:
            X, y: the whole training part.
            folds: ``(train_index, val_index)`` pairs.
            callbacks: optional Keras callbacks, called once per epoch (their
                logs hold one value per fold).

        Returns:
            The fitted estimators, in fold order.

        Raises:
            ZooError: a parameter is out of range, the training data has one
                class, or a fold has no training rows.
            ValueError: ``X`` or ``y`` is not valid training data (as in :meth:`fit`).
            zoo.network.TrainingDiverged: a fold's loss became NaN or infinite.
        """
        # zoo.stacked imports keras at module level: imported here so `import zoo` stays keras-free.
        from zoo.stacked import StackedMember, fit_stacked

        config = self.config
        self._check_epochs()
        # check_X_y, not validate_data: this estimator stays unfitted, its clones are fitted.
        X, y = check_X_y(_rows(X), y, estimator=self, **_CHECKS)
        classes, y_index = _class_indices(y)
        stack = fit_stacked(
            config,
            X,
            y_index,
            len(classes),
            [np.asarray(train) for train, _ in folds],
            [np.asarray(val) for _, val in folds],
            epochs=int(self.epochs),
            seed=int(self.seed),
            callbacks=list(callbacks or []),
            verbose=self.verbose,
        )
        fitted = []
        for index in range(len(folds)):
            member = clone(self)
            member.classes_ = classes
            member.n_features_in_ = X.shape[1]
            member.history_ = stack.histories[index]
            member.model_ = StackedMember(stack, index)
            fitted.append(member)
        return fitted

    def predict_proba(self, X) -> np.ndarray:
        """Returns class probabilities, one column per entry of ``classes_``.

        Raises:
            sklearn.exceptions.NotFittedError: the network is not fitted.
            ValueError: ``X`` is not valid input (NaN or infinity, no rows) or
                has another number of features than the training rows.
        """
        check_is_fitted(self, "model_")
        X = validate_data(self, _rows(X), reset=False, **_CHECKS)
        return np.asarray(self.model_.predict(X, batch_size=4096, verbose=0))

    def predict(self, X) -> np.ndarray:
        """Returns the most probable class of each row."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def count_params(self) -> int:
        """Returns the number of trainable parameters of the fitted network."""
        check_is_fitted(self, "model_")
        trainable = getattr(self.model_, "trainable_weights", None)
        if trainable is None:
            # A fold member of fit_folds counts its own slice of the stack.
            return int(self.model_.count_params())
        return int(sum(int(np.prod(w.shape)) for w in trainable))


# How scikit-learn's validate_data checks the rows and labels of fit and predict: dense
# float32 rows (the network's dtype), finite, at least one row and one feature.
_CHECKS = {"dtype": np.float32}


def _rows(X):
    """``X`` with each sample flattened into one row, so image arrays ``(n, 8, 8)`` pass.

    Anything of 2 dimensions or fewer (a 1-D ``X`` included, which
    ``validate_data`` refuses) and sparse matrices are left to ``validate_data``.
    """
    if getattr(X, "ndim", 2) > 2:
        return np.reshape(X, (len(X), -1))
    return X


def _class_indices(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted classes of ``y`` and each label's index among them.

    Raises:
        ValueError: ``y`` is not classification targets (e.g. continuous values).
        ZooError: ``y`` holds one class.
    """
    check_classification_targets(y)
    classes, y_index = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ZooError(
            f"training data needs at least 2 classes (got one class: {classes.tolist()}); "
            "pass rows of every class"
        )
    return classes, y_index


def known_class_indices(
    classes: np.ndarray,
    y: np.ndarray,
    *,
    labels: str = "validation labels",
    among: str = "the training classes",
    advice: str = "pass validation rows of the training classes only",
) -> np.ndarray:
    """Each label's index in ``classes`` (sorted).

    Raises:
        ZooError: a label is not in ``classes``: "``labels`` [unseen] are not
            among ``among`` [classes]; ``advice``".
    """
    unseen = np.setdiff1d(y, classes)
    if len(unseen):
        raise ZooError(
            f"{labels} {unseen.tolist()} are not among {among} {classes.tolist()}; {advice}"
        )
    return np.searchsorted(classes, y)


def save_dense(estimator: DenseNetClassifier, path: str | Path) -> None:
    """Saves a fitted network as ``path`` (``.keras``) plus ``path`` + ``.json``.

    A fold member of :meth:`DenseNetClassifier.fit_folds` is saved as the
    plain network holding its weights.

    The JSON sidecar holds the estimator's parameters and ``classes_``, so
    :func:`load_dense` gives back an estimator that predicts the same.
    """
    check_is_fitted(estimator, "model_")
    path = Path(path)
    model = estimator.model_
    if hasattr(model, "to_keras"):
        # A fold member of fit_folds: save its weights as the plain network.
        model = model.to_keras()
    model.save(path)
    sidecar = {
        "params": estimator.get_params(),
        "classes": [int(c) for c in estimator.classes_],
        "n_features_in": int(estimator.n_features_in_),
        "history": estimator.history_,
    }
    Path(f"{path}.json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")


def load_dense(path: str | Path) -> DenseNetClassifier:
    """Loads a network saved by :func:`save_dense`."""
    import keras

    sidecar = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    estimator = DenseNetClassifier(**sidecar["params"])
    estimator.model_ = keras.saving.load_model(path)
    estimator.classes_ = np.asarray(sidecar["classes"])
    estimator.n_features_in_ = sidecar["n_features_in"]
    estimator.history_ = sidecar.get("history", {})
    return estimator
