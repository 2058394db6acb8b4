"""Ensembles of the top trials, and the search's time budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digits_zoo.artifacts import load_fitted
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.runs import open_run
from digits_zoo.searching import run_search
from digits_zoo.ship.export import export_run
from search.records import read_out_of_fold, read_trials
from search.spec import SearchSpec
from zoo import stacked
from zoo.dense import DenseNetClassifier
from zoo.ensemble import DenseEnsembleClassifier
from zoo.errors import ZooError
from zoo.protocol import cross_validate

SMALL = {"n_layers": 1, "units": 32, "batch_size": 128, "augment": "none"}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished 3-trial random search, 3 folds, its 3 trials refit and ensembled."""
    run = open_run(tmp_path_factory.mktemp("ensemble") / "run", seed=1, n_folds=3)
    lines: list[str] = []
    run_search(
        run,
        SearchSpec(tuner="random", max_trials=3, epochs=3, top_k=3, fixed=SMALL),
        progress=lines.append,
    )
    board = {row["model"]: row for row in read_leaderboard(run.path)}
    return run, board, lines


def test_search_adds_an_ensemble_row_scored_from_out_of_fold_probabilities(searched):
    run, board, lines = searched
    row = board["ensemble_random_top3"]
    assert row["kind"] == "keras" and row["source"] == "search"
    assert any(line.startswith("ensemble of random_") for line in lines)
    trials = read_trials(run.path, SearchSpec(tuner="random", epochs=3, fixed=SMALL))
    y = run.dataset.y_train
    averaged = np.mean([read_out_of_fold(run.path, t["trial_id"]) for t in trials], axis=0)
    expected = [float(np.mean(averaged[val].argmax(1) == y[val])) for _, val in run.folds]
    assert json.loads(row["cv_folds"]) == pytest.approx(expected, abs=1e-6)
    # Each trial's out-of-fold rows are its own fold networks' predictions: their
    # accuracy on each fold is the trial's recorded fold score.
    for trial in trials:
        probabilities = read_out_of_fold(run.path, trial["trial_id"])
        scores = [float(np.mean(probabilities[val].argmax(1) == y[val])) for _, val in run.folds]
        assert scores == pytest.approx(json.loads(trial["cv_folds"]), abs=1e-9)


def test_ensemble_cv_equals_retraining_it_without_each_fold(searched, monkeypatch):
    run, board, _ = searched
    row = board["ensemble_random_top3"]
    members = json.loads(row["config"])["members"]
    assert len(members) == 3
    trained_on: list[list[np.ndarray]] = []
    real = stacked.epoch_batches

    def spy(rows, *args, **kwargs):
        trained_on.append([np.asarray(r) for r in rows])
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(stacked, "epoch_batches", spy)
    X, y = run.dataset.scale(run.dataset.x_train), run.dataset.y_train
    scores = cross_validate(DenseEnsembleClassifier(members=members), X, y, run.folds)
    # Every member trained each fold's network on that fold's training part only.
    assert len(trained_on) == 3
    for member_rows in trained_on:
        for rows, (train, val) in zip(member_rows, run.folds, strict=True):
            np.testing.assert_array_equal(np.sort(rows), np.sort(train))
            assert not np.isin(rows, val).any()
    # Retrained from scratch, the ensemble scores what the search recorded.
    assert scores == pytest.approx(json.loads(row["cv_folds"]), abs=1e-6)


def test_ensemble_test_score_averages_the_refit_members(searched):
    run, board, _ = searched
    row = board["ensemble_random_top3"]
    ensemble = load_fitted(run.path / row["model_path"])
    members = [
        load_fitted(run.path / r["model_path"])
        for r in board.values()
        if r["model"].startswith("search_random_")
    ]
    X_test = run.dataset.scale(run.dataset.x_test)
    averaged = np.mean([m.predict_proba(X_test) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba(X_test), averaged, atol=1e-5)
    accuracy = float(np.mean(ensemble.predict(X_test) == run.dataset.y_test))
    assert accuracy == pytest.approx(row["test_accuracy"])
    assert (
        row["params"]
        == sum(r["params"] for r in board.values() if r["source"] == "search") - row["params"]
    )


def test_ensemble_exports_as_one_verified_saved_model(searched, tmp_path):
    run, board, _ = searched
    result = export_run(
        run.path, model="ensemble_random_top3", out=tmp_path / "export", progress=lambda _: None
    )
    verification = result.metadata["verification"]
    assert verification["test_accuracy"] == pytest.approx(
        board["ensemble_random_top3"]["test_accuracy"]
    )
    assert result.metadata["format"] == "tf_saved_model"


def test_finished_search_does_not_rebuild_its_ensemble(searched):
    run, board, _ = searched
    path = run.path / board["ensemble_random_top3"]["model_path"]
    stamp = path.stat().st_mtime_ns
    lines: list[str] = []
    run_search(
        run,
        SearchSpec(tuner="random", max_trials=3, epochs=3, top_k=3, fixed=SMALL),
        progress=lines.append,
    )
    assert path.stat().st_mtime_ns == stamp
    assert not any(line.startswith("ensemble of") for line in lines)


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


def test_search_spec_checks_ensemble_and_budget():
    with pytest.raises(ZooError, match="--top-k must be at least 4"):
        SearchSpec(top_k=3, ensemble=4)
    with pytest.raises(ZooError, match="--budget-minutes must be a positive number"):
        SearchSpec(budget_minutes=0)
    assert SearchSpec(top_k=5).ensemble_size == 5
    assert SearchSpec(top_k=5, ensemble=0).ensemble_size == 0


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
