"""Tests of training-set augmentation and the learning-rate schedule."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo import augment, stacked
from zoo.dense import DenseNetClassifier
from zoo.errors import ZooError
from zoo.network import make_optimizer
from zoo.protocol import make_folds
from zoo.space import DenseConfig


@pytest.fixture(scope="module")
def small(small_digits):
    return small_digits.scale(small_digits.x_train), small_digits.y_train


@pytest.fixture
def trainer_inputs(monkeypatch):
    """Records what fit_stacked hands its trainer: training rows, validation rows, pixels."""
    seen: dict = {}
    real_batches, real_layout = stacked.epoch_batches, stacked._validation_layout

    def batches(rows, *args, **kwargs):
        seen["train"] = [np.asarray(r) for r in rows]
        return real_batches(rows, *args, **kwargs)

    def layout(rows):
        seen["val"] = [np.asarray(r) for r in rows]
        return real_layout(rows)

    class Trainer(stacked.StackTrainer):
        def __init__(self, network, features, labels, *args, **kwargs):
            seen["features"], seen["labels"] = features, labels
            super().__init__(network, features, labels, *args, **kwargs)

    monkeypatch.setattr(stacked, "epoch_batches", batches)
    monkeypatch.setattr(stacked, "_validation_layout", layout)
    monkeypatch.setattr(stacked, "StackTrainer", Trainer)
    return seen


def test_bank_holds_the_original_then_each_shift():
    image = np.zeros((1, 8, 8), dtype="float32")
    image[0, 3, 4] = 1.0
    bank = augment.augment_bank(image.reshape(1, 64), "shift", seed=0)
    assert bank.shape == (9, 64)
    np.testing.assert_array_equal(bank[0], image.reshape(64))
    lit = {tuple(np.argwhere(row.reshape(8, 8) == 1.0)[0]) for row in bank[1:]}
    assert lit == {(3 + dy, 4 + dx) for dy, dx in augment.SHIFTS}
    assert all(row.sum() == 1.0 for row in bank)


def test_affine_copies_are_seeded_transformed_digits(small):
    X, _ = small
    first = augment.augment_bank(X[:20], "affine", seed=4)
    assert first.shape == (17 * 20, 64)
    np.testing.assert_array_equal(first, augment.augment_bank(X[:20], "affine", seed=4))
    assert not np.array_equal(first, augment.augment_bank(X[:20], "affine", seed=5))
    copies = first[9 * 20 :]
    assert copies.min() >= 0.0 and copies.max() <= 1.0 + 1e-6
    # Small turns: each copy still overlaps its original far more than another digit.
    for copy, original in zip(copies.reshape(8, 20, 64), [X[:20]] * 8, strict=True):
        same = np.sum(copy * original, axis=1) / np.linalg.norm(copy, axis=1)
        assert np.mean(same / np.linalg.norm(original, axis=1)) > 0.7


def test_augmentation_changes_training_inputs_only(small, trainer_inputs):
    X, y = small
    n = len(X)
    folds = make_folds(y, 3, 0)
    estimator = DenseNetClassifier(n_layers=1, units=16, epochs=1, augment="shift")
    estimator.fit_folds(X, y, folds)
    features = trainer_inputs["features"]
    assert features.shape == (9 * n, 64)
    np.testing.assert_array_equal(trainer_inputs["labels"], np.tile(y, 9))
    for (train, val), rows, val_rows in zip(
        folds, trainer_inputs["train"], trainer_inputs["val"], strict=True
    ):
        # Every copy of the fold's training rows, and nothing of its validation rows.
        assert len(rows) == 9 * len(train) and set(rows % n) == set(train)
        assert not np.isin(rows % n, val).any()
        # Validation reads the original pixels, never a transformed copy.
        np.testing.assert_array_equal(val_rows, val)
        np.testing.assert_array_equal(features[val_rows], X[val])
    assert not np.array_equal(features[n : 2 * n], X)


def test_validation_data_of_a_fit_is_never_augmented_or_trained_on(small, trainer_inputs):
    X, y = small
    estimator = DenseNetClassifier(n_layers=1, units=16, epochs=1, augment="affine")
    estimator.fit(X[:200], y[:200], validation_data=(X[200:], y[200:]))
    (rows,) = trainer_inputs["train"]
    (val_rows,) = trainer_inputs["val"]
    total = len(X)
    assert len(rows) == 17 * 200 and (rows % total < 200).all()
    np.testing.assert_array_equal(trainer_inputs["features"][val_rows], X[200:])
    # Prediction sees the rows as given.
    np.testing.assert_allclose(
        estimator.predict_proba(X[200:]),
        estimator.model_.predict(X[200:], verbose=0),
        atol=1e-6,
    )


def test_augmentation_needs_square_images(small):
    X, y = small
    with pytest.raises(ZooError, match="augmentation needs square images.*augment=none"):
        DenseNetClassifier(units=8, epochs=1, augment="shift").fit(X[:, :10], y)


def test_shifted_copies_help_a_small_net(small, small_digits):
    X, y = small
    X_test, y_test = small_digits.scale(small_digits.x_test), small_digits.y_test
    params = {"n_layers": 1, "units": 64, "epochs": 10, "batch_size": 32, "learning_rate": 3e-3}
    plain = DenseNetClassifier(**params).fit(X, y).score(X_test, y_test)
    shifted = DenseNetClassifier(**params, augment="shift").fit(X, y).score(X_test, y_test)
    assert shifted >= plain - 0.02 and shifted > 0.85


def test_cosine_schedule_decays_to_zero_over_the_fit():
    config = DenseConfig(learning_rate=0.01, lr_schedule="cosine")
    optimizer = make_optimizer(config, total_steps=100)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(50)) == pytest.approx(0.005, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    # Without the fit's length (a network compiled only to be saved) the rate is held.
    assert float(make_optimizer(config).learning_rate) == pytest.approx(0.01)


def test_cosine_fit_learns(small, small_digits):
    X, y = small
    estimator = DenseNetClassifier(
        n_layers=1, units=64, epochs=15, batch_size=32, learning_rate=5e-3, lr_schedule="cosine"
    ).fit(X, y)
    assert estimator.score(small_digits.scale(small_digits.x_test), small_digits.y_test) > 0.85
