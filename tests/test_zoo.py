"""Tests of the zoo: every registry entry, the registry, saving and loading.

scikit-learn's estimator conventions (clone, get_params, NotFittedError, ...) are
checked by its own suite in test_estimator_checks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.base import BaseEstimator, ClassifierMixin, is_classifier
from sklearn.exceptions import NotFittedError

from digits_zoo.artifacts import load_fitted, save_fitted
from zoo import ZooError, create_model, list_models, model_entry, register_model
from zoo.dense import DenseNetClassifier, load_dense, save_dense
from zoo.protocol import model_size

DOCUMENTED = {
    "dense_1x64",
    "dense_2x256",
    "dense_3x512",
    "knn_k1",
    "knn_k3",
    "decision_tree",
    "random_forest_300",
    "extra_trees_300",
    "svc_rbf",
    "logistic_regression",
    "mlp_256x256",
}

# A few cheap steps are enough to show a network learns; scikit-learn's MLP gets
# fewer iterations for the same reason. Everything else trains as registered.
KERAS_OVERRIDES = {"epochs": 5, "batch_size": 32}
OVERRIDES = {"mlp_256x256": {"max_iter": 50}}
CHANCE = 0.1


def overrides_for(name: str) -> dict[str, Any]:
    if model_entry(name).kind == "keras":
        return dict(KERAS_OVERRIDES)
    return dict(OVERRIDES.get(name, {}))


@pytest.fixture(scope="module")
def fitted_entry(small_digits) -> Callable[[str], Any]:
    """Fits a zoo entry once per module on the small subset: ``fitted_entry(name)``."""
    cache: dict[str, Any] = {}
    X = small_digits.scale(small_digits.x_train)

    def fit(name: str):
        if name not in cache:
            estimator = create_model(name, seed=0, **overrides_for(name))
            assert estimator.fit(X, small_digits.y_train) is estimator
            cache[name] = estimator
        return cache[name]

    return fit


# Every entry --------------------------------------------------------------------------------


def test_the_documented_entries_are_registered():
    assert DOCUMENTED <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", list_models())
def test_every_entry_fits_predicts_and_scores_above_chance(name, small_digits, fitted_entry):
    estimator = fitted_entry(name)
    X_test = small_digits.scale(small_digits.x_test)
    predicted = estimator.predict(X_test)
    assert predicted.shape == (len(X_test),)
    assert set(np.unique(predicted)) <= set(small_digits.classes)
    probabilities = estimator.predict_proba(X_test)
    assert probabilities.shape == (len(X_test), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(list(estimator.classes_), small_digits.classes)
    np.testing.assert_array_equal(estimator.classes_[probabilities.argmax(axis=1)], predicted)
    assert estimator.score(X_test, small_digits.y_test) > 3 * CHANCE
    assert estimator.n_features_in_ == 64
    assert model_size(estimator) > 0


@pytest.mark.parametrize("name", list_models())
def test_every_entry_is_a_fresh_seeded_classifier_of_its_kind(name):
    estimator = create_model(name, seed=3)
    entry = model_entry(name)
    assert is_classifier(estimator)
    assert entry.kind in ("keras", "sklearn")
    assert (entry.kind == "keras") == isinstance(estimator, DenseNetClassifier)
    assert entry.description and "\n" not in entry.description
    # The seed reaches whatever is random in the model.
    params = estimator.get_params(deep=True)
    seeded = {k: v for k, v in params.items() if k == "seed" or k.endswith("random_state")}
    assert all(value == 3 for value in seeded.values()), seeded
    assert create_model(name) is not create_model(name)


# The registry -------------------------------------------------------------------------------


def test_list_models_filters_by_pattern_and_kind():
    assert list_models("knn_*") == ["knn_k1", "knn_k3"]
    keras_names = list_models(kind="keras")
    assert keras_names and all(name.startswith("dense_") for name in keras_names)
    assert set(keras_names) | set(list_models(kind="sklearn")) == set(list_models())
    assert list_models("no_such_*") == []


def test_unknown_name_is_a_zoo_error_listing_the_valid_names():
    with pytest.raises(ZooError) as caught:
        create_model("knn_k2")
    message = str(caught.value)
    assert message.startswith("unknown model 'knn_k2'; valid names: ")
    for name in list_models():
        assert name in message
    assert isinstance(caught.value, ValueError) and "\n" not in message


def test_registering_a_name_twice_is_an_error_and_keeps_the_first():
    first = model_entry("knn_k1")
    with pytest.raises(ValueError, match="'knn_k1' is already registered"):
        register_model("knn_k1", "sklearn", "another")(lambda seed=0: None)
    assert model_entry("knn_k1") is first


def test_create_model_applies_overrides_and_refuses_unknown_ones():
    assert create_model("knn_k3", n_neighbors=5).n_neighbors == 5
    assert create_model("dense_2x256", epochs=3).get_params()["epochs"] == 3
    with pytest.raises(ZooError) as caught:
        create_model("knn_k3", neighbours=5)
    message = str(caught.value)
    assert "knn_k3 has no parameter neighbours" in message and "n_neighbors" in message


# Dense networks -----------------------------------------------------------------------------


def test_dense_parameters_are_converted_for_keras_and_validated_in_fit(small_digits):
    # Stored unchanged (scikit-learn's checks hold that); the config converts for Keras.
    assert type(DenseNetClassifier(units=np.int64(64)).config.units) is int
    X = small_digits.scale(small_digits.x_train)
    with pytest.raises(ZooError, match=r"units must be one of .* \(got 100\)"):
        DenseNetClassifier(units=100).fit(X, small_digits.y_train)
    for epochs in (0, 2.5, True):
        with pytest.raises(ZooError, match="epochs must be a positive integer"):
            DenseNetClassifier(epochs=epochs).fit(X, small_digits.y_train)


def test_dense_history_size_and_feature_check(small_digits, fitted_entry):
    estimator = fitted_entry("dense_1x64")
    assert set(estimator.history_) >= {"loss", "accuracy"}
    assert len(estimator.history_["loss"]) == KERAS_OVERRIDES["epochs"]
    # One hidden layer of 64 on 64 inputs, then 10 outputs, each with a bias.
    expected = (64 + 1) * 64 + (64 + 1) * 10
    assert estimator.count_params() == expected and model_size(estimator) == expected
    with pytest.raises(
        ValueError, match="X has 63 features, but DenseNetClassifier is expecting 64"
    ):
        estimator.predict_proba(np.zeros((1, 63), dtype="float32"))


def test_dense_net_with_the_same_seed_predicts_the_same(small_digits, fitted_entry):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    X_test = small_digits.scale(small_digits.x_test)
    first = fitted_entry("dense_1x64").predict_proba(X_test)
    again = create_model("dense_1x64", seed=0, **KERAS_OVERRIDES).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X_test), first)
    other = create_model("dense_1x64", seed=1, **KERAS_OVERRIDES).fit(X, y)
    assert not np.array_equal(other.predict_proba(X_test), first)


def test_save_dense_and_load_dense_round_trip(tmp_path, small_digits, fitted_entry):
    estimator = fitted_entry("dense_1x64")
    path = tmp_path / "net.keras"
    save_dense(estimator, path)
    assert path.is_file() and Path(f"{path}.json").is_file()
    loaded = load_dense(path)
    X_test = small_digits.scale(small_digits.x_test)
    assert loaded.get_params() == estimator.get_params()
    np.testing.assert_array_equal(loaded.classes_, estimator.classes_)
    np.testing.assert_array_equal(loaded.predict(X_test), estimator.predict(X_test))
    np.testing.assert_allclose(loaded.predict_proba(X_test), estimator.predict_proba(X_test))
    assert loaded.history_ == estimator.history_


def test_save_dense_refuses_an_unfitted_net(tmp_path):
    with pytest.raises(NotFittedError):
        save_dense(DenseNetClassifier(), tmp_path / "net.keras")


# Fitted models in a run ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dense_1x64", "knn_k1", "random_forest_300", "svc_rbf"])
def test_save_fitted_and_load_fitted_round_trip(tmp_path, small_digits, fitted_entry, name):
    estimator = fitted_entry(name)
    relative = save_fitted(estimator, tmp_path, name)
    suffix = ".keras" if model_entry(name).kind == "keras" else ".skops"
    assert relative == f"models/{name}{suffix}"
    # No temporary file is left beside the model.
    assert not [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]
    loaded = load_fitted(tmp_path / relative)
    X_test = small_digits.scale(small_digits.x_test)
    np.testing.assert_array_equal(loaded.predict(X_test), estimator.predict(X_test))
    np.testing.assert_allclose(
        loaded.predict_proba(X_test), estimator.predict_proba(X_test), rtol=1e-6
    )


class Memorizer(ClassifierMixin, BaseEstimator):
    """A classifier from outside scikit-learn, to check that loading refuses it (a test helper)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self


def test_load_fitted_refuses_types_it_does_not_trust(tmp_path):
    path = tmp_path / "models" / "foreign.skops"
    path.parent.mkdir()
    skops.io.dump(Memorizer().fit([[0], [1]], [0, 1]), path)
    with pytest.raises(ZooError, match="names types digits-zoo does not trust"):
        load_fitted(path)


def test_load_fitted_errors(tmp_path):
    with pytest.raises(ZooError, match="fitted model not found"):
        load_fitted(tmp_path / "models" / "absent.skops")
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(ZooError, match=r"unknown model file .*expected \.keras or \.skops"):
        load_fitted(tmp_path / "model.pkl")
