"""The run directory: one writer at a time, no lost row, damaged state files refused in one
line, and caps on what a run may be asked for."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import psutil
import pytest

from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.rundir import run_lock
from digits_zoo.runs import open_run
from digits_zoo.searching import run_search
from search.runner import max_workers
from search.spec import SearchSpec
from zoo.errors import ZooError

SMALL = {"n_layers": 1, "units": 16, "batch_size": 128, "augment": "none"}
FIX_FLAGS = [flag for name, value in SMALL.items() for flag in ("--fix", f"{name}={value}")]
MERGER = """
import sys
from digits_zoo.leaderboard import merge_rows
run_dir, prefix = sys.argv[1], sys.argv[2]
for index in range(150):
    merge_rows(run_dir, [{
        "model": f"{prefix}_{index}", "kind": "sklearn", "cv_accuracy_mean": 0.5,
        "cv_accuracy_std": 0.0, "test_accuracy": 0.5, "test_macro_f1": 0.5, "fit_seconds": 0.0,
        "predict_seconds_per_1000": 0.0, "params": 1, "config": "{}", "cv_folds": "[0.5]",
        "source": "baselines", "model_path": "",
    }])
"""
HOLDER = """
import sys, time
from digits_zoo.rundir import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_two_processes_merging_one_leaderboard_lose_no_row(tmp_path):
    processes = [
        subprocess.Popen([sys.executable, "-c", MERGER, str(tmp_path), prefix])
        for prefix in ("first", "second")
    ]
    for process in processes:
        assert process.wait(120) == 0
    rows = read_leaderboard(tmp_path)
    assert len(rows) == 300
    assert [row["rank"] for row in rows] == list(range(1, 301))


@pytest.fixture
def held_run(tmp_path):
    """A run directory whose lock another process holds (a running command)."""
    run_dir = tmp_path / "run"
    open_run(run_dir, seed=0, n_folds=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    yield run_dir, holder.pid
    holder.kill()
    holder.wait(10)


def test_a_second_writer_is_refused_naming_the_first(held_run, cli):
    run_dir, pid = held_run
    before = sorted(p.name for p in run_dir.iterdir())
    for command in (
        ["baselines", "--models", "knn_k1", "--folds", "2"],
        ["search", "--folds", "2", "--max-trials", "1", "--epochs", "1", *FIX_FLAGS],
    ):
        status, _, err = cli(*command, "--run-dir", run_dir)
        assert status == 2, err
        assert err.count("\n") == 1 and err.startswith("digits-zoo: error: ")
        assert "in use by another digits-zoo process" in err and f"pid {pid}" in err
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_the_lock_is_released_and_reentrant(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):
            pass
        assert (tmp_path / ".lock-holder").is_file()
    assert not (tmp_path / ".lock-holder").exists()
    # Another process can take it now.
    code = "import sys; from digits_zoo.rundir import run_lock\nwith run_lock(sys.argv[1]): pass"
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60).returncode == 0


def test_workers_are_capped_by_the_cores_before_any_process_starts(tmp_path, cli_error):
    children = len(psutil.Process().children(recursive=True))
    cli_error(
        "search", "--run-dir", tmp_path / "run", "--workers", "100",
        match=f"--workers must be at most {max_workers()}",
    )  # fmt: skip
    assert len(psutil.Process().children(recursive=True)) == children
    assert not (tmp_path / "run").exists()


def test_huge_seed_is_one_line(tmp_path, cli_error):
    cli_error("baselines", "--run-dir", tmp_path / "run", "--seed", str(2**70), match="--seed")


def test_search_refuses_augmentation_on_images_that_are_not_square(tmp_path, cli):
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.integers(0, 17, (60, 65)), np.repeat([0, 1, 2], 20)])
    data = tmp_path / "odd.csv"
    np.savetxt(data, rows, fmt="%d", delimiter=",")
    status, _, err = cli(
        "search", "--data", data, "--run-dir", tmp_path / "run", "--folds", "2",
        "--max-trials", "1", "--epochs", "1",
    )  # fmt: skip
    assert status == 2 and err.count("\n") == 1
    assert "augmentation needs square images" in err and "--fix augment=none" in err
    assert not (tmp_path / "run" / "tuner").exists()
    # A pinned convolutional stem is refused the same way, even without copies.
    status, _, err = cli(
        "search", "--data", data, "--run-dir", tmp_path / "run", "--folds", "2",
        "--max-trials", "1", "--epochs", "1", "--fix", "augment=none", "--fix", "conv_filters=8",
    )  # fmt: skip
    assert status == 2 and err.count("\n") == 1
    assert "conv_filters needs square pictures" in err and "65 features" in err
    assert not (tmp_path / "run" / "tuner").exists()


@pytest.fixture(scope="module")
def small_search(tmp_path_factory):
    """A finished 2-trial random search (2 folds, 1 epoch) to damage copies of."""
    run = open_run(tmp_path_factory.mktemp("damage") / "run", seed=0, n_folds=2)
    spec = SearchSpec(tuner="random", max_trials=2, epochs=1, top_k=1, fixed=SMALL)
    run_search(run, spec, progress=lambda line: None)
    return run.path


@pytest.mark.parametrize(
    "damaged, what",
    [
        ("trials/random_0.json", "damaged trial record"),
        ("tuner/random/trial_0/trial.json", "damaged keras-tuner state"),
        ("tuner/random/oracle.json", "damaged keras-tuner state"),
        ("search.json", "damaged search settings"),
    ],
)
def test_damaged_search_state_is_one_line(small_search, tmp_path, cli, damaged, what):
    run_dir = tmp_path / "run"
    shutil.copytree(small_search, run_dir)
    (run_dir / damaged).write_text('{"cut": ')
    status, _, err = cli(
        "search", "--run-dir", run_dir, "--folds", "2", "--tuner", "random",
        "--max-trials", "3", "--epochs", "1", "--top-k", "1", *FIX_FLAGS,
    )  # fmt: skip
    assert status == 2, err
    assert err.count("\n") == 1 and what in err and damaged.split("/")[-1] in err


def test_truncated_leaderboard_is_refused_not_shortened(small_search, tmp_path, cli):
    run_dir = tmp_path / "run"
    shutil.copytree(small_search, run_dir)
    board = run_dir / "leaderboard.csv"
    text = board.read_text()
    board.write_text(text[: len(text) - 40])
    for command in (["leaderboard", run_dir], ["report", run_dir], ["export", run_dir]):
        status, _, err = cli(*command)
        assert status == 2, (command, err)
        assert "damaged leaderboard" in err and err.count("\n") == 1
    assert board.read_text() == text[: len(text) - 40]


def test_report_cleans_the_leftovers_of_a_killed_report(small_search, tmp_path, cli):
    run_dir = tmp_path / "run"
    shutil.copytree(small_search, run_dir)
    (run_dir / ".report-killed").mkdir()
    (run_dir / ".report-killed" / "half.png").write_bytes(b"\x89PNG")
    status, _, err = cli("report", run_dir)
    assert status == 0, err
    assert not list(run_dir.glob(".report-*"))


def test_model_name_from_a_file_cannot_point_elsewhere(tmp_path):
    from digits_zoo.leaderboard import merge_rows

    with pytest.raises(ZooError, match="not a plain file name"):
        merge_rows(tmp_path, [{"model": "../../outside/x", "cv_accuracy_mean": 1.0}])
