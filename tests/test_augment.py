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


def first_affine_bank(features: np.ndarray, seed: int) -> np.ndarray:
    """The affine bank as zoo.augment first made it (before augment_strength), for comparison."""
    from scipy.ndimage import map_coordinates

    n = len(features)
    images = features.reshape(n, 8, 8)
    rng = np.random.default_rng(seed)
    parts = [images] + [augment.shift_images(images, dy, dx) for dy, dx in augment.SHIFTS]
    for _ in range(8):
        angle = np.deg2rad(rng.uniform(-12.0, 12.0, n))
        scale = rng.uniform(0.9, 1.1, n)
        shift = rng.uniform(-1.0, 1.0, (n, 2))
        yy, xx = np.meshgrid(np.arange(8) - 3.5, np.arange(8) - 3.5, indexing="ij")
        cos, sin = (np.cos(angle) / scale)[:, None, None], (np.sin(angle) / scale)[:, None, None]
        src_y = cos * yy - sin * xx + 3.5 - shift[:, 0, None, None]
        src_x = sin * yy + cos * xx + 3.5 - shift[:, 1, None, None]
        index = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], src_y.shape)
        out = map_coordinates(images, [index, src_y, src_x], order=1, mode="constant", cval=0.0)
        parts.append(out.astype(images.dtype))
    return np.concatenate(parts).reshape(17 * n, 64)


def test_affine_at_strength_one_is_the_first_affine_bank(small):
    X, _ = small
    for seed in (0, 4):
        np.testing.assert_array_equal(
            augment.augment_bank(X, "affine", seed, 1.0), first_affine_bank(X, seed)
        )
    # The default strength is 1, and a transforms list naming affine alone changes nothing.
    np.testing.assert_array_equal(
        augment.augment_bank(X, "affine", 4),
        augment.augment_bank(X, "handwriting", 4, transforms=("affine",)),
    )


TRANSFORM_CHOICES = [(name,) for name in augment.TRANSFORMS] + [augment.TRANSFORMS]


@pytest.mark.parametrize("transforms", TRANSFORM_CHOICES, ids="+".join)
@pytest.mark.parametrize("strength", [0.5, 1.0, 3.0])
def test_each_transform_keeps_shape_range_and_dtype(small, transforms, strength):
    X, _ = small
    bank = augment.augment_bank(X[:50], "handwriting", 2, strength, transforms=transforms)
    assert bank.shape == (17 * 50, 64) and bank.dtype == np.float32
    assert bank.min() >= 0.0 and bank.max() <= 1.0
    np.testing.assert_array_equal(bank[:50], X[:50])
    # The random copies differ from the originals.
    assert not np.array_equal(bank[9 * 50 :], np.tile(X[:50], (8, 1)))


@pytest.mark.parametrize("transforms", TRANSFORM_CHOICES, ids="+".join)
def test_random_copies_are_seeded(small, transforms):
    X, _ = small
    first = augment.augment_bank(X[:40], "handwriting", 7, 1.5, transforms=transforms)
    np.testing.assert_array_equal(
        first, augment.augment_bank(X[:40], "handwriting", 7, 1.5, transforms=transforms)
    )
    assert not np.array_equal(
        first, augment.augment_bank(X[:40], "handwriting", 8, 1.5, transforms=transforms)
    )


@pytest.mark.parametrize("kind", ["affine", "handwriting"])
def test_strength_zero_gives_the_originals_as_random_copies(small, kind):
    X, _ = small
    bank = augment.augment_bank(X[:40], kind, 3, 0.0)
    np.testing.assert_array_equal(bank[9 * 40 :], np.tile(X[:40], (8, 1)))
    # The shifts do not depend on the strength.
    np.testing.assert_array_equal(bank[: 9 * 40], augment.augment_bank(X[:40], "shift", 3))


