"""Tests of the dense network's training paths: single fits and folds sharing one compiled net."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import stacked
from zoo.dense import DenseNetClassifier
from zoo.errors import ZooError
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


# Input checks: scikit-learn's validate_data refuses bad input before any training ----------


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a network starts training."""

    def train(*args, **kwargs):
        pytest.fail("training started on input that should have been refused")

    monkeypatch.setattr(stacked, "fit_stacked", train)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return DenseNetClassifier(n_layers=1, units=8, epochs=1).fit(X, y)


@pytest.mark.parametrize(("value", "name"), [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_inputs_are_refused_before_training(data, no_training, value, name):
    X, y = data
    X = X.copy()
    X[0, 5] = value
    estimator = DenseNetClassifier(n_layers=1, units=16, epochs=2)
    with pytest.raises(ValueError, match=f"Input X contains {name}"):
        estimator.fit(X, y)
    with pytest.raises(ValueError, match=f"Input X contains {name}"):
        estimator.fit_folds(X, y, make_folds(y, 2, 0))
    with pytest.raises(ValueError, match=f"Input X contains {name}"):
        estimator.fit(X[100:], y[100:], validation_data=(X[:100], y[:100]))


def test_non_finite_inputs_are_refused_at_predict(data, fitted):
    X, _ = data
    rows = X[:3].copy()
    rows[1, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted.predict(rows)


def test_mismatched_lengths_are_refused_before_training(data, no_training):
    X, y = data
    estimator = DenseNetClassifier(n_layers=1, units=16, epochs=2)
    inconsistent = r"inconsistent numbers of samples: \[1437, 1436\]"
    with pytest.raises(ValueError, match=inconsistent):
        estimator.fit(X, y[:-1])
    with pytest.raises(ValueError, match=inconsistent):
        estimator.fit_folds(X, y[:-1], make_folds(y, 2, 0))
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[100, 99\]"):
        estimator.fit(X[100:], y[100:], validation_data=(X[:100], y[:99]))


def test_unseen_validation_label_is_refused_naming_it(data, no_training):
    X, y = data
    seen = y < 8
    with pytest.raises(ZooError) as caught:
        DenseNetClassifier(n_layers=1, units=16, epochs=2).fit(
            X[seen], y[seen], validation_data=(X[:50], y[:50])
        )
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        "validation labels [8, 9] are not among the training classes "
        "[0, 1, 2, 3, 4, 5, 6, 7]; pass validation rows of the training classes only"
    )


def test_one_class_and_continuous_targets_are_refused(data, no_training):
    X, y = data
    estimator = DenseNetClassifier(n_layers=1, units=16, epochs=2)
    with pytest.raises(ZooError, match=r"at least 2 classes \(got one class: \[3\]\)"):
        estimator.fit(X[y == 3], y[y == 3])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        estimator.fit(X, y + 0.5)


def test_wrong_feature_count_at_predict_is_refused(data, fitted):
    X, _ = data
    with pytest.raises(
        ValueError, match="X has 63 features, but DenseNetClassifier is expecting 64"
    ):
        fitted.predict_proba(X[:5, :63])


def test_images_predict_as_their_flattened_rows(data, fitted):
    X, _ = data
    np.testing.assert_array_equal(
        fitted.predict_proba(X[:20].reshape(-1, 8, 8)), fitted.predict_proba(X[:20])
    )
