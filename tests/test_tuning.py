"""Tests of the keras-tuner search: space, CV objective, records, resume, failures, flags."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras_tuner as kt
import numpy as np
import pytest

import search.tuner
from digits_zoo.cli import main
from digits_zoo.ensembles import ensemble_pool
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.runs import Run, open_run
from digits_zoo.searching import run_search, search_context
from digits_zoo.trial_rows import leaderboard_name
from helpers import read_csv
from search.hypermodel import DenseHyperModel
from search.records import read_out_of_fold, read_trials
from search.spec import SearchSpec, read_spec
from search.tuner import make_tuner
from zoo.families import get_family
from zoo.protocol import cross_validate_out_of_fold, make_folds
from zoo.space import DenseConfig

# A cheap corner of the space, so each trial costs a few seconds.
SMALL = {"n_layers": 1, "units": 32, "batch_size": 128, "augment": "none"}
FIX_FLAGS = [flag for name, value in SMALL.items() for flag in ("--fix", f"{name}={value}")]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished 3-trial random search on the bundled digits, 2 folds."""
    run = open_run(tmp_path_factory.mktemp("search") / "run", seed=3, n_folds=2)
    lines: list[str] = []
    run_search(
        run,
        SearchSpec(
            tuner="random",
            max_trials=3,
            epochs=3,
            top_k=2,
            fixed={"n_layers": 1, "augment": "none"},
        ),
        progress=lines.append,
    )
    return run, lines


def test_hypermodel_default_build_and_names():
    hypermodel = DenseHyperModel(64, 10)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert model.output_shape == (None, 10)
    assert sorted(hp.values) == sorted(DenseConfig.searched_names())
    assert DenseConfig.from_dict(hp.values) == DenseConfig()


