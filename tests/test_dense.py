"""Tests of the dense network's training paths: single fits and folds sharing one compiled net."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.dense import DenseNetClassifier
from zoo.network import TrainingDiverged
from zoo.protocol import cross_validate, make_folds


@pytest.fixture(scope="module")
def data(digits):
    return digits.scale(digits.x_train), digits.y_train


def test_fold_members_start_fresh_and_keep_their_own_weights(data):
    X, y = data
    folds = make_folds(y, 3, 0)
    # The second fold never sees a 9: if the first fold's weights leaked
    # into it, it would still call the 9s of its validation part 9.
    train, val = folds[1]
    folds[1] = (train[y[train] != 9], val)
    estimator = DenseNetClassifier(
        n_layers=1, units=64, epochs=15, batch_size=32, learning_rate=3e-3
    )
    first, second, third = estimator.fit_folds(X, y, folds)
    nines = folds[1][1][y[folds[1][1]] == 9]
    assert first.predict_proba(X[nines])[:, 9].mean() > 0.5
    assert second.predict_proba(X[nines])[:, 9].mean() < 0.05
    # Each member predicts with its own weights, whatever was predicted before.
    before = third.predict_proba(X[:50])
    first.predict_proba(X[:50])
    np.testing.assert_array_equal(third.predict_proba(X[:50]), before)
    assert not np.allclose(first.predict_proba(X[:50]), before)
    for member, (_, val_index) in zip((first, second, third), folds, strict=True):
        assert len(member.history_["val_accuracy"]) == 15
        assert member.history_["val_accuracy"][-1] == pytest.approx(
            member.score(X[val_index], y[val_index]), abs=1e-6
        )


def test_folds_match_separate_fits_within_noise(data):
    X, y = data
    folds = make_folds(y, 3, 0)
    estimator = DenseNetClassifier(
        n_layers=1, units=64, epochs=15, batch_size=32, learning_rate=3e-3
    )
    shared = cross_validate(estimator, X, y, folds)
    separate = [
        DenseNetClassifier(n_layers=1, units=64, epochs=15, batch_size=32, learning_rate=3e-3)
        .fit(X[train], y[train])
        .score(X[val], y[val])
        for train, val in folds
    ]
    assert np.mean(shared) == pytest.approx(np.mean(separate), abs=0.02)
    assert cross_validate(estimator, X, y, folds) == shared


@pytest.mark.parametrize(
    "options",
    [
        {"normalization": "batch", "optimizer": "sgd", "dropout_rate": 0.3},
        {"normalization": "layer", "optimizer": "rmsprop", "l2": 1e-4},
        {"optimizer": "adamw", "label_smoothing": 0.1, "activation": "gelu", "n_layers": 3},
    ],
)
def test_every_option_trains_through_the_fold_path(data, options):
    X, y = data
    folds = make_folds(y, 2, 0)
    estimator = DenseNetClassifier(units=32, epochs=6, batch_size=32, learning_rate=1e-2, **options)
    scores = cross_validate(estimator, X, y, folds)
    assert min(scores) > 0.5


def test_non_finite_inputs_raise_training_diverged(data):
    X, y = data
    X = X.copy()
    X[0] = np.nan
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        DenseNetClassifier(n_layers=1, units=16, epochs=2).fit_folds(X, y, make_folds(y, 2, 0))
