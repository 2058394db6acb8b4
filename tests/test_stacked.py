"""Tests of fold-stacked training: k networks in one Keras model, each on its own rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from zoo import stacked
from zoo.dense import DenseNetClassifier, load_dense, save_dense
from zoo.errors import ZooError
from zoo.network import TrainingDiverged, make_optimizer
from zoo.protocol import cross_validate, make_folds
from zoo.space import DenseConfig
from zoo.stacked import StackedMember

ROOT = Path(__file__).resolve().parent.parent
# No dropout: with it a member and a single fit draw different masks.
EXACT = {"n_layers": 2, "units": 16, "dropout_rate": 0.0, "batch_size": 64, "epochs": 2}


@pytest.fixture(scope="module")
def data(digits):
    return digits.scale(digits.x_train), digits.y_train


@pytest.fixture(scope="module")
def small(small_digits):
    return small_digits.scale(small_digits.x_train), small_digits.y_train


def test_each_member_follows_the_single_fit_on_its_own_rows(data):
    X, y = data
    # Five folds of the 1,437 rows: training parts of 1,149 and 1,150 rows, so the
    # smaller members train with a padded, masked slot (batch norm included).
    folds = make_folds(y, 5, 0)
    assert [len(train) for train, _ in folds] == [1149, 1149, 1150, 1150, 1150]
    estimator = DenseNetClassifier(normalization="batch", learning_rate=3e-3, **EXACT)
    members = estimator.fit_folds(X, y, folds)
    # The first member has 1,149 training rows, the last 1,150.
    for index in (0, 4):
        member, (train, val) = members[index], folds[index]
        single = DenseNetClassifier(**estimator.get_params())
        single.fit(X[train], y[train], validation_data=(X[val], y[val]))
        np.testing.assert_allclose(
            member.predict_proba(X[val]), single.predict_proba(X[val]), atol=1e-4
        )
        assert member.history_.keys() == single.history_.keys()
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(member.history_[key], single.history_[key], atol=1e-4)
        assert member.history_["val_accuracy"][-1] == pytest.approx(
            member.score(X[val], y[val]), abs=1e-6
        )


def test_a_member_never_reads_the_rows_outside_its_training_part(data):
    X, y = data
    folds = make_folds(y, 3, 0)
    estimator = DenseNetClassifier(n_layers=1, units=16, dropout_rate=0.0, epochs=2)
    before = estimator.fit_folds(X, y, folds)
    # Relabel fold 0's validation rows: members 1 and 2 train on them, member 0 only
    # scores them, so its weights must not move while theirs do.
    relabelled = y.copy()
    val = folds[0][1]
    relabelled[val] = (relabelled[val] + 1) % 10
    after = estimator.fit_folds(X, relabelled, folds)
    probe = X[:200]
    np.testing.assert_allclose(after[0].predict_proba(probe), before[0].predict_proba(probe))
    assert after[0].history_["loss"] == pytest.approx(before[0].history_["loss"], abs=1e-6)
    for index in (1, 2):
        assert not np.allclose(
            after[index].predict_proba(probe), before[index].predict_proba(probe)
        )
    # Member 0 is scored on the relabelled rows, so its validation accuracy drops.
    assert after[0].history_["val_accuracy"][-1] < before[0].history_["val_accuracy"][-1] - 0.05


def test_with_dropout_members_match_single_fits_within_noise(small):
    X, y = small
    folds = make_folds(y, 3, 0)
    params = {"n_layers": 1, "units": 64, "dropout_rate": 0.2, "epochs": 15, "batch_size": 32}
    estimator = DenseNetClassifier(learning_rate=3e-3, **params)
    members = estimator.fit_folds(X, y, folds)
    stacked = [m.score(X[v], y[v]) for m, (_, v) in zip(members, folds, strict=True)]
    single = [
        DenseNetClassifier(learning_rate=3e-3, **params).fit(X[t], y[t]).score(X[v], y[v])
        for t, v in folds
    ]
    assert min(stacked) > 0.8
    assert np.mean(stacked) == pytest.approx(np.mean(single), abs=0.03)


@pytest.mark.parametrize(
    "options",
    [
        {"n_layers": 1, "activation": "relu", "normalization": "none", "optimizer": "sgd"},
        {"n_layers": 2, "activation": "elu", "normalization": "batch", "optimizer": "adam"},
        {"n_layers": 3, "activation": "gelu", "normalization": "layer", "optimizer": "rmsprop"},
        {"n_layers": 4, "activation": "selu", "normalization": "batch", "optimizer": "adamw"},
        {"n_layers": 2, "activation": "tanh", "normalization": "layer", "optimizer": "sgd"},
        {"n_layers": 1, "activation": "sigmoid", "normalization": "none", "optimizer": "adam"},
    ],
    ids=lambda options: "-".join(str(v) for v in options.values()),
)
def test_every_option_of_the_space_trains_stacked(small, options):
    X, y = small
    folds = make_folds(y, 2, 0)
    estimator = DenseNetClassifier(
        units=32,
        dropout_rate=0.1,
        l2=1e-4,
        label_smoothing=0.05,
        learning_rate=1e-2,
        batch_size=32,
        epochs=8,
        **options,
    )
    members = estimator.fit_folds(X, y, folds)
    for member, (_, val) in zip(members, folds, strict=True):
        assert set(member.history_) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert all(len(values) == 8 for values in member.history_.values())
        assert member.history_["loss"][-1] < member.history_["loss"][0]
        assert member.score(X[val], y[val]) > 0.3
    if options["normalization"] == "batch":
        # Each member keeps the statistics of its own rows.
        stack = members[0].model_.stack
        moving_mean = np.stack([stack.member_weights(i)["batch_norm_0"][2] for i in (0, 1)])
        assert moving_mean.shape == (2, 32)
        assert not np.allclose(moving_mean[0], moving_mean[1])
        assert np.abs(moving_mean).max() > 0


# A convolutional stem of 8 and 16 filters before one hidden layer, with an L2 penalty on
# every kernel.
CONV = {**EXACT, "conv_filters": 8, "n_layers": 1, "l2": 1e-4, "learning_rate": 3e-3}


def test_a_convolutional_stem_trains_stacked_as_single_fits_and_as_plain_networks(data):
    X, y = data
    folds = make_folds(y, 3, 0)
    members = DenseNetClassifier(**CONV).fit_folds(X, y, folds)
    member, (train, val) = members[2], folds[2]
    single = DenseNetClassifier(**CONV).fit(X[train], y[train], validation_data=(X[val], y[val]))
    np.testing.assert_allclose(
        member.predict_proba(X[val]), single.predict_proba(X[val]), atol=1e-4
    )
    np.testing.assert_allclose(member.history_["loss"], single.history_["loss"], atol=1e-4)
    assert member.history_["loss"][-1] < member.history_["loss"][0]
    assert member.score(X[val], y[val]) > 0.3
    # The member's weights drop into the plain network: pictures of 8x8, convolutions, pooling.
    plain = member.model_.to_keras()
    assert [layer.name for layer in plain.layers][:8] == [
        "pixels",
        "picture",
        "conv_0",
        "conv_relu_0",
        "conv_1",
        "conv_relu_1",
        "pool_0",
        "conv_2",
    ]
    assert plain.get_layer("conv_3").kernel.shape == (3, 3, 16, 16)
    assert plain.get_layer("hidden_0").kernel.shape == (2 * 2 * 16, 16)
    np.testing.assert_allclose(
        plain.predict(X[val], verbose=0), member.predict_proba(X[val]), atol=1e-5
    )
    assert member.model_.count_params() == plain.count_params()


def test_a_convolutional_stem_needs_square_pictures(data):
    X, y = data
    with pytest.raises(ZooError, match=r"conv_filters needs square pictures .* 60 features"):
        DenseNetClassifier(**CONV).fit(X[:, :60], y)


def test_the_same_seed_gives_the_same_members(small):
    X, y = small
    folds = make_folds(y, 3, 0)
    params = {"n_layers": 1, "units": 16, "epochs": 3, "batch_size": 32, "dropout_rate": 0.3}
    first = DenseNetClassifier(seed=5, **params).fit_folds(X, y, folds)
    again = DenseNetClassifier(seed=5, **params).fit_folds(X, y, folds)
    other = DenseNetClassifier(seed=6, **params).fit_folds(X, y, folds)
    for a, b, c in zip(first, again, other, strict=True):
        assert a.history_ == b.history_
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
        assert a.history_ != c.history_


def test_a_non_finite_loss_raises_training_diverged(small):
    X, y = small
    folds = make_folds(y, 3, 0)
    X = X.copy()
    # The row is in the training parts of folds 2 and 3 only; fold 1 validates on it.
    bad = folds[0][1][0]
    X[bad] = np.inf
    # The estimators refuse non-finite rows before training (tests/test_dense.py), so the
    # trainer is given them directly.
    config = DenseConfig(n_layers=1, units=16)
    train_rows = [train for train, _ in folds]
    val_rows = [val for _, val in folds]
    with pytest.raises(TrainingDiverged, match=r"loss became nan in fold 2, epoch 1"):
        stacked.fit_stacked(config, X, y, 10, train_rows, val_rows, epochs=3, seed=0)
    with pytest.raises(TrainingDiverged, match="loss became nan in epoch 1"):
        stacked.fit_stacked(config, X, y, 10, [np.arange(len(X))], None, epochs=3, seed=0)


def test_a_fold_member_predicts_and_saves_as_the_plain_network(small, tmp_path):
    X, y = small
    folds = make_folds(y, 2, 0)
    member = DenseNetClassifier(n_layers=1, units=16, epochs=2).fit_folds(X, y, folds)[1]
    assert isinstance(member.model_, StackedMember)
    assert member.count_params() == 64 * 16 + 16 + 16 * 10 + 10
    plain = member.model_.to_keras()
    assert isinstance(plain, keras.Model)
    np.testing.assert_allclose(
        np.asarray(plain.predict(X, verbose=0)), member.predict_proba(X), atol=1e-6
    )
    save_dense(member, tmp_path / "member.keras")
    loaded = load_dense(tmp_path / "member.keras")
    np.testing.assert_array_equal(loaded.predict(X), member.predict(X))
    assert loaded.history_ == member.history_


def test_a_single_fit_holds_a_plain_keras_network(small):
    X, y = small
    fitted = DenseNetClassifier(n_layers=2, units=16, normalization="layer", epochs=2).fit(X, y)
    assert isinstance(fitted.model_, keras.Model)
    assert [layer.name for layer in fitted.model_.layers][-1] == "probabilities"
    assert fitted.count_params() == fitted.model_.count_params()
    assert set(fitted.history_) == {"loss", "accuracy"}


def test_a_fold_without_training_rows_is_a_user_error(small):
    X, y = small
    folds = [(np.arange(0), np.arange(10)), (np.arange(10, 300), np.arange(10))]
    with pytest.raises(ZooError, match="at least one training row"):
        DenseNetClassifier(epochs=1).fit_folds(X, y, folds)


# Compile once per shape: configs that differ only in values the compiled step reads.
SHAPE = {"n_layers": 2, "units": 32, "batch_size": 32, "epochs": 3}
SAME_SHAPE = [
    {"learning_rate": 1e-3, "dropout_rate": 0.2, "optimizer": "adam"},
    {
        "learning_rate": 5e-3,
        "dropout_rate": 0.4,
        "l2": 1e-3,
        "label_smoothing": 0.1,
        "lr_schedule": "cosine",
        "optimizer": "adamw",
    },
]


class CompileCounter:
    """Counts JAX's XLA compilations and jit traces (``jax.monitoring`` events) while open."""

    EVENTS = (
        "/jax/core/compile/backend_compile_duration",
        "/jax/core/compile/jaxpr_trace_duration",
    )

    def __init__(self):
        self.names: list[str] = []

    def _listen(self, event, duration, **kwargs):
        if event in self.EVENTS:
            self.names.append(f"{event.rsplit('/', 1)[-1]}:{kwargs.get('fun_name')}")

    def __enter__(self):
        import jax

        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        import jax

        jax.monitoring.unregister_event_duration_listener(self._listen)


