"""Greedy ensemble selection, weighted ensembles of networks, and the search's time budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from digits_zoo.artifacts import load_fitted, save_fitted
from digits_zoo.baselines import read_baseline_out_of_fold, run_baselines
from digits_zoo.ensembles import ensemble_rounds
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.rundir import baseline_out_of_fold_path, ensembles_path
from digits_zoo.runs import open_run
from digits_zoo.searching import run_search
from digits_zoo.ship.export import export_run
from digits_zoo.ship.rows import row_temperature
from search.records import read_out_of_fold, read_trials
from search.spec import SearchSpec
from zoo import stacked
from zoo.dense import DenseNetClassifier
from zoo.ensemble import DenseEnsembleClassifier, seed_ensemble
from zoo.errors import ZooError
from zoo.protocol import cross_validate, cross_validate_out_of_fold
from zoo.registry import create_model
from zoo.selection import DEFAULT_ROUNDS, fold_accuracies, greedy_selection, weighted_mean

SMALL = {"n_layers": 1, "units": 32, "batch_size": 128, "augment": "none"}
# Networks of one good learning rate, so that they are close enough for an ensemble to help.
ENSEMBLE_SPACE = {**SMALL, "batch_size": 64, "learning_rate": 0.01, "lr_schedule": "constant"}
SPEC = SearchSpec(tuner="random", max_trials=3, epochs=3, top_k=2, fixed=ENSEMBLE_SPACE)
BASELINES = ["knn_k3", "logistic_regression"]


# Greedy selection on synthetic out-of-fold probabilities -----------------------------------


def _folds(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def _random_candidates(rng: np.random.Generator, y: np.ndarray, n_classes: int) -> list:
    """Candidates of mixed quality, including the adversarial kinds: copies, ties, one-hots."""
    candidates = []
    for _ in range(int(rng.integers(1, 7))):
        matrix = rng.dirichlet(np.full(n_classes, float(rng.uniform(0.2, 3.0))), size=len(y))
        matrix[np.arange(len(y)), y] += rng.uniform(0.0, 1.0)
        candidates.append(matrix / matrix.sum(axis=1, keepdims=True))
    kind = rng.integers(4)
    if kind == 0:  # an exact copy of a candidate
        candidates.append(candidates[0].copy())
    elif kind == 1:  # a hard one-hot voter, right or wrong
        labels = np.where(rng.random(len(y)) < 0.7, y, rng.integers(n_classes, size=len(y)))
        candidates.append(np.eye(n_classes)[labels])
    elif kind == 2:  # a constant guess
        candidates.append(np.full((len(y), n_classes), 1.0 / n_classes))
    return candidates


def test_greedy_selection_never_scores_below_its_best_member():
    for seed in range(150):
        rng = np.random.default_rng(seed)
        n_classes = int(rng.integers(2, 5))
        y = np.repeat(np.arange(n_classes), int(rng.integers(6, 30)))
        rng.shuffle(y)
        folds = _folds(y, int(rng.integers(2, 5)), seed)
        candidates = _random_candidates(rng, y, n_classes)
        classes = np.arange(n_classes)
        rounds = int(rng.integers(1, 30))
        selection = greedy_selection(candidates, y, classes, folds, rounds)
        best = max(np.mean(fold_accuracies(c, y, classes, folds)) for c in candidates)
        assert selection.cv_accuracy_mean >= best - 1e-12, seed
        assert len(set(selection.members)) == len(selection.members)
        assert all(w > 0 for w in selection.weights)
        assert sum(selection.weights) == pytest.approx(1.0)
        assert 1 <= selection.rounds <= rounds
        # Each weight is a count of the kept rounds.
        counts = [w * selection.rounds for w in selection.weights]
        assert counts == pytest.approx(np.round(counts))
        mean = weighted_mean([candidates[i] for i in selection.members], selection.weights)
        assert list(selection.cv_scores) == pytest.approx(fold_accuracies(mean, y, classes, folds))


def test_a_complementary_pair_is_chosen_over_copies_of_the_best():
    y = np.tile([0, 1], 50)
    first_half = np.arange(100) < 50
    right, wrong = np.eye(2)[y], np.eye(2)[1 - y]

    def expert(on: np.ndarray) -> np.ndarray:
        # Confident and right where it knows, mildly wrong elsewhere.
        return np.where(on[:, None], 0.9 * right + 0.1 * wrong, 0.4 * right + 0.6 * wrong)

    a = expert(first_half)
    b = expert(~first_half)
    b[50] = a[50]  # a little worse than a: a is the best single model
    candidates = [a, a.copy(), a.copy(), b]
    folds = _folds(y, 2, 0)
    selection = greedy_selection(candidates, y, [0, 1], folds, rounds=10)
    assert selection.members[0] == 0
    assert set(selection.members) == {0, 3}
    assert selection.cv_accuracy_mean == pytest.approx(0.99)
    assert np.mean(fold_accuracies(a, y, [0, 1], folds)) < 0.6


def test_greedy_selection_is_deterministic_and_checks_its_input():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    folds = _folds(y, 3, 0)
    candidates = _random_candidates(rng, y, 3)
    first = greedy_selection(candidates, y, [0, 1, 2], folds, 20)
    assert all(greedy_selection(candidates, y, [0, 1, 2], folds, 20) == first for _ in range(3))
    with pytest.raises(ZooError, match="at least one candidate"):
        greedy_selection([], y, [0, 1, 2], folds)
    with pytest.raises(ZooError, match=r"shape \(60, 2\), expected \(60, 3\)"):
        greedy_selection([np.full((60, 2), 0.5)], y, [0, 1, 2], folds)
    with pytest.raises(ZooError, match="labels not in classes"):
        greedy_selection(candidates, y + 5, [0, 1, 2], folds)
    with pytest.raises(ZooError, match="cover every row exactly once"):
        greedy_selection(candidates, y, [0, 1, 2], folds[:2])
    with pytest.raises(ZooError, match="rounds"):
        greedy_selection(candidates, y, [0, 1, 2], folds, 0)


# Weighted ensembles of networks --------------------------------------------------------------


def test_a_seed_ensemble_is_the_network_seeded_one_after_another():
    network = DenseNetClassifier(n_layers=1, units=32, epochs=2, seed=7)
    assert seed_ensemble(network, 1) is network
    ensemble = seed_ensemble(network, 3)
    assert isinstance(ensemble, DenseEnsembleClassifier) and ensemble.weights is None
    assert [member["seed"] for member in ensemble.members] == [7, 8, 9]
    params = {k: v for k, v in network.get_params().items() if k != "verbose"}
    assert all(member == {**params, "seed": member["seed"]} for member in ensemble.members)
    for bad in (0, 1.5, True):
        with pytest.raises(ZooError, match="executions must be an integer of at least 1"):
            seed_ensemble(network, bad)


def test_weighted_ensemble_applies_saves_and_reloads_its_weights(small_digits, tmp_path):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    a = DenseNetClassifier(n_layers=1, units=8, epochs=1, seed=0).fit(X, y)
    b = DenseNetClassifier(n_layers=1, units=8, epochs=1, seed=1).fit(X, y)
    ensemble = DenseEnsembleClassifier.from_fitted([a, b], weights=[1.0, 3.0])
    assert ensemble.weights_.tolist() == [0.25, 0.75]
    X_test = small_digits.scale(small_digits.x_test)
    expected = 0.25 * a.predict_proba(X_test) + 0.75 * b.predict_proba(X_test)
    np.testing.assert_allclose(ensemble.predict_proba(X_test), expected, atol=1e-6)
    saved = save_fitted(ensemble, tmp_path, "weighted")
    sidecar = json.loads((tmp_path / f"{saved}.json").read_text())
    assert sidecar["params"]["weights"] == [1.0, 3.0]
    reloaded = load_fitted(tmp_path / saved)
    assert reloaded.weights == (1.0, 3.0)
    np.testing.assert_allclose(reloaded.predict_proba(X_test), expected, atol=1e-6)
    # Equal weights by default: the plain mean, as before weights existed.
    plain = DenseEnsembleClassifier.from_fitted([a, b])
    np.testing.assert_allclose(
        plain.predict_proba(X_test),
        (a.predict_proba(X_test) + b.predict_proba(X_test)) / 2,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0], "one number per member"),
        ([1.0, -1.0], "non-negative"),
        ([0.0, 0.0], "not all zero"),
        ([1.0, float("nan")], "finite"),
        (["a", 1.0], "must be numbers"),
    ],
)
def test_ensemble_weights_are_checked(weights, match, small_digits):
    members = ({"units": 8, "epochs": 1}, {"units": 8, "epochs": 1, "seed": 1})
    with pytest.raises(ZooError, match=match):
        DenseEnsembleClassifier(members=members, weights=weights).fit(
            small_digits.scale(small_digits.x_train), small_digits.y_train
        )


def test_ensemble_needs_two_members_trained_alike(small_digits):
    with pytest.raises(ZooError, match="at least 2 member networks"):
        DenseEnsembleClassifier(members=({"units": 8},)).fit(
            small_digits.x_train, small_digits.y_train
        )
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    a = DenseNetClassifier(n_layers=1, units=8, epochs=1).fit(X, y)
    b = DenseNetClassifier(n_layers=1, units=8, epochs=1).fit(X[:, :32], y)
    with pytest.raises(ZooError, match="same classes and features"):
        DenseEnsembleClassifier.from_fitted([a, b])


def test_ensemble_refuses_bad_input_before_training(small_digits, monkeypatch):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    members = ({"units": 8, "epochs": 1}, {"units": 8, "epochs": 1, "seed": 1})
    ensemble = DenseEnsembleClassifier(members=members)

    def train(*args, **kwargs):
        pytest.fail("a member started training on input that should have been refused")

    monkeypatch.setattr(stacked, "fit_stacked", train)
    with_nan = X.copy()
    with_nan[7, 20] = np.nan
    for fit in (ensemble.fit, lambda X, y: ensemble.fit_folds(X, y, _folds(y, 2, 0))):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            fit(with_nan, y)
        with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[300, 299\]"):
            fit(X, y[:-1])


def test_ensemble_refuses_bad_input_at_predict(small_digits):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    a = DenseNetClassifier(n_layers=1, units=8, epochs=1, seed=0).fit(X, y)
    b = DenseNetClassifier(n_layers=1, units=8, epochs=1, seed=1).fit(X, y)
    ensemble = DenseEnsembleClassifier.from_fitted([a, b])
    with pytest.raises(
        ValueError, match="X has 63 features, but DenseEnsembleClassifier is expecting 64"
    ):
        ensemble.predict(X[:5, :63])
    rows = X[:5].copy()
    rows[2, 0] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        ensemble.predict_proba(rows)


# Out-of-fold probabilities of the protocol and of the baselines ------------------------------


def test_out_of_fold_rows_come_from_the_fold_that_did_not_train_on_them(small_digits):
    X, y = small_digits.scale(small_digits.x_train), small_digits.y_train
    folds = _folds(y, 3, 0)
    model = create_model("knn_k3", seed=0)
    scores, out_of_fold = cross_validate_out_of_fold(model, X, y, folds)
    assert scores == cross_validate(model, X, y, folds)
    for train, val in folds:
        alone = clone(model).fit(X[train], y[train])
        np.testing.assert_allclose(out_of_fold[val], alone.predict_proba(X[val]), atol=1e-6)
    assert fold_accuracies(out_of_fold, y, np.unique(y), folds) == pytest.approx(scores)


# A small real run: baselines, then a search and its greedy ensembles -------------------------


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Two baselines, then a 3-trial random search (3 folds), its top 2 refit and ensembled."""
    run = open_run(tmp_path_factory.mktemp("ensemble") / "run", seed=1, n_folds=3)
    lines: list[str] = []
    run_baselines(run, BASELINES, progress=lines.append)
    run_search(run, SPEC, progress=lines.append)
    board = {row["model"]: row for row in read_leaderboard(run.path)}
    return run, board, lines


