"""Tests of zoo.fine_tune: networks rebuilt from their weights, and trained further from them."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import ZooError
from zoo.dense import DenseNetClassifier
from zoo.ensemble import DenseEnsembleClassifier
from zoo.fine_tune import extrapolate, fine_tune, network_weights, networks, with_weights

SMALL = {"n_layers": 1, "units": 16, "epochs": 30, "learning_rate": 0.01, "augment": "none"}


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    a = DenseNetClassifier(**SMALL, seed=0).fit(X, y)
    b = DenseNetClassifier(**{**SMALL, "n_layers": 2, "normalization": "batch"}, seed=1).fit(X, y)
    return a, b


def arrays(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights]


def test_a_network_and_an_ensemble_rebuilt_from_their_weights_predict_the_same(
    fitted, small_digits
):
    a, b = fitted
    X_test = small_digits.scale(small_digits.x_test)
    rebuilt = with_weights(DenseNetClassifier(**SMALL), a.classes_, 64, arrays(a.model_))
    np.testing.assert_allclose(rebuilt.predict_proba(X_test), a.predict_proba(X_test), atol=1e-6)
    ensemble = DenseEnsembleClassifier.from_fitted([a, b], weights=[1.0, 3.0])
    members = DenseEnsembleClassifier(members=ensemble.members, weights=ensemble.weights)
    again = with_weights(members, a.classes_, 64, arrays(ensemble.model_))
    np.testing.assert_allclose(
        again.predict_proba(X_test), ensemble.predict_proba(X_test), atol=1e-6
    )
    assert [n.n_features_in_ for n in networks(again)] == [64, 64]


def test_weights_of_another_network_are_refused(fitted):
    a, _ = fitted
    weights = arrays(a.model_)
    with pytest.raises(ZooError, match="3 weight arrays for a model of 4 weights"):
        with_weights(DenseNetClassifier(**SMALL), a.classes_, 64, weights[:3])
    wider = DenseNetClassifier(**{**SMALL, "units": 32})
    with pytest.raises(ZooError, match=r"has shape \(64, 32\) but its array has \(64, 16\)"):
        with_weights(wider, a.classes_, 64, weights)


def test_fine_tuning_learns_new_rows_from_the_weights_and_is_seeded(fitted, small_digits):
    a, _ = fitted
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    # New rows: test digits labelled one class on, which the network reads as their own class.
    new_x = small_digits.scale(small_digits.x_test[:20])
    new_y = (small_digits.y_test[:20] + 1) % 10
    rows = np.concatenate([X, np.tile(new_x, (10, 1))])
    labels = np.concatenate([y, np.tile(new_y, 10)])

    def tuned(seed: int) -> DenseNetClassifier:
        network = with_weights(DenseNetClassifier(**SMALL), a.classes_, 64, arrays(a.model_))
        return fine_tune(
            network, rows, labels, n_base=len(y), epochs=8, learning_rate_scale=1.0, seed=seed
        )

    before = np.mean(a.predict(new_x) == new_y)
    first, second, other = tuned(0), tuned(0), tuned(1)
    after = np.mean(first.predict(new_x) == new_y)
    assert after >= before + 0.3
    assert len(first.history_["loss"]) == 8
    # The base rows, whose labels the new ones contradict, are still mostly read right.
    assert np.mean(first.predict(X) == y) >= np.mean(a.predict(X) == y) - 0.15
    np.testing.assert_array_equal(arrays(first.model_)[0], arrays(second.model_)[0])
    assert not np.array_equal(arrays(first.model_)[0], arrays(other.model_)[0])


def test_fine_tuning_augments_the_base_rows_as_the_network_was_trained(fitted, small_digits):
    a, _ = fitted
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    network = DenseNetClassifier(**{**SMALL, "augment": "shift"})
    network = with_weights(network, a.classes_, 64, arrays(a.model_))
    tuned = fine_tune(network, X, y, n_base=len(y), epochs=2, learning_rate_scale=0.3, seed=0)
    assert np.mean(tuned.predict(X) == y) > 0.8


def test_fine_tuning_checks_its_labels_and_parameters(fitted, small_digits):
    a, _ = fitted
    X = small_digits.scale(small_digits.x_train[:10])
    network = with_weights(DenseNetClassifier(**SMALL), a.classes_, 64, arrays(a.model_))
    with pytest.raises(ZooError, match=r"labels \[11\] are not among the network's classes"):
        fine_tune(network, X, np.full(10, 11), n_base=5, epochs=1, learning_rate_scale=1, seed=0)
    y = np.arange(10)
    with pytest.raises(ZooError, match="epochs must be a positive integer"):
        fine_tune(network, X, y, n_base=5, epochs=0, learning_rate_scale=1, seed=0)
    with pytest.raises(ZooError, match=r"learning_rate_scale must be in \(0, 1\]"):
        fine_tune(network, X, y, n_base=5, epochs=1, learning_rate_scale=2, seed=0)
    with pytest.raises(ZooError, match="at most 10 base rows"):
        fine_tune(network, X, y, n_base=11, epochs=1, learning_rate_scale=1, seed=0)
    for share in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ZooError, match=r"as_is must be a share in \[0, 1\]"):
            fine_tune(network, X, y, n_base=5, epochs=1, learning_rate_scale=1, seed=0, as_is=share)


def test_base_rows_taken_as_they_are_skip_the_augmented_copies(fitted, small_digits, monkeypatch):
    import zoo.augment

    a, _ = fitted
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    real_bank = zoo.augment.augment_bank

    def tuned(as_is: float, blank_copies: bool) -> list[np.ndarray]:
        def bank(features, *args, **kwargs):
            rows = real_bank(features, *args, **kwargs)
            if blank_copies:
                rows[len(features) :] = 0.0  # every augmented copy blank; copy 0 as it is
            return rows

        monkeypatch.setattr(zoo.augment, "augment_bank", bank)
        network = DenseNetClassifier(**{**SMALL, "augment": "shift"})
        network = with_weights(network, a.classes_, 64, arrays(a.model_))
        fine_tune(
            network, X, y, n_base=len(y), epochs=2, learning_rate_scale=0.3, seed=0, as_is=as_is
        )
        return arrays(network.model_)

    # All rows as they are: what the augmented copies hold does not matter.
    for mine, blank in zip(tuned(1.0, False), tuned(1.0, True), strict=True):
        np.testing.assert_array_equal(mine, blank)
    # Half of them as they are: the other half trains on the copies.
    half, half_blank = tuned(0.5, False), tuned(0.5, True)
    assert not all(np.array_equal(m, b) for m, b in zip(half, half_blank, strict=True))


def test_extrapolating_scales_the_change_of_the_trained_weights(fitted, small_digits):
    a, b = fitted
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    ensemble = DenseEnsembleClassifier.from_fitted([a, b], weights=[1.0, 1.0])
    rebuilt = DenseEnsembleClassifier(members=ensemble.members, weights=ensemble.weights)
    network = with_weights(rebuilt, a.classes_, 64, arrays(ensemble.model_))
    start = network_weights(network)
    fine_tune(network, X, y, n_base=len(y), epochs=2, learning_rate_scale=1.0, seed=0)
    end = network_weights(network)
    X_test = small_digits.scale(small_digits.x_test)
    tuned = network.predict_proba(X_test)
    # Factor 1 keeps the fine-tuned weights, 0 restores the ones it started from.
    np.testing.assert_allclose(
        extrapolate(network, start, end, 1.0).predict_proba(X_test), tuned, atol=1e-6
    )
    # (The network without batch normalization: the other keeps its moving statistics.)
    extrapolate(network, start, end, 0.0)
    np.testing.assert_allclose(
        networks(network)[0].predict_proba(X_test), a.predict_proba(X_test), atol=1e-6
    )
    extrapolate(network, start, end, 1.5)
    dense, batch_normed = networks(network)
    for net, first, last in zip(networks(network), start, end, strict=True):
        trained = {id(w) for w in net.model_.trainable_weights}
        for weight, w0, w1 in zip(net.model_.weights, first, last, strict=True):
            # Half as much change again; batch normalization's moving statistics as trained.
            expected = w0 + 1.5 * (w1 - w0) if id(weight) in trained else w1
            np.testing.assert_allclose(np.asarray(weight), expected, rtol=1e-5, atol=1e-6)
    assert len(batch_normed.model_.weights) > len(batch_normed.model_.trainable_weights)
    assert dense.model_ is not batch_normed.model_
    with pytest.raises(ZooError, match="extrapolation factor must be a finite number"):
        extrapolate(network, start, end, float("nan"))
    with pytest.raises(ZooError, match="weights of 1 and 2 networks for an estimator of 2"):
        extrapolate(network, start[:1], end, 1.0)
    with pytest.raises(ZooError, match="not those of the estimator's networks"):
        extrapolate(network, end[::-1], start, 1.0)