def _trial(X, y, folds, **params):
    """One search trial's work: fit the folds, score each, as the tuner does."""
    estimator = DenseNetClassifier(seed=3, **SHAPE, **params)
    scores = cross_validate(estimator, X, y, folds)
    stacked.release_compiled()
    return scores


def test_two_trials_of_one_shape_compile_once(small):
    if keras.backend.backend() != "jax":
        pytest.skip("counts JAX compilations")
    X, y = small
    folds = make_folds(y, 3, 0)
    stacked.clear_compiled()
    before = stacked.cache_info()
    with CompileCounter() as first:
        _trial(X, y, folds, **SAME_SHAPE[0])
    with CompileCounter() as second:
        scores = _trial(X, y, folds, **SAME_SHAPE[1])
    after = stacked.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert any("train_step" in name for name in first.names)
    # The second trial traced and compiled nothing: training, scoring and prediction reused it all.
    assert second.names == []
    # Compiled on its own, the second configuration scores the same.
    stacked.clear_compiled()
    assert _trial(X, y, folds, **SAME_SHAPE[1]) == scores
    assert stacked.cache_info().misses == after.misses + 1


def test_a_reused_trainer_gives_what_a_fresh_one_gives(small):
    X, y = small
    folds = make_folds(y, 3, 0)
    configs = [*SAME_SHAPE, {"learning_rate": 2e-3, "dropout_rate": 0.1, "l2": 1e-4}]
    stacked.clear_compiled()
    # In a row, each fit resets the trainer the one before trained...
    chained = [DenseNetClassifier(**SHAPE, **c).fit_folds(X, y, folds) for c in configs]
    assert stacked.cache_info().shapes == 1
    for params, members in zip(configs, chained, strict=True):
        # ...and equals the same config compiled on its own.
        stacked.clear_compiled()
        fresh = DenseNetClassifier(**SHAPE, **params).fit_folds(X, y, folds)
        for reused, alone in zip(members, fresh, strict=True):
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                np.testing.assert_allclose(reused.history_[key], alone.history_[key], atol=1e-6)
            np.testing.assert_allclose(reused.predict_proba(X), alone.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop", "sgd"])
def test_a_learning_rate_of_zero_leaves_the_weights_unchanged(small, monkeypatch, optimizer):
    X, y = small
    trains = [train for train, _ in make_folds(y, 2, 0)]
    config = DenseConfig(
        n_layers=2, units=16, dropout_rate=0.2, optimizer=optimizer, learning_rate=1e-2
    )
    # The shape's trainer is compiled, and trained at a real rate, first.
    trained = stacked.fit_stacked(config, X, y, 10, trains, epochs=2, seed=0)
    fresh = stacked.StackedNetwork(config, X.shape[1], 10, len(trains), seed=0)
    assert not np.allclose(trained.network.trainable_variables[0], fresh.trainable_variables[0])
    # Then the same trainer at a rate of 0 (below the space's range, so set where a fit sets it).
    real_reset = stacked.TrainingOptimizer.reset

    def reset_to_zero(self, config, total_steps):
        real_reset(self, config, total_steps)
        self.base_rate.assign(0.0)

    monkeypatch.setattr(stacked.TrainingOptimizer, "reset", reset_to_zero)
    hits = stacked.cache_info().hits
    still = stacked.fit_stacked(config, X, y, 10, trains, epochs=2, seed=0)
    assert stacked.cache_info().hits == hits + 1
    for after, before in zip(
        still.network.trainable_variables, fresh.trainable_variables, strict=True
    ):
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_each_value_outside_the_shape_takes_effect(small):
    X, y = small
    folds = make_folds(y, 2, 0)
    base = {"n_layers": 1, "units": 32, "batch_size": 32, "epochs": 3, "dropout_rate": 0.2}

    def history(**changes):
        members = DenseNetClassifier(**{**base, **changes}).fit_folds(X, y, folds)
        return members[0].history_

    reference = history()
    assert history() == reference
    for changes in (
        {"learning_rate": 3e-3},
        {"lr_schedule": "cosine"},
        {"dropout_rate": 0.4},
        {"l2": 1e-3},
        {"label_smoothing": 0.1},
        {"optimizer": "adamw"},
    ):
        changed = history(**changes)
        assert changed["loss"] != reference["loss"], changes
    # All of them trained through one compiled trainer.
    assert stacked.cache_info().shapes >= 1


def test_the_compiled_learning_rate_follows_keras_cosine_decay():
    config = DenseConfig(learning_rate=0.01, lr_schedule="cosine", optimizer="adamw")
    schedule = make_optimizer(config, total_steps=100)._learning_rate
    optimizer = stacked.TrainingOptimizer(config.optimizer)
    optimizer.reset(config, total_steps=100)
    for step in (0, 1, 37, 50, 99, 100, 150):
        optimizer.optimizer.iterations.assign(step)
        expected = float(schedule(min(step, 100)))
        assert float(optimizer.learning_rate()) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert float(optimizer.weight_decay.numpy()) == pytest.approx(stacked.ADAMW_WEIGHT_DECAY)
    constant = DenseConfig(learning_rate=0.02, optimizer="adam")
    optimizer.reset(constant, total_steps=100)
    optimizer.optimizer.iterations.assign(60)
    assert float(optimizer.learning_rate()) == pytest.approx(0.02)
    assert float(optimizer.weight_decay.numpy()) == 0.0


def test_a_stack_keeps_its_weights_when_a_later_fit_reuses_its_trainer(small):
    X, y = small
    folds = make_folds(y, 2, 0)
    params = {"n_layers": 1, "units": 16, "epochs": 2, "batch_size": 32}
    first = DenseNetClassifier(learning_rate=1e-2, **params).fit_folds(X, y, folds)
    expected = first[1].predict_proba(X)
    plain = first[1].model_.to_keras()
    DenseNetClassifier(learning_rate=1e-3, seed=1, **params).fit_folds(X, y, folds)
    # The later fit reset the shared network; the first stack kept a copy of its weights.
    assert first[1].model_.stack._entry is None
    np.testing.assert_allclose(first[1].predict_proba(X), expected, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(first[1].model_.to_keras().predict(X, verbose=0)),
        np.asarray(plain.predict(X, verbose=0)),
        atol=1e-6,
    )


def test_the_cache_is_bounded_and_release_compiled_keeps_it(small, monkeypatch):
    X, y = small
    folds = make_folds(y, 2, 0)
    monkeypatch.setattr(stacked, "MAX_CACHED_SHAPES", 2)
    stacked.clear_compiled()
    fits = [
        DenseNetClassifier(n_layers=1, units=units, epochs=1).fit_folds(X, y, folds)
        for units in (8, 16, 32)
    ]
    assert stacked.cache_info().shapes == 2
    # The evicted shape's stack still predicts, from its own copy of the weights.
    assert fits[0][0].model_.stack._entry is None
    assert fits[0][0].score(X, y) > 0.1
    stacked.release_compiled()
    info = stacked.cache_info()
    assert info.shapes == 2
    DenseNetClassifier(n_layers=1, units=32, epochs=1).fit_folds(X, y, folds)
    assert stacked.cache_info().hits == info.hits + 1
    monkeypatch.setattr(stacked, "MAX_CACHED_BYTES", 1)
    DenseNetClassifier(n_layers=1, units=16, epochs=1).fit_folds(X, y, folds)
    # Over the byte budget only the newest shape stays.
    assert stacked.cache_info().shapes == 1
    stacked.clear_compiled()
    assert stacked.cache_info().shapes == 0


def test_an_interrupted_fit_leaves_its_trainer_reusable(small):
    X, y = small
    folds = make_folds(y, 2, 0)
    params = {"n_layers": 1, "units": 16, "epochs": 3, "batch_size": 32}

    class Interrupt(keras.callbacks.Callback):
        def __init__(self, hook):
            super().__init__()
            setattr(self, hook, self._raise)

        def _raise(self, *args, **kwargs):
            raise KeyboardInterrupt

    stacked.clear_compiled()
    expected = DenseNetClassifier(**params).fit_folds(X, y, folds)
    for hook in ("on_train_batch_begin", "on_epoch_end"):
        with pytest.raises(KeyboardInterrupt):
            DenseNetClassifier(**params).fit_folds(X, y, folds, callbacks=[Interrupt(hook)])
        again = DenseNetClassifier(**params).fit_folds(X, y, folds)
        assert [m.history_ for m in again] == [m.history_ for m in expected]
    assert stacked.cache_info().shapes == 1


TENSORFLOW_RUN = """
import json, sys
import numpy as np
import keras
from zoo.protocol import make_folds
from zoo import load_dataset
from zoo.dense import DenseNetClassifier
dataset = load_dataset(seed=0)
X, y = dataset.scale(dataset.x_train), dataset.y_train
runs = []
for params in json.loads(sys.argv[1]):
    members = DenseNetClassifier(**params).fit_folds(X, y, make_folds(y, 3, 0))
    runs.append([m.history_ for m in members])
print(json.dumps({"backend": keras.backend.backend(), "runs": runs}))
"""


@pytest.mark.slow
def test_stacked_training_runs_on_tensorflow_too(data):
    # The backend is chosen when keras is imported, so TensorFlow needs its own process.
    X, y = data
    runs = [{**EXACT, "normalization": "batch", "optimizer": "rmsprop"}, CONV]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT)}
    finished = subprocess.run(
        [sys.executable, "-c", TENSORFLOW_RUN, json.dumps(runs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert result["backend"] == "tensorflow"
    for params, histories in zip(runs, result["runs"], strict=True):
        members = DenseNetClassifier(**params).fit_folds(X, y, make_folds(y, 3, 0))
        for here, there in zip(members, histories, strict=True):
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                np.testing.assert_allclose(here.history_[key], there[key], atol=2e-3)