def _weighted_oof(run, config) -> np.ndarray:
    probabilities = [read_out_of_fold(run.path, trial) for trial in config["trials"]]
    return weighted_mean(probabilities, config["weights"])


def test_baselines_keep_out_of_fold_probabilities_of_unseen_rows(searched):
    run, board, _ = searched
    X, y = run.dataset.scale(run.dataset.x_train), run.dataset.y_train
    for name in BASELINES:
        assert baseline_out_of_fold_path(run.path, name).is_file()
        out_of_fold = read_baseline_out_of_fold(run.path, name)
        assert out_of_fold.shape == (len(y), len(run.dataset.classes))
        # The out-of-fold accuracies are the leaderboard's fold scores.
        assert fold_accuracies(out_of_fold, y, run.dataset.classes, run.folds) == pytest.approx(
            json.loads(board[name]["cv_folds"]), abs=1e-6
        )
    # Fold 0's rows, as a model fitted on fold 0's training part alone predicts them
    # (with one BLAS thread, as the baselines are fitted: lbfgs's path depends on it).
    train, val = run.folds[0]
    with threadpool_limits(1):
        alone = create_model("logistic_regression", seed=run.seed).fit(X[train], y[train])
    np.testing.assert_allclose(
        read_baseline_out_of_fold(run.path, "logistic_regression")[val],
        alone.predict_proba(X[val]),
        atol=1e-5,
    )


