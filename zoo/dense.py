"""Dense Keras networks: the builder and the scikit-learn estimator around it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from zoo.errors import ZooError
from zoo.space import DenseConfig, space_names

_DEFAULTS = DenseConfig()


class TrainingDiverged(ArithmeticError):
    """Training produced a non-finite loss (the learning rate is usually too high)."""


def build_dense_model(config: DenseConfig, input_dim: int, n_classes: int):
    """Builds and compiles the dense network a config describes.

    The network takes flat inputs already scaled to ``[0, 1]`` and returns
    class probabilities (softmax).

    Args:
        config: the hyperparameters.
        input_dim: number of input features (64 for the bundled 8x8 digits).
        n_classes: number of classes.

    Returns:
        A compiled ``keras.Model`` trained with one-hot targets.
    """
    import keras

    if input_dim < 1 or n_classes < 2:
        raise ZooError(
            f"a dense net needs at least 1 input and 2 classes (got {input_dim} inputs, "
            f"{n_classes} classes)"
        )
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    inputs = keras.Input(shape=(input_dim,), name="pixels")
    x = inputs
    for index in range(config.n_layers):
        x = keras.layers.Dense(
            config.units,
            use_bias=config.normalization == "none",
            kernel_regularizer=regularizer,
            name=f"hidden_{index}",
        )(x)
        if config.normalization == "batch":
            x = keras.layers.BatchNormalization(name=f"batch_norm_{index}")(x)
        elif config.normalization == "layer":
            x = keras.layers.LayerNormalization(name=f"layer_norm_{index}")(x)
        x = keras.layers.Activation(config.activation, name=f"{config.activation}_{index}")(x)
        if config.dropout_rate:
            x = keras.layers.Dropout(config.dropout_rate, name=f"dropout_{index}")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"dense_{config.n_layers}x{config.units}")
    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def make_optimizer(config: DenseConfig):
    """Returns the Keras optimizer a config names, at its learning rate."""
    import keras

    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
    }
    return optimizers[config.optimizer](learning_rate=config.learning_rate)


class DenseNetClassifier(ClassifierMixin, BaseEstimator):
    """A dense Keras network with scikit-learn's estimator interface.

    The parameters are the hyperparameters of :class:`zoo.space.DenseConfig`
    plus how long and with which seed to train. Inputs are flat feature rows
    scaled to ``[0, 1]``; labels are any integers.

    Args:
        n_layers, units, activation, dropout_rate, normalization, l2, optimizer,
            learning_rate, batch_size, label_smoothing: see ``DenseConfig``.
        epochs: passes over the training data.
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

        Args:
            X: array of shape ``(n_samples, n_features)``, scaled to ``[0, 1]``.
            y: integer labels.
            validation_data: optional ``(X_val, y_val)`` scored after each epoch.
            callbacks: optional Keras callbacks (the tuner passes its own).

        Returns:
            self.

        Raises:
            ZooError: a parameter is out of range.
            TrainingDiverged: the loss became NaN or infinite.
        """
        import keras

        config = self.config
        self._check_epochs()
        X = _as_features(X)
        y = np.asarray(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ZooError(f"training data needs at least 2 classes (got {len(self.classes_)})")
        self.n_features_in_ = X.shape[1]
        keras.utils.set_random_seed(int(self.seed))
        self.model_ = build_dense_model(config, X.shape[1], len(self.classes_))
        self._train(X, y_index, validation_data, callbacks)
        return self

    def _check_epochs(self) -> None:
        if (
            isinstance(self.epochs, bool)
            or not isinstance(self.epochs, (int, np.integer))
            or (self.epochs < 1)
        ):
            raise ZooError(f"epochs must be a positive integer (got {self.epochs!r})")

    def _train(self, X, y_index, validation_data=None, callbacks=None) -> None:
        """Trains ``self.model_`` as it stands on rows ``X`` with class indices ``y_index``."""
        import keras

        config = self.config
        n_classes = len(self.classes_)
        targets = np.eye(n_classes, dtype="float32")[y_index]
        fit_validation = None
        if validation_data is not None:
            X_val, y_val = validation_data
            val_index = np.searchsorted(self.classes_, np.asarray(y_val))
            val_index = np.clip(val_index, 0, n_classes - 1)
            fit_validation = (_as_features(X_val), np.eye(n_classes, dtype="float32")[val_index])
        history = self.model_.fit(
            X,
            targets,
            batch_size=int(config.batch_size),
            epochs=int(self.epochs),
            validation_data=fit_validation,
            callbacks=[keras.callbacks.TerminateOnNaN(), *(callbacks or [])],
            shuffle=True,
            verbose=self.verbose,
        )
        self.history_ = {key: [float(v) for v in values] for key, values in history.history.items()}
        losses = self.history_.get("loss", [])
        if not losses or not all(math.isfinite(v) for v in losses):
            raise TrainingDiverged(
                f"loss became {losses[-1] if losses else 'undefined'} during training "
                f"({config.short()}); try a lower learning_rate"
            )

    def fit_folds(self, X, y, folds) -> list[DenseNetClassifier]:
        """Trains one fresh network per cross-validation fold, compiling only once.

        Compilation is most of a small network's fit, so the folds share one
        compiled network: before each fold its weights, normalization
        statistics and optimizer state are reset to the same fresh start,
        and after it the fold's weights are kept. Each fold trains only on its
        own training part, cut to the size of the smallest fold's (at most
        one row less, k-fold parts differ by one) so every fold runs the same
        compiled steps. Each returned estimator predicts with its own weights
        and records its validation part's ``val_loss`` and ``val_accuracy``
        per epoch in ``history_``, for learning curves.

        Args:
            X, y: the whole training part.
            folds: ``(train_index, val_index)`` pairs.

        Returns:
            The fitted estimators, in fold order.

        Raises:
            TrainingDiverged: a fold's loss became NaN or infinite.
        """
        import keras

        config = self.config
        self._check_epochs()
        X = _as_features(X)
        y = np.asarray(y)
        classes = np.unique(y)
        keras.utils.set_random_seed(int(self.seed))
        model = build_dense_model(config, X.shape[1], len(classes))
        model.optimizer.build(model.trainable_variables)
        fresh_weights = [np.array(v) for v in model.weights]
        fresh_optimizer = [np.array(v) for v in model.optimizer.variables]
        size = min(len(train) for train, _ in folds)
        cut = np.random.default_rng(int(self.seed))
        fitted = []
        for index, (train, val) in enumerate(folds):
            for variable, value in zip(model.weights, fresh_weights, strict=True):
                variable.assign(value)
            for variable, value in zip(model.optimizer.variables, fresh_optimizer, strict=True):
                variable.assign(value)
            keras.utils.set_random_seed(int(self.seed) + index)
            train = np.sort(cut.permutation(train)[:size])
            member = clone(self)
            member.classes_ = classes
            member.n_features_in_ = X.shape[1]
            member.model_ = model
            member._train(
                X[train], np.searchsorted(classes, y[train]), validation_data=(X[val], y[val])
            )
            member._fold_weights = [np.array(v) for v in model.weights]
            fitted.append(member)
        return fitted

    def predict_proba(self, X) -> np.ndarray:
        """Returns class probabilities, one column per entry of ``classes_``."""
        check_is_fitted(self, "model_")
        fold_weights = getattr(self, "_fold_weights", None)
        if fold_weights is not None:
            # A fold of fit_folds shares its compiled network with the others.
            for variable, value in zip(self.model_.weights, fold_weights, strict=True):
                variable.assign(value)
        X = _as_features(X)
        if X.shape[1] != self.n_features_in_:
            raise ZooError(
                f"X has {X.shape[1]} features but the network was trained on {self.n_features_in_}"
            )
        return np.asarray(self.model_.predict(X, batch_size=4096, verbose=0))

    def predict(self, X) -> np.ndarray:
        """Returns the most probable class of each row."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def count_params(self) -> int:
        """Returns the number of trainable parameters of the fitted network."""
        check_is_fitted(self, "model_")
        return int(sum(int(np.prod(w.shape)) for w in self.model_.trainable_weights))


