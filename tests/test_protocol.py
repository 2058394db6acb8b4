"""Tests of the evaluation protocol and the run directory: same folds for every model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from digits_zoo.leaderboard import COLUMNS, merge_rows
from digits_zoo.rundir import LEADERBOARD, RUN_FILE
from digits_zoo.runs import load_run, open_run
from zoo import DataError, ZooError, create_model
from zoo.protocol import (
    check_folds,
    config_json,
    cross_validate,
    evaluate_model,
    make_folds,
    model_size,
    refit_and_test,
)

# What each RecordingNeighbour saw, by its tag: the rows of every fit and every predict.
FITTED_ROWS: dict[str, list[np.ndarray]] = {}
PREDICTED_ROWS: dict[str, list[np.ndarray]] = {}


class RecordingNeighbour(ClassifierMixin, BaseEstimator):
    """A 1-nearest-neighbour classifier that records the rows it is given (a test helper).

    Clones share the ``tag``, so the records of every fold's fresh clone land in
    one list, in call order.
    """

    def __init__(self, tag: str = "model"):
        self.tag = tag

    def fit(self, X, y):
        FITTED_ROWS.setdefault(self.tag, []).append(np.array(X, copy=True))
        self.model_ = KNeighborsClassifier(n_neighbors=1).fit(X, y)
        self.classes_ = self.model_.classes_
        self.n_features_in_ = self.model_.n_features_in_
        return self

    def predict(self, X):
        check_is_fitted(self, "model_")
        PREDICTED_ROWS.setdefault(self.tag, []).append(np.array(X, copy=True))
        return self.model_.predict(X)


class FoldTrainer(RecordingNeighbour):
    """A recording classifier that trains all folds at once, like the dense nets (a test helper)."""

    def fit_folds(self, X, y, folds, callbacks=None):
        FITTED_ROWS.setdefault(f"{self.tag}:fit_folds", []).append(len(folds))
        return [RecordingNeighbour(self.tag).fit(X[train], y[train]) for train, _ in folds]


# Folds --------------------------------------------------------------------------------------


def test_make_folds_are_stratified_disjoint_and_cover_the_training_part(digits):
    y = digits.y_train
    folds = make_folds(y, 5, seed=0)
    assert len(folds) == 5
    validation = np.concatenate([val for _, val in folds])
    # Every sample is validated exactly once.
    np.testing.assert_array_equal(np.sort(validation), np.arange(len(y)))
    _, overall = np.unique(y, return_counts=True)
    for train, val in folds:
        assert not set(train) & set(val)
        assert len(train) + len(val) == len(y)
        _, counts = np.unique(y[val], return_counts=True)
        # Stratified: each class has its fifth in every fold, up to rounding.
        assert np.all(np.abs(counts - overall / 5) <= 1)


def test_same_seed_gives_identical_folds_and_another_seed_other_folds(digits):
    y = digits.y_train
    first, again, other = make_folds(y, 5, 0), make_folds(y, 5, 0), make_folds(y, 5, 1)
    for (train_a, val_a), (train_b, val_b) in zip(first, again, strict=True):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(val_a, val_b)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("n_folds", "message"),
    [
        (1, "--folds must be an integer of at least 2 (got 1)"),
        (0, "--folds must be an integer of at least 2 (got 0)"),
        (True, "--folds must be an integer of at least 2 (got True)"),
        (2.0, "--folds must be an integer of at least 2 (got 2.0)"),
        (4, "class 2 has only 3 training samples, fewer than --folds 4"),
    ],
)
def test_check_folds_errors(n_folds, message):
    y = np.array([0] * 5 + [1] * 4 + [2] * 3)
    with pytest.raises(ZooError) as caught:
        check_folds(y, n_folds)
    assert message in str(caught.value)
    check_folds(y, 3)


# Cross-validation ---------------------------------------------------------------------------


def test_cross_validate_trains_each_fold_on_its_training_part_only(small_digits):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    folds = make_folds(y, 3, seed=0)
    reported = []
    scores = cross_validate(
        KNeighborsClassifier(n_neighbors=1),
        X,
        y,
        folds,
        on_fold=lambda index, model, accuracy: reported.append((index, model, accuracy)),
    )
    # By hand: nearest training neighbour of each validation row, by Euclidean distance.
    expected = []
    for train, val in folds:
        distances = ((X[val, None, :] - X[None, train, :]) ** 2).sum(axis=2)
        expected.append(float(np.mean(y[train][distances.argmin(axis=1)] == y[val])))
    np.testing.assert_allclose(scores, expected)
    # A 1-NN that had seen its validation rows would score 1.0 on every fold.
    assert min(scores) < 1.0
    assert [index for index, _, _ in reported] == [0, 1, 2]
    assert [accuracy for _, _, accuracy in reported] == scores
    assert all(
        model.n_samples_fit_ == len(train)
        for (_, model, _), (train, _) in zip(reported, folds, strict=True)
    )


def test_cross_validate_uses_fit_folds_when_the_estimator_has_it(small_digits):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    folds = make_folds(y, 3, seed=0)
    FITTED_ROWS.clear()
    scores = cross_validate(FoldTrainer("stacked"), X, y, folds)
    assert FITTED_ROWS["stacked:fit_folds"] == [3]
    for rows, (train, _) in zip(FITTED_ROWS["stacked"], folds, strict=True):
        np.testing.assert_array_equal(rows, X[train])
    plain = cross_validate(RecordingNeighbour("plain"), X, y, folds)
    assert scores == plain


def test_every_model_of_a_run_gets_the_same_folds_and_a_refit_on_the_whole_train(small_digits):
    X_train = small_digits.scale(small_digits.x_train)
    X_test = small_digits.scale(small_digits.x_test)
    folds = make_folds(small_digits.y_train, 4, seed=0)
    FITTED_ROWS.clear()
    PREDICTED_ROWS.clear()
    for tag in ("first", "second"):
        evaluation = evaluate_model(tag, "sklearn", RecordingNeighbour(tag), small_digits, folds)
        assert len(evaluation.cv_scores) == 4
    for tag in ("first", "second"):
        fits, predictions = FITTED_ROWS[tag], PREDICTED_ROWS[tag]
        # Four fold fits on exactly the folds' training rows, then the refit on all of them.
        assert len(fits) == 5 and len(predictions) == 5
        for (train, val), fit_rows, predict_rows in zip(folds, fits, predictions, strict=False):
            np.testing.assert_array_equal(fit_rows, X_train[train])
            np.testing.assert_array_equal(predict_rows, X_train[val])
        np.testing.assert_array_equal(fits[-1], X_train)
        np.testing.assert_array_equal(predictions[-1], X_test)


def test_evaluate_model_measures_the_protocol(small_digits):
    folds = make_folds(small_digits.y_train, 3, seed=0)
    estimator = create_model("decision_tree", seed=0)
    evaluation = evaluate_model("decision_tree", "sklearn", estimator, small_digits, folds)
    X_train = small_digits.scale(small_digits.x_train)
    X_test = small_digits.scale(small_digits.x_test)
    assert evaluation.cv_scores == cross_validate(estimator, X_train, small_digits.y_train, folds)
    # The refit is a fresh clone trained on the whole training part, scored on the test part.
    refit = DecisionTreeClassifier(random_state=0).fit(X_train, small_digits.y_train)
    predicted = refit.predict(X_test)
    assert evaluation.test_accuracy == pytest.approx(accuracy_score(small_digits.y_test, predicted))
    assert evaluation.test_macro_f1 == pytest.approx(
        f1_score(small_digits.y_test, predicted, average="macro")
    )
    assert evaluation.fitted is not estimator
    assert not hasattr(estimator, "tree_")
    assert evaluation.params == model_size(evaluation.fitted)
    assert json.loads(evaluation.config) == estimator.get_params()
    row = evaluation.row()
    # A row holds every leaderboard column the protocol measures; the run adds the rest.
    assert set(row) == set(COLUMNS) - {"rank", "source", "model_path"}
    assert row["cv_accuracy_mean"] == pytest.approx(np.mean(evaluation.cv_scores))
    assert row["cv_accuracy_std"] == pytest.approx(np.std(evaluation.cv_scores))
    assert json.loads(row["cv_folds"]) == pytest.approx(evaluation.cv_scores, abs=1e-6)
    assert row["fit_seconds"] >= 0 and row["predict_seconds_per_1000"] >= 0


def test_refit_and_test_passes_extra_columns_through(small_digits):
    evaluation = refit_and_test(
        "knn_k1", "sklearn", create_model("knn_k1"), small_digits, [0.5, 0.7], {"note": "x"}
    )
    row = evaluation.row()
    assert row["note"] == "x" and row["cv_accuracy_mean"] == pytest.approx(0.6)


def test_model_size_counts_what_the_fitted_model_stores(small_digits):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    knn = KNeighborsClassifier(n_neighbors=1).fit(X, y)
    # A neighbour model stores its training rows.
    assert model_size(knn) >= X.size
    tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    assert model_size(tree) >= tree.tree_.node_count
    forest = create_model("random_forest_300", seed=0, n_estimators=5).fit(X, y)
    assert model_size(forest) > model_size(tree)
    assert model_size(KNeighborsClassifier()) == 0


def test_config_json_is_the_sorted_parameter_set():
    text = config_json(create_model("knn_k3"))
    assert json.loads(text) == create_model("knn_k3").get_params()
    assert list(json.loads(text)) == sorted(json.loads(text))
    # Nested estimators are left out rather than written as their repr.
    assert "estimator" not in json.loads(config_json(create_model("svc_rbf")))


# The run directory --------------------------------------------------------------------------


def test_open_run_writes_run_json(tmp_path, digits):
    run = open_run(tmp_path / "run", seed=0, n_folds=5)
    assert run.path == tmp_path / "run" and run.seed == 0 and run.n_folds == 5
    assert run.dataset.fingerprint() == digits.fingerprint()
    meta = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert meta == run.meta
    assert meta["data"] is None and meta["seed"] == 0 and meta["folds"] == 5
    assert meta["test_size"] == 0.2
    assert meta["dataset"] == digits.describe()
    assert {"keras", "scikit-learn", "numpy", "python"} <= set(meta["versions"])
    assert meta["device"].startswith(("jax:", "tensorflow:", "torch"))
    assert [p.name for p in (tmp_path / "run").iterdir()] == [RUN_FILE]
    for (train_a, val_a), (train_b, val_b) in zip(
        run.folds, make_folds(digits.y_train, 5, 0), strict=True
    ):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(val_a, val_b)


def _write_csv(path, digits, rows: int = 150):
    table = np.column_stack([digits.x_train[:rows], digits.y_train[:rows]]).astype(int)
    np.savetxt(path, table, fmt="%d", delimiter=",")
    return path


@pytest.mark.parametrize(
    ("settings", "clash"),
    [
        ({"seed": 1}, "seed (0)"),
        ({"n_folds": 3}, "fold count (5)"),
        ({"test_size": 0.25}, "test size (0.2)"),
        ({"data": "csv"}, "dataset (digits)"),
    ],
    ids=["seed", "folds", "test_size", "data"],
)
def test_reopening_a_run_with_other_settings_names_the_clash(tmp_path, digits, settings, clash):
    run_dir = tmp_path / "run"
    open_run(run_dir)
    merge_rows(run_dir, [{"model": "m", "cv_accuracy_mean": 0.5, "test_accuracy": 0.5}])
    before = (run_dir / RUN_FILE).read_bytes()
    if settings.get("data") == "csv":
        settings = {"data": str(_write_csv(tmp_path / "other.csv", digits))}
    with pytest.raises(ZooError) as caught:
        open_run(run_dir, **settings)
    message = str(caught.value)
    assert f"holds a run with another {clash}; " in message
    assert "--overwrite" in message and "\n" not in message
    assert (run_dir / RUN_FILE).read_bytes() == before
    assert (run_dir / LEADERBOARD).is_file()
    # With overwrite the old run (and its leaderboard) is gone and the new one recorded.
    run = open_run(run_dir, overwrite=True, **settings)
    assert not (run_dir / LEADERBOARD).exists()
    assert json.loads((run_dir / RUN_FILE).read_text()) == run.meta


def test_reopening_with_the_same_settings_keeps_the_run(tmp_path):
    run_dir = tmp_path / "run"
    first = open_run(run_dir, seed=2, n_folds=3)
    merge_rows(run_dir, [{"model": "m", "cv_accuracy_mean": 0.5, "test_accuracy": 0.5}])
    again = open_run(run_dir, seed=2, n_folds=3)
    assert again.meta == first.meta
    assert (run_dir / LEADERBOARD).is_file()


def test_open_run_refuses_a_file_a_foreign_folder_and_a_bad_seed(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ZooError, match="--run-dir is a file"):
        open_run(tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ZooError, match="is not empty and holds no run.json"):
        open_run(tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    for seed in (-1, 1.5, True):
        with pytest.raises(ZooError, match="--seed must be a non-negative integer"):
            open_run(tmp_path / "new", seed=seed)
    with pytest.raises(ZooError, match="--folds must be an integer of at least 2"):
        open_run(tmp_path / "new", n_folds=1)
    assert not (tmp_path / "new").exists()


def test_load_run_rebuilds_the_data_split_and_folds(tmp_path, digits):
    data = _write_csv(tmp_path / "rows.csv", digits)
    run = open_run(tmp_path / "run", str(data), seed=4, n_folds=3, test_size=0.3)
    loaded = load_run(tmp_path / "run")
    assert (loaded.seed, loaded.n_folds, loaded.meta) == (4, 3, run.meta)
    assert loaded.dataset.fingerprint() == run.dataset.fingerprint()
    assert loaded.meta["data"] == str(data.resolve())
    for (train_a, val_a), (train_b, val_b) in zip(loaded.folds, run.folds, strict=True):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(val_a, val_b)


def test_load_run_errors(tmp_path, digits):
    with pytest.raises(ZooError, match="is not a run directory"):
        load_run(tmp_path)
    data = _write_csv(tmp_path / "rows.csv", digits)
    open_run(tmp_path / "run", str(data))
    _write_csv(data, digits, rows=140)
    with pytest.raises(ZooError, match="changed since it ran"):
        load_run(tmp_path / "run")
    data.unlink()
    with pytest.raises(DataError, match="data path not found"):
        load_run(tmp_path / "run")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "{}"], ids=["broken", "list", "empty"])
def test_a_damaged_run_json_is_a_one_line_zoo_error(tmp_path, content):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_FILE).write_text(content)
    for attempt in (lambda: open_run(run_dir), lambda: load_run(run_dir)):
        with pytest.raises(ZooError) as caught:
            attempt()
        assert RUN_FILE in str(caught.value) and "\n" not in str(caught.value)
    assert (run_dir / RUN_FILE).read_text() == content