def test_search_adds_a_greedy_ensemble_no_worse_than_its_best_member(searched):
    run, board, lines = searched
    row = board["ensemble_random_greedy"]
    assert row["kind"] == "keras" and row["source"] == "search"
    config = json.loads(row["config"])
    assert len(config["members"]) == len(config["weights"]) == len(config["trials"]) >= 2
    assert sum(config["weights"]) == pytest.approx(1.0)
    assert all(w > 0 for w in config["weights"])
    members = [r for r in board.values() if r["model"].startswith("search_random_")]
    assert row["cv_accuracy_mean"] >= max(r["cv_accuracy_mean"] for r in members) - 1e-9
    trials = read_trials(run.path, SPEC)
    assert row["cv_accuracy_mean"] >= max(t["cv_accuracy_mean"] for t in trials) - 1e-9
    # Its fold scores are the weighted out-of-fold mean's, with no new training.
    y, classes = run.dataset.y_train, run.dataset.classes
    expected = fold_accuracies(_weighted_oof(run, config), y, classes, run.folds)
    assert json.loads(row["cv_folds"]) == pytest.approx(expected, abs=1e-6)
    # Every selected trial is on the leaderboard, refit.
    names = {r["model"] for r in members}
    assert all(any(name.startswith(f"search_{t}_") for name in names) for t in config["trials"])
    assert any(line.startswith("ensemble of random_") and "greedy rounds" in line for line in lines)