def _as_features(X) -> np.ndarray:
    X = np.asarray(X, dtype="float32")
    if X.ndim != 2:
        X = X.reshape(len(X), -1)
    return X


def save_dense(estimator: DenseNetClassifier, path: str | Path) -> None:
    """Saves a fitted network as ``path`` (``.keras``) plus ``path`` + ``.json``.

    The JSON sidecar holds the estimator's parameters and ``classes_``, so
    :func:`load_dense` gives back an estimator that predicts the same.
    """
    import json

    check_is_fitted(estimator, "model_")
    path = Path(path)
    estimator.model_.save(path)
    sidecar = {
        "params": estimator.get_params(),
        "classes": [int(c) for c in estimator.classes_],
        "n_features_in": int(estimator.n_features_in_),
        "history": estimator.history_,
    }
    Path(f"{path}.json").write_text(json.dumps(sidecar, indent=1), encoding="utf-8")


def load_dense(path: str | Path) -> DenseNetClassifier:
    """Loads a network saved by :func:`save_dense`."""
    import json

    import keras

    sidecar = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    estimator = DenseNetClassifier(**sidecar["params"])
    estimator.model_ = keras.saving.load_model(path)
    estimator.classes_ = np.asarray(sidecar["classes"])
    estimator.n_features_in_ = sidecar["n_features_in"]
    estimator.history_ = sidecar.get("history", {})
    return estimator
