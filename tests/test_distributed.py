"""Tests of the supervised keras-tuner distributed search: a chief and two workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

from digits_zoo.runs import open_run
from digits_zoo.searching import run_search, search_context
from search.distributed import read_worker_pids, run_distributed
from search.records import read_trials
from search.spec import SearchSpec, prepare_search

SMALL = {"n_layers": 1, "units": 32, "batch_size": 128, "augment": "none"}

pytestmark = pytest.mark.slow


def _children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_chief_and_two_workers_finish_every_trial(tmp_path):
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    lines: list[str] = []
    run_search(run, SearchSpec(tuner="random", max_trials=4, epochs=2, top_k=1, fixed=SMALL), workers=2, progress=lines.append, worker_timeout=300)  # fmt: skip
    trials = read_trials(run.path, SearchSpec(tuner="random", epochs=2, fixed=SMALL))
    assert len(trials) == 4
    assert all(t["status"] == "COMPLETED" for t in trials)
    # Both workers ran trials, each reported by its own id.
    assert any(line.endswith("(tuner0)") for line in lines)
    assert any(line.endswith("(tuner1)") for line in lines)
    assert not (run.path / "workers.json").exists()
    assert _children() == []


def _kill_a_worker_during_a_trial(run, spec, max_restarts):
    errors: list[BaseException] = []
    lines: list[str] = []

    def supervise():
        try:
            run_distributed(
                search_context(run),
                spec,
                2,
                progress=lines.append,
                stall_timeout=300,
                max_restarts=max_restarts,
            )
        except BaseException as error:  # noqa: BLE001 (reported by the test thread)
            errors.append(error)

    thread = threading.Thread(target=supervise)
    thread.start()
    project = run.path / "tuner" / "random"

    def worker_is_in_a_trial() -> bool:
        # The chief records which worker runs which trial in its oracle.json.
        if "tuner0" not in read_worker_pids(run.path):
            return False
        try:
            state = json.loads((project / "oracle.json").read_text())
        except (OSError, ValueError):
            return False
        return "tuner0" in state.get("ongoing_trials", {})

    _wait_for(worker_is_in_a_trial, 180, "a running trial")
    os.kill(read_worker_pids(run.path)["tuner0"], signal.SIGKILL)
    thread.join(timeout=400)
    assert not thread.is_alive(), "the supervisor hung"
    assert errors == []
    return lines


def test_killed_worker_is_restarted_and_finishes_its_trial(tmp_path):
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    spec = SearchSpec(tuner="random", max_trials=3, epochs=3, fixed=SMALL)
    prepare_search(search_context(run), spec)
    lines = _kill_a_worker_during_a_trial(run, spec, max_restarts=2)
    assert any("worker tuner0 died (killed by SIGKILL); restarting" in line for line in lines)
    trials = read_trials(run.path, spec)
    assert len(trials) == 3
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert _children() == []


def test_worker_given_up_leaves_its_trial_failed_not_hanging(tmp_path):
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    spec = SearchSpec(tuner="random", max_trials=3, epochs=3, fixed=SMALL)
    prepare_search(search_context(run), spec)
    lines = _kill_a_worker_during_a_trial(run, spec, max_restarts=0)
    assert any("will not be restarted" in line for line in lines)
    statuses = [t["status"] for t in read_trials(run.path, spec)]
    assert set(statuses) <= {"COMPLETED", "FAILED"}
    assert "FAILED" in statuses
    assert _children() == []