def test_ensemble_cv_equals_retraining_it_without_each_fold(searched, monkeypatch):
    run, board, _ = searched
    config = json.loads(board["ensemble_random_greedy"]["config"])
    trained_on: list[list[np.ndarray]] = []
    real = stacked.epoch_batches

    def spy(rows, *args, **kwargs):
        trained_on.append([np.asarray(r) for r in rows])
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(stacked, "epoch_batches", spy)
    X, y = run.dataset.scale(run.dataset.x_train), run.dataset.y_train
    ensemble = DenseEnsembleClassifier(members=config["members"], weights=config["weights"])
    scores = cross_validate(ensemble, X, y, run.folds)
    # Every member trained each fold's network on that fold's training part only.
    assert len(trained_on) == len(config["members"])
    for member_rows in trained_on:
        for rows, (train, val) in zip(member_rows, run.folds, strict=True):
            np.testing.assert_array_equal(np.sort(rows), np.sort(train))
            assert not np.isin(rows, val).any()
    # Retrained from scratch, the weighted ensemble scores what the search recorded.
    assert scores == pytest.approx(
        json.loads(board["ensemble_random_greedy"]["cv_folds"]), abs=1e-6
    )


def test_ensemble_test_score_weighs_the_refit_members(searched):
    run, board, _ = searched
    row = board["ensemble_random_greedy"]
    config = json.loads(row["config"])
    ensemble = load_fitted(run.path / row["model_path"])
    assert list(ensemble.weights) == config["weights"]
    by_trial = {
        trial: next(r for r in board.values() if r["model"].startswith(f"search_{trial}_"))
        for trial in config["trials"]
    }
    members = [load_fitted(run.path / by_trial[t]["model_path"]) for t in config["trials"]]
    X_test = run.dataset.scale(run.dataset.x_test)
    expected = weighted_mean([m.predict_proba(X_test) for m in members], config["weights"])
    np.testing.assert_allclose(ensemble.predict_proba(X_test), expected, atol=1e-5)
    accuracy = float(np.mean(ensemble.predict(X_test) == run.dataset.y_test))
    assert accuracy == pytest.approx(row["test_accuracy"])
    # A member chosen several times is one network.
    assert row["params"] == sum(r["params"] for r in by_trial.values())


def test_ensemble_exports_with_its_weights_and_temperature(searched, tmp_path):
    run, board, _ = searched
    row = board["ensemble_random_greedy"]
    config = json.loads(row["config"])
    calibration = row_temperature(run, row)
    assert calibration["trials"] == config["trials"]
    assert calibration["oof_ece_after"] <= calibration["oof_ece_before"] + 1e-9
    result = export_run(
        run.path, model="ensemble_random_greedy", out=tmp_path / "export", progress=lambda _: None
    )
    verification = result.metadata["verification"]
    assert verification["test_accuracy"] == pytest.approx(row["test_accuracy"])
    assert result.metadata["format"] == "tf_saved_model"
    assert result.metadata["temperature"] == pytest.approx(calibration["temperature"])


