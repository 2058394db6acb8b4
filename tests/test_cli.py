"""Tests of the ``digits-zoo`` command line: list, baselines end to end, exit codes and messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digits_zoo.artifacts import load_fitted
from digits_zoo.leaderboard import COLUMNS, read_leaderboard
from digits_zoo.rundir import BASELINES_DIR, LEADERBOARD, RUN_FILE
from digits_zoo.runs import load_run
from helpers import read_csv
from zoo import list_models, model_entry


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory) -> Path:
    """``digits-zoo baselines --models knn_k1,decision_tree`` on the bundled digits, in-process."""
    from digits_zoo.cli import main

    run_dir = tmp_path_factory.mktemp("cli") / "run"
    status = main(["baselines", "--models", "knn_k1, decision_tree", "--run-dir", str(run_dir)])
    assert status == 0
    return run_dir


# list ---------------------------------------------------------------------------------------


def test_list_prints_one_line_per_model(cli):
    status, out, err = cli("list")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list_models()
    for line in lines:
        name, kind, description = line.split(maxsplit=2)
        assert kind == model_entry(name).kind and description == model_entry(name).description


def test_list_by_kind(cli):
    status, out, _ = cli("list", "--kind", "keras")
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == list_models(kind="keras")


# baselines, in this process -----------------------------------------------------------------


def test_baselines_writes_the_run_its_leaderboard_and_models(baselines_run):
    run_dir = baselines_run
    assert sorted(p.name for p in run_dir.iterdir()) == [
        BASELINES_DIR,
        LEADERBOARD,
        "models",
        RUN_FILE,
    ]
    header, rows = read_csv(run_dir / LEADERBOARD)
    assert header == COLUMNS
    assert [row["model"] for row in rows] == ["knn_k1", "decision_tree"]
    assert [row["rank"] for row in rows] == ["1", "2"]
    for row in rows:
        assert row["kind"] == "sklearn" and row["source"] == "baselines"
        assert len(json.loads(row["cv_folds"])) == 5
        assert (run_dir / row["model_path"]).is_file()
    meta = json.loads((run_dir / RUN_FILE).read_text())
    assert meta["folds"] == 5 and meta["seed"] == 0 and meta["data"] is None


def test_baselines_rows_reproduce_from_the_saved_models(baselines_run):
    run = load_run(baselines_run)
    X_test = run.dataset.scale(run.dataset.x_test)
    for row in read_leaderboard(baselines_run):
        model = load_fitted(baselines_run / row["model_path"])
        accuracy = float(np.mean(model.predict(X_test) == run.dataset.y_test))
        assert accuracy == pytest.approx(row["test_accuracy"], abs=1e-6)
    knn = read_leaderboard(baselines_run)[0]
    assert knn["model"] == "knn_k1" and knn["cv_accuracy_mean"] >= 0.97


def test_baselines_rerun_merges_and_a_clashing_seed_is_refused(baselines_run, cli, cli_error):
    # Its own copy of the run, so the module's run stays as the other tests expect it.
    run_dir = baselines_run.parent / "rerun"
    shutil.copytree(baselines_run, run_dir)
    status, out, _ = cli("baselines", "--models", "knn_k3", "--run-dir", run_dir)
    assert status == 0
    assert "[1/1] knn_k3" in out and "leaderboard: " in out
    assert {row["model"] for row in read_leaderboard(run_dir)} == {
        "knn_k1",
        "knn_k3",
        "decision_tree",
    }
    before = (run_dir / LEADERBOARD).read_bytes()
    cli_error(
        "baselines",
        "--models",
        "knn_k1",
        "--seed",
        "1",
        "--run-dir",
        run_dir,
        match="holds a run with another seed (0)",
    )
    assert (run_dir / LEADERBOARD).read_bytes() == before


# Usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["baselines", "--bogus"], "unrecognized arguments: --bogus"),
        (["baselines", "--folds", "1"], "--folds must be an integer of at least 2 (got 1)"),
        (["baselines", "--folds", "five"], "argument --folds: invalid int value: 'five'"),
        (["baselines", "--models", "knn_k1,knn_k9"], "unknown model 'knn_k9'; valid names: "),
        (["baselines", "--seed", "-1"], "--seed must be a non-negative integer (got -1)"),
        (["baselines", "--test-size", "1.5"], "test size must be between 0 and 1 (got 1.5)"),
        (["teleport"], "invalid choice: 'teleport'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2_with_one_line_and_write_nothing(tmp_path, cli_error, argv, message):
    run_dir = tmp_path / "run"
    extra = ["--run-dir", run_dir] if argv[:1] == ["baselines"] else []
    cli_error(*argv, *extra, match=message)
    assert not run_dir.exists()


def test_help_exits_0(cli):
    status, out, _ = cli("--help")
    assert status == 0 and "baselines" in out and "leaderboard" in out


# The installed command, end to end ----------------------------------------------------------


@pytest.mark.slow
def test_digits_zoo_baselines_end_to_end(tmp_path):
    """The console script on the bundled digits: 5-fold CV, KNN at 0.97 or better."""
    script = Path(sys.executable).parent / "digits-zoo"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "digits_zoo.cli"]
    run_dir = tmp_path / "run"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    finished = subprocess.run(
        [
            *command,
            "baselines",
            "--run-dir",
            str(run_dir),
            "--models",
            "knn_k3,logistic_regression",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    assert "5-fold CV" in finished.stdout and "knn_k3" in finished.stdout
    header, rows = read_csv(run_dir / LEADERBOARD)
    assert header == COLUMNS
    assert sorted(row["model"] for row in rows) == ["knn_k3", "logistic_regression"]
    knn = next(row for row in rows if row["model"] == "knn_k3")
    assert len(json.loads(knn["cv_folds"])) == 5
    assert float(knn["cv_accuracy_mean"]) >= 0.97
    assert 0.9 <= float(knn["test_accuracy"]) <= 1.0
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert float(rows[0]["cv_accuracy_mean"]) >= float(rows[1]["cv_accuracy_mean"])
    for row in rows:
        assert (run_dir / row["model_path"]).is_file()
