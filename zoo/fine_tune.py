"""Continuing a trained network's training: rebuilt from its weights, then fine-tuned.

:func:`with_weights` makes an unfitted :class:`~zoo.dense.DenseNetClassifier`
or :class:`~zoo.ensemble.DenseEnsembleClassifier` fitted with given weight
arrays, such as an exported SavedModel's variables, without training.
:func:`fine_tune` then trains its networks further from those weights, as
Keras users continue a trained model with ``fit``: a fresh optimizer of the
config's kind at a fraction of its learning rate, for a few passes over the
rows. It takes a small part of a fit's time, since it starts where that fit
ended. :func:`network_weights` and :func:`extrapolate` then scale the change
the fine-tuning made to the weights, as task arithmetic scales a task vector:
a factor of 1 keeps the fine-tuned weights, 0 the ones it started from, and a
factor above 1 carries the change further.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.dense import DenseNetClassifier, known_class_indices
from zoo.ensemble import DenseEnsembleClassifier
from zoo.errors import ZooError


def networks(estimator: DenseNetClassifier | DenseEnsembleClassifier) -> list[DenseNetClassifier]:
    """The fitted networks of ``estimator``: itself, or an ensemble's members."""
    if isinstance(estimator, DenseEnsembleClassifier):
        return list(estimator.estimators_)
    return [estimator]


def network_weights(
    estimator: DenseNetClassifier | DenseEnsembleClassifier,
) -> list[list[np.ndarray]]:
    """A copy of each network's weights (:func:`networks`' order, each in Keras's order)."""
    return [[np.array(w) for w in network.model_.get_weights()] for network in networks(estimator)]


def extrapolate(
    estimator: DenseNetClassifier | DenseEnsembleClassifier,
    start: Sequence[Sequence[np.ndarray]],
    end: Sequence[Sequence[np.ndarray]],
    factor: float,
) -> DenseNetClassifier | DenseEnsembleClassifier:
    """Gives each network the trainable weights ``start + factor * (end - start)``.

    ``start`` and ``end`` are :func:`network_weights` of the same networks, for
    example before and after :func:`fine_tune`: a factor of 1 gives ``end``, 0
    ``start``, 1.5 half as much change again. Weights that are not trained
    (batch normalization's moving statistics) take ``end``'s values. An
    ensemble's averaging model shares its members' layers, so it follows.

    Returns:
        ``estimator``, its weights set in place.

    Raises:
        ZooError: ``factor`` is not a finite number, or the weights are not those
            of the estimator's networks.
    """
    if isinstance(factor, bool) or not math.isfinite(float(factor)):
        raise ZooError(f"the extrapolation factor must be a finite number (got {factor!r})")
    members = networks(estimator)
    if not len(members) == len(start) == len(end):
        raise ZooError(
            f"weights of {len(start)} and {len(end)} networks for an estimator of {len(members)}"
        )
    factor = float(factor)
    for network, first, last in zip(members, start, end, strict=True):
        shapes = [tuple(w.shape) for w in network.model_.weights]
        if [np.shape(w) for w in first] != shapes or [np.shape(w) for w in last] != shapes:
            raise ZooError("the weights are not those of the estimator's networks")
        trained = {id(w) for w in network.model_.trainable_weights}
        network.model_.set_weights(
            [
                (a + factor * (b - a)).astype(a.dtype) if id(w) in trained else b
                for w, a, b in zip(
                    network.model_.weights,
                    map(np.asarray, first),
                    map(np.asarray, last),
                    strict=True,
                )
            ]
        )
    return estimator


def with_weights(
    estimator: DenseNetClassifier | DenseEnsembleClassifier,
    classes: Sequence[Any],
    n_features: int,
    arrays: Sequence[np.ndarray],
    seed: int = 0,
) -> DenseNetClassifier | DenseEnsembleClassifier:
    """Makes an unfitted network or ensemble fitted with the given weights (no training).

    The networks are built from the estimator's parameters
    (:func:`zoo.network.build_dense_model`); an ensemble's are joined by its
    averaging model. ``arrays`` are then assigned to that model's weights in
    Keras's order (``model.weights``: each layer's kernel, bias or
    normalisation weights, member after member), the order a SavedModel of it
    lists its variables in once its random generators' states are left out.

    Args:
        estimator: an unfitted ``DenseNetClassifier`` or ``DenseEnsembleClassifier``.
        classes: the class labels, one per output.
        n_features: the inputs per row.
        arrays: one array per weight.
        seed: seeds the networks' dropout in later training.

    Returns:
        ``estimator``, fitted.

    Raises:
        ZooError: the arrays are not the weights of the networks the
            parameters describe (another count or shape).
    """
    from zoo.network import build_dense_model

    classes = np.asarray(classes)
    n_features = int(n_features)
    members = estimator._unfitted() if isinstance(estimator, DenseEnsembleClassifier) else None
    for index, network in enumerate(members or [estimator]):
        network.model_ = build_dense_model(
            network.config, n_features, len(classes), seed=seed + 1000 * index
        )
        network.classes_ = classes
        network.n_features_in_ = n_features
        network.history_ = {}
    if members is not None:
        estimator._adopt(members)
    model = estimator.model_
    targets = list(model.weights)
    if len(targets) != len(arrays):
        raise ZooError(
            f"{len(arrays)} weight arrays for a model of {len(targets)} weights; the weights "
            "are not those of the networks the parameters describe"
        )
    for target, array in zip(targets, arrays, strict=True):
        array = np.asarray(array)
        if tuple(target.shape) != array.shape:
            raise ZooError(
                f"weight {target.path} has shape {tuple(target.shape)} but its array has "
                f"{array.shape}; the weights are not those of the networks the parameters "
                "describe"
            )
        target.assign(array.astype(target.dtype))
    return estimator