def test_mixed_ensemble_is_measured_into_ensembles_json(searched):
    run, board, lines = searched
    record = json.loads(ensembles_path(run.path).read_text())
    assert record["rounds"] == DEFAULT_ROUNDS
    shipped = record["shipped"]
    assert shipped["model"] == "ensemble_random_greedy"
    assert shipped["test_accuracy"] == pytest.approx(
        board["ensemble_random_greedy"]["test_accuracy"]
    )
    mixed = record["mixed"]
    sources = {member["source"] for member in mixed["members"]}
    assert "baselines" in sources and mixed["exported"] is False
    assert sum(mixed["weights"]) == pytest.approx(1.0)
    # Never below its best candidate (the baselines and the trials).
    best = max(
        [board[name]["cv_accuracy_mean"] for name in BASELINES]
        + [t["cv_accuracy_mean"] for t in read_trials(run.path, SPEC)]
    )
    assert mixed["cv_accuracy_mean"] >= best - 1e-9
    # Its CV and test, recomputed from the out-of-fold files and the fitted models.
    probabilities = [
        read_out_of_fold(run.path, m["trial"])
        if m["trial"]
        else read_baseline_out_of_fold(run.path, m["model"])
        for m in mixed["members"]
    ]
    classes = run.dataset.classes
    mean = weighted_mean(probabilities, mixed["weights"])
    assert mixed["cv_folds"] == pytest.approx(
        fold_accuracies(mean, run.dataset.y_train, classes, run.folds)
    )
    X_test = run.dataset.scale(run.dataset.x_test)
    models = [load_fitted(run.path / board[m["model"]]["model_path"]) for m in mixed["members"]]
    test_mean = weighted_mean([m.predict_proba(X_test) for m in models], mixed["weights"])
    accuracy = np.mean(np.asarray(classes)[test_mean.argmax(1)] == run.dataset.y_test)
    assert mixed["test_accuracy"] == pytest.approx(accuracy)
    line = next(line for line in lines if line.startswith("mixed ensemble cv"))
    assert "vs shipped networks-only cv" in line and "not exported" in line


def test_finished_search_does_not_rebuild_its_ensembles(searched):
    run, board, _ = searched
    path = run.path / board["ensemble_random_greedy"]["model_path"]
    stamp = path.stat().st_mtime_ns
    record = ensembles_path(run.path).read_text()
    lines: list[str] = []
    run_search(run, SPEC, progress=lines.append)
    assert path.stat().st_mtime_ns == stamp
    assert ensembles_path(run.path).read_text() == record
    assert not any(line.startswith(("ensemble of", "mixed ensemble", "refit ")) for line in lines)


def test_search_spec_checks_ensemble_and_budget():
    assert SearchSpec(top_k=3, ensemble=25).ensemble == 25  # rounds, not top trials
    with pytest.raises(ZooError, match="--budget-minutes must be a positive number"):
        SearchSpec(budget_minutes=0)
    # --ensemble N is the rounds of greedy selection; below 2, no ensemble.
    assert ensemble_rounds(SearchSpec(top_k=5)) == DEFAULT_ROUNDS
    assert ensemble_rounds(SearchSpec(top_k=1)) == 0
    assert ensemble_rounds(SearchSpec(top_k=5, ensemble=3)) == 3
    assert ensemble_rounds(SearchSpec(top_k=5, ensemble=0)) == 0
    assert ensemble_rounds(SearchSpec(family="svc")) == 0


def test_budget_stops_the_search_and_holds_on_resume(tmp_path, cli_error):
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    lines: list[str] = []
    # Far more epochs than fit in the budget on any machine (200 once finished
    # within 1.2 s on a quiet one): the budget, not the epochs, ends the trial.
    epochs = 100_000
    spec = SearchSpec(
        tuner="random", max_trials=4, epochs=epochs, top_k=1, fixed=SMALL, budget_minutes=0.02
    )
    run_search(run, spec, progress=lines.append)
    trials = read_trials(run.path, SearchSpec(tuner="random", epochs=epochs, fixed=SMALL))
    # The one trial ran into the 1.2 s budget: stopped, recorded, not scored.
    assert [t["status"] for t in trials] == ["FAILED"]
    assert "stopped by the time budget" in trials[0]["message"]
    assert any("time budget of 0.02 min used" in line for line in lines)
    assert not (run.path / "leaderboard.csv").exists()
    run_search(run, spec, progress=lines.append)
    assert len(read_trials(run.path, SearchSpec(tuner="random", epochs=epochs, fixed=SMALL))) == 1
    cli_error(
        "search", "--run-dir", tmp_path / "other", "--workers", "2", "--budget-minutes", "5",
        match="--budget-minutes works in one process only",
    )  # fmt: skip
