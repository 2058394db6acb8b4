"""``digits-zoo baselines``: the scikit-learn baselines evaluated two at a time."""

from __future__ import annotations

import numpy as np

from digits_zoo import baselines
from digits_zoo.baselines import read_baseline_out_of_fold, run_baselines
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.runs import open_run

# A BLAS-bound fit, a Cython one and a distance-based one.
MODELS = ["logistic_regression", "decision_tree", "knn_k3"]
COLUMNS = ("cv_accuracy_mean", "cv_accuracy_std", "test_accuracy", "test_macro_f1", "params")


def _evaluate(run_dir, threads, monkeypatch):
    monkeypatch.setattr(baselines, "baseline_threads", lambda: threads)
    run = open_run(run_dir)
    lines: list[str] = []
    run_baselines(run, MODELS, progress=lines.append)
    rows = {row["model"]: row for row in read_leaderboard(run_dir)}
    return run, rows, lines


def test_two_at_a_time_gives_what_one_at_a_time_gives(tmp_path, monkeypatch):
    _, alone, _ = _evaluate(tmp_path / "one", 1, monkeypatch)
    _, together, lines = _evaluate(tmp_path / "two", 2, monkeypatch)
    assert sorted(together) == sorted(alone) == sorted(MODELS)
    for name in MODELS:
        for column in COLUMNS:
            assert together[name][column] == alone[name][column], (name, column)
        first = read_baseline_out_of_fold(tmp_path / "one", name)
        second = read_baseline_out_of_fold(tmp_path / "two", name)
        np.testing.assert_array_equal(first, second)
    # One line per model, numbered in the order they ended.
    assert [line.split("]")[0] for line in lines] == ["[1/3", "[2/3", "[3/3"]
    assert sorted(line.split()[1] for line in lines) == sorted(MODELS)


def test_a_failing_model_stops_the_rest_and_keeps_what_ended(tmp_path, monkeypatch):
    real = baselines.create_model

    def create(name, seed=0):
        if name == "knn_k3":
            raise RuntimeError("boom")
        return real(name, seed=seed)

    monkeypatch.setattr(baselines, "create_model", create)
    monkeypatch.setattr(baselines, "baseline_threads", lambda: 2)
    run = open_run(tmp_path / "run")
    lines: list[str] = []
    try:
        run_baselines(
            run, ["decision_tree", "knn_k3", "logistic_regression"], progress=lines.append
        )
    except RuntimeError as error:
        assert str(error) == "boom"
    else:
        raise AssertionError("the failing model's error was not raised")
    board = tmp_path / "run" / "leaderboard.csv"
    kept = {row["model"] for row in read_leaderboard(tmp_path / "run")} if board.exists() else set()
    # Logistic regression never started; the tree, beside the failing model, is kept only
    # if it ended first (then its line was printed too).
    assert "knn_k3" not in kept and "logistic_regression" not in kept
    assert kept == {line.split()[1] for line in lines}