def fine_tune(
    estimator: DenseNetClassifier | DenseEnsembleClassifier,
    X,
    y,
    *,
    n_base: int,
    epochs: int,
    learning_rate_scale: float,
    seed: int,
    as_is: float = 0.0,
) -> DenseNetClassifier | DenseEnsembleClassifier:
    """Trains a fitted network (or each network of an ensemble) further, from its weights.

    The first ``n_base`` rows are data of the kind the network was trained on:
    each epoch trains on one random copy of each of them from its config's
    augmentation bank (:func:`zoo.augment.augment_bank`, as its own fit
    augmented them; the rows as they are with ``augment="none"``), or, for a
    share ``as_is`` of them drawn afresh each epoch, on the row as it is. The other
    rows train as given, once an epoch. The optimizer is the config's, fresh,
    at ``learning_rate_scale`` times its learning rate, decaying to zero over
    the ``epochs`` with ``lr_schedule="cosine"``; the loss is the config's
    (label smoothing included). An ensemble's weights are kept.

    Args:
        estimator: a fitted ``DenseNetClassifier`` or ``DenseEnsembleClassifier``
            whose networks are Keras models (fitted by ``fit`` or :func:`with_weights`).
        X: rows scaled to ``[0, 1]``, ``n_base`` base rows first.
        y: their labels, each one of the estimator's classes.
        n_base: how many of the rows come first as base rows.
        epochs: passes over the rows.
        learning_rate_scale: the fraction of the config's learning rate to start at.
        seed: seeds the copies drawn, the shuffling and the dropout.
        as_is: the share of base rows, in ``[0, 1]``, that each epoch trains on as they
            are instead of on an augmented copy.

    Returns:
        ``estimator``, its networks trained further in place and compiled again with a
        fresh optimizer, as a fit leaves them; each network's ``history_`` holds the
        fine-tuning's ``loss`` per epoch.

    Raises:
        ZooError: a label is not one of the estimator's classes, or a parameter is out of range.
        zoo.network.TrainingDiverged: the loss became NaN or infinite.
    """
    import keras

    from zoo.augment import augment_bank
    from zoo.network import TrainingDiverged, compile_dense

    X = np.asarray(X, dtype="float32").reshape(len(X), -1)
    y = np.asarray(y)
    classes = np.asarray(estimator.classes_)
    indices = known_class_indices(
        classes,
        y,
        labels="labels",
        among="the network's classes",
        advice="fine-tune on rows of its classes only",
    )
    if len(X) != len(y) or not 0 <= n_base <= len(X):
        raise ZooError(
            f"fine-tuning needs one label per row and at most {len(X)} base rows (got "
            f"{len(y)} labels, n_base {n_base})"
        )
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ZooError(f"epochs must be a positive integer (got {epochs!r})")
    if not 0.0 < float(learning_rate_scale) <= 1.0:
        raise ZooError(f"learning_rate_scale must be in (0, 1] (got {learning_rate_scale!r})")
    if isinstance(as_is, bool) or not 0.0 <= float(as_is) <= 1.0:
        raise ZooError(f"as_is must be a share in [0, 1] (got {as_is!r})")
    targets = np.eye(len(classes), dtype="float32")[indices]
    base, extra = X[:n_base], X[n_base:]
    for index, network in enumerate(networks(estimator)):
        config = network.config
        rng = np.random.default_rng([seed, index])
        keras.utils.set_random_seed(int(seed) + index)
        steps = int(epochs) * math.ceil(len(X) / config.batch_size)
        rate = config.learning_rate * float(learning_rate_scale)
        model = network.model_
        compile_dense(model, config, total_steps=steps, learning_rate=rate)
        bank = (
            augment_bank(base, config.augment, int(seed) + index, config.augment_strength)
            if n_base and config.augment != "none"
            else base
        )
        copies = len(bank) // max(n_base, 1)
        losses = []
        for _ in range(int(epochs)):
            which = rng.integers(0, copies, n_base)
            if as_is:
                # Copy 0 of the bank is the rows as they are.
                which[rng.random(n_base) < float(as_is)] = 0
            picked = which * n_base + np.arange(n_base)
            rows = np.concatenate([bank[picked], extra])
            history = model.fit(
                rows, targets, batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0
            )
            loss = float(history.history["loss"][-1])
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss became {loss} while fine-tuning")
            losses.append(loss)
        # As a fit leaves it: compiled with a fresh, built optimizer, which saves all its slots.
        compile_dense(model, config)
        model.optimizer.build(model.trainable_variables)
        network.history_ = {"loss": losses}
    return estimator