def test_handwriting_copies_stay_close_to_their_digits_and_grow_with_strength(small):
    X, _ = small
    distances = []
    for strength in (0.5, 1.0, 2.0):
        copies = augment.augment_bank(X, "handwriting", 0, strength)[9 * len(X) :]
        distances.append(np.mean(np.abs(copies - np.tile(X, (8, 1)))))
        same = np.sum(copies * np.tile(X, (8, 1)), axis=1)
        cosine = same / np.linalg.norm(copies, axis=1) / np.tile(np.linalg.norm(X, axis=1), 8)
        if strength == 1.0:
            assert np.mean(cosine) > 0.7
    assert distances[0] < distances[1] < distances[2]


def test_stroke_width_thickens_and_thins():
    image = np.zeros((2, 8, 8), dtype="float32")
    image[:, 1:7, 3:5] = 1.0
    out = augment.stroke_images(image, np.array([0.5, -0.5]))
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert out[0].sum() > image[0].sum() and out[1].sum() < image[1].sum()
    np.testing.assert_array_equal(augment.stroke_images(image, np.zeros(2)), image)


def test_slant_leans_a_vertical_stroke():
    image = np.zeros((1, 8, 8), dtype="float32")
    image[0, :, 3:5] = 1.0
    copy = augment.random_images(image, np.random.default_rng(0), 1.0, ("slant",))[0]
    columns = np.arange(8)
    top, bottom = (copy[r] @ columns / copy[r].sum() for r in (0, 7))
    # Rows above and below the centre move opposite ways, by up to 0.3 px per row.
    assert 0.1 < abs(top - bottom) <= 0.3 * 7 + 1e-6


@pytest.mark.parametrize(
    ("kind", "strength", "transforms", "message"),
    [
        ("handwriting", 1.0, ("blur",), "transforms must be a subset of affine, slant"),
        ("shift", 1.0, ("slant",), "transforms must be a subset"),
        ("affine", -0.1, None, "augment_strength must be a number in [0.0, 3.0] (got -0.1)"),
        ("affine", 4.0, None, "augment_strength must be a number in [0.0, 3.0] (got 4.0)"),
        ("cursive", 1.0, None, "augment must be one of none, shift, affine, handwriting"),
    ],
)
def test_bank_errors_name_what_is_wrong(small, kind, strength, transforms, message):
    X, _ = small
    with pytest.raises(ZooError) as caught:
        augment.augment_bank(X[:10], kind, 0, strength, transforms=transforms)
    assert message in str(caught.value)


@pytest.mark.parametrize(("kind", "copies"), [("shift", 9), ("handwriting", 17)])
def test_augmentation_changes_training_inputs_only(small, trainer_inputs, kind, copies):
    X, y = small
    n = len(X)
    folds = make_folds(y, 3, 0)
    estimator = DenseNetClassifier(n_layers=1, units=16, epochs=1, augment=kind)
    estimator.fit_folds(X, y, folds)
    features = trainer_inputs["features"]
    assert features.shape == (copies * n, 64)
    np.testing.assert_array_equal(trainer_inputs["labels"], np.tile(y, copies))
    for (train, val), rows, val_rows in zip(
        folds, trainer_inputs["train"], trainer_inputs["val"], strict=True
    ):
        # Every copy of the fold's training rows, and nothing of its validation rows.
        assert len(rows) == copies * len(train) and set(rows % n) == set(train)
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


def test_a_handwriting_net_fits_with_its_strength(small, monkeypatch):
    X, y = small
    strengths = []
    real_bank = stacked.augment_bank

    def bank(features, kind, seed, strength=1.0, **kwargs):
        strengths.append((kind, strength))
        return real_bank(features, kind, seed, strength, **kwargs)

    monkeypatch.setattr(stacked, "augment_bank", bank)
    estimator = DenseNetClassifier(
        n_layers=1, units=16, epochs=1, augment="handwriting", augment_strength=1.5
    ).fit(X[:120], y[:120])
    assert strengths == [("handwriting", 1.5)]
    assert estimator.get_params()["augment_strength"] == 1.5
    assert estimator.predict(X[120:]).shape == (len(X) - 120,)


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