def test_search_writes_trials_logs_and_leaderboard(searched):
    run, lines = searched
    _, trials = read_csv(run.path / "trials.csv")
    assert [t["trial_id"] for t in trials] == ["random_0", "random_1", "random_2"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert all(t["n_layers"] == "1" for t in trials)
    for trial in trials:
        record = json.loads((run.path / "trials" / f"{trial['trial_id']}.json").read_text())
        assert len(record["cv_scores"]) == 2
        assert len(record["histories"]) == 2
        assert len(record["histories"][0]["val_accuracy"]) == 3
        assert float(trial["cv_accuracy_mean"]) == pytest.approx(np.mean(record["cv_scores"]))
        assert list((run.path / "logs" / trial["trial_id"]).glob("events.out.tfevents.*"))
    # One progress line per trial, then one per refit.
    assert sum(line.startswith("[trial ") for line in lines) == 3
    assert "best" in lines[0] and "left" in lines[0]
    # Each trial's own seconds, from its record.
    first = json.loads((run.path / "trials" / "random_0.json").read_text())
    assert f"| {first['seconds']:.1f} s | best" in lines[0]
    assert first["ended_at"] == pytest.approx(time.time(), abs=3600)
    everything = read_leaderboard(run.path)
    # The two refit trials, and the greedy ensemble's members (tests/test_ensemble.py
    # checks the ensemble); the two best trials rank first among them.
    board = [row for row in everything if not row["model"].startswith("ensemble_")]
    greedy = [row for row in everything if row["model"] == "ensemble_random_greedy"]
    members = set(json.loads(greedy[0]["config"])["trials"]) if greedy else set()
    best_trials = sorted(trials, key=lambda t: -float(t["cv_accuracy_mean"]))
    assert len(board) == len({t["trial_id"] for t in best_trials[:2]} | members)
    for row, trial in zip(board, best_trials, strict=False):
        assert row["source"] == "search" and row["kind"] == "keras"
        assert row["model"].startswith(f"search_{trial['trial_id']}_1x")
        assert row["cv_accuracy_mean"] == pytest.approx(float(trial["cv_accuracy_mean"]), abs=1e-6)
        assert (run.path / row["model_path"]).is_file()
        assert json.loads(row["config"])["n_layers"] == 1


def test_rerun_resumes_without_redoing_trials(searched):
    run, _ = searched
    records = sorted((run.path / "trials").glob("*.json"))
    stamps = {path: path.stat().st_mtime_ns for path in records}
    board_before = (run.path / "leaderboard.csv").read_text()
    lines: list[str] = []
    run_search(run, SearchSpec(tuner="random", max_trials=3, epochs=3, top_k=2, fixed={"n_layers": 1, "augment": "none"}), progress=lines.append)  # fmt: skip
    assert not any(line.startswith("[trial ") for line in lines)
    assert {path: path.stat().st_mtime_ns for path in records} == stamps
    assert (run.path / "leaderboard.csv").read_text() == board_before


def test_same_seed_gives_same_trials(searched, tmp_path):
    run, _ = searched
    again = open_run(tmp_path / "again", seed=3, n_folds=2)
    run_search(again, SearchSpec(tuner="random", max_trials=2, epochs=3, top_k=0, fixed={"n_layers": 1, "augment": "none"}), progress=lambda line: None)  # fmt: skip
    first = read_trials(run.path, read_spec(run.path))[:2]
    second = read_trials(again.path, read_spec(again.path))
    for a, b in zip(first, second, strict=True):
        assert a["config"] == b["config"]
        assert a["cv_folds"] == b["cv_folds"]


DIVERGING = {**SMALL, "activation": "relu", "normalization": "none"}


def _with_huge_pixels(run: Run) -> Run:
    # Real data that makes the loss NaN (NaN pixels are refused before training): one
    # training image of the largest float32 pixels overflows a ReLU net without
    # normalization (DIVERGING) at its first step.
    x_train = run.dataset.x_train.copy()
    x_train[0, :] = np.finfo(np.float32).max
    dataset = dataclasses.replace(run.dataset, x_train=x_train)
    return dataclasses.replace(run, dataset=dataset)


def test_diverging_trials_are_recorded_failed_and_search_goes_on(tmp_path, capsys):
    run = _with_huge_pixels(open_run(tmp_path / "run", seed=0, n_folds=2))
    lines: list[str] = []
    run_search(
        run,
        SearchSpec(tuner="random", max_trials=2, epochs=2, top_k=1, fixed=DIVERGING),
        progress=lines.append,
    )
    _, trials = read_csv(run.path / "trials.csv")
    assert [t["status"] for t in trials] == ["FAILED", "FAILED"]
    assert all("loss became nan" in t["message"] for t in trials)
    assert sum("failed: " in line for line in lines) == 2
    # One line says why (the record's message), with no traceback on the terminal.
    assert sum("failed: loss became nan" in line for line in lines) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (run.path / "leaderboard.csv").exists()


def test_programming_error_stops_the_search_at_once(tmp_path):
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    # Folds that point past the data: a bug, not a bad point of the space.
    broken = [(train, val + 10_000) for train, val in make_folds(run.dataset.y_train, 2, 0)]
    run = dataclasses.replace(run, folds=broken)
    with pytest.raises(kt.errors.FatalError, match="IndexError"):
        run_search(
            run, SearchSpec(tuner="random", max_trials=3, epochs=1, fixed=SMALL), progress=print
        )
    trial_files = list((run.path / "tuner" / "random").glob("trial_*/trial.json"))
    assert len(trial_files) == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tuner", "grid"], "--tuner must be one of random, bayesian, hyperband (got 'grid')"),
        (["--max-trials", "0"], "--max-trials must be an integer of at least 1 (got 0)"),
        (["--folds", "1"], "--folds must be an integer of at least 2 (got 1)"),
        (["--workers", "0"], "--workers must be an integer of at least 1 (got 0)"),
        (["--fix", "units=7"], "units must be one of"),
        (["--fix", "depth=2"], "unknown hyperparameter 'depth'"),
        (["--tuner", "hyperband", "--epochs", "2"], "--epochs must be at least 3 for hyperband"),
        (
            ["--executions-per-trial", "0"],
            "--executions-per-trial must be an integer of at least 1 (got 0)",
        ),
        (
            ["--family", "svc", "--executions-per-trial", "2"],
            "--executions-per-trial trains a network again with other seeds, which the svc",
        ),
    ],
)
def test_bad_flags_fail_before_training(tmp_path, capsys, flags, message):
    run_dir = tmp_path / "run"
    assert main(["search", "--run-dir", str(run_dir), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("digits-zoo: error: ")
    assert message in err[0]
    assert not (run_dir / "tuner").exists()


def test_a_trial_of_two_executions_is_two_seeded_networks_averaged(tmp_path):
    run = open_run(tmp_path / "run", seed=3, n_folds=2)
    config = {**SMALL, "learning_rate": 0.01, "activation": "relu"}
    spec = SearchSpec(
        tuner="random", max_trials=1, epochs=2, top_k=1, fixed=config, executions_per_trial=2
    )
    run_search(run, spec, progress=lambda _: None)
    (trial,) = read_trials(run.path, spec)
    assert trial["executions"] == 2
    name = leaderboard_name(trial)
    assert name == "search_random_0_1x32_relu_2seeds"
    board = {row["model"]: row for row in read_leaderboard(run.path)}
    members = json.loads(board[name]["config"])["members"]
    assert [member["seed"] for member in members] == [3, 4]
    assert members[0] == {**members[1], "seed": 3}
    _, rows = read_csv(run.path / "trials.csv")
    assert [row["executions"] for row in rows] == ["2"]
    # Its out-of-fold probabilities are the mean of the two seeds' own.
    X, y = run.dataset.scale(run.dataset.x_train), run.dataset.y_train
    single = DenseConfig.from_dict({**trial, **config})
    seeded = [
        cross_validate_out_of_fold(
            get_family("dense").create(single, seed=seed, epochs=2), X, y, run.folds
        )[1]
        for seed in (3, 4)
    ]
    assert not np.allclose(seeded[0], seeded[1], atol=1e-3)
    np.testing.assert_allclose(
        read_out_of_fold(run.path, trial["trial_id"]), np.mean(seeded, axis=0), atol=1e-5
    )
    # Already an ensemble, it is left out of the greedy ensemble's pool.
    assert ensemble_pool([trial]) == []


def test_run_dir_of_another_dataset_is_refused(tmp_path, capsys):
    other = tmp_path / "other.csv"
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.integers(0, 17, (60, 64)), np.repeat([0, 1, 2], 20)])
    np.savetxt(other, rows, fmt="%d", delimiter=",")
    run_dir = tmp_path / "run"
    open_run(run_dir, str(other), seed=0, n_folds=2)
    assert main(["search", "--run-dir", str(run_dir), "--folds", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run with another dataset" in err and "--overwrite" in err
    assert not (run_dir / "tuner").exists()


def test_changed_epochs_on_resume_is_refused(searched, capsys):
    run, _ = searched
    code = main(
        ["search", "--run-dir", str(run.path), "--seed", "3", "--folds", "2", "--tuner",
         "random", "--max-trials", "3", "--epochs", "5", "--fix", "n_layers=1", "--fix", "augment=none"]
    )  # fmt: skip
    assert code == 2
    assert "holds a random search with other settings (epochs=3)" in capsys.readouterr().err
    code = main(
        ["search", "--run-dir", str(run.path), "--seed", "3", "--folds", "2", "--tuner",
         "random", "--max-trials", "3", "--epochs", "3", "--fix", "n_layers=1", "--fix",
         "augment=none", "--executions-per-trial", "2"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "holds a random search with other settings (executions_per_trial=1)" in err


def test_trial_killed_after_its_record_is_kept_not_trained_again(searched, monkeypatch):
    # The window the kill test can hit by chance: the trial's record is on disk,
    # but keras-tuner had not saved the trial as done, so a resume hands it out again.
    run, _ = searched
    tuner = make_tuner(search_context(run), read_spec(run.path), progress=lambda line: None)
    trial = tuner.oracle.trials[sorted(tuner.oracle.trials)[0]]
    record_path = run.path / "trials" / f"random_{trial.trial_id}.json"
    record = json.loads(record_path.read_text())
    stamp = record_path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(search.tuner, "cross_validate_out_of_fold", no_training)
    result = tuner.run_trial(trial)
    assert result["cv_accuracy"] == pytest.approx(np.mean(record["cv_scores"]))
    assert result["cv_accuracy_std"] == pytest.approx(np.std(record["cv_scores"]))
    assert record_path.stat().st_mtime_ns == stamp
    # A record of other settings (here: epochs) is no such trial: it trains.
    record_path.write_text(json.dumps({**record, "epochs": record["epochs"] + 1}))
    try:
        with pytest.raises(kt.errors.FatalError, match="a finished trial was trained again"):
            tuner.run_trial(trial)
    finally:
        record_path.write_text(json.dumps(record) + "\n")


def _digits_zoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "digits_zoo.cli", *args]


@pytest.mark.slow
def test_killed_search_resumes_and_keeps_finished_trials(tmp_path):
    run_dir = tmp_path / "run"
    command = _digits_zoo(
        "search", "--run-dir", str(run_dir), "--tuner", "random", "--max-trials", "3",
        "--epochs", "2", "--folds", "2", "--top-k", "1", *FIX_FLAGS,
    )  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = run_dir / "trials" / "random_0.json"
    deadline = time.monotonic() + 240
    while not first.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert first.exists(), process.stderr.read().decode()[-2000:] if process.poll() else "timeout"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    kept = first.read_text()
    stamp = first.stat().st_mtime_ns
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert finished.returncode == 0, finished.stderr[-2000:]
    _, trials = read_csv(run_dir / "trials.csv")
    assert [t["trial_id"] for t in trials] == ["random_0", "random_1", "random_2"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert first.read_text() == kept and first.stat().st_mtime_ns == stamp
    assert len(read_leaderboard(run_dir)) == 1
