"""What ``kill -9`` of ``digits-zoo export --format all`` leaves: its conversion child dies
with it (as any child started through ``digits_zoo.ship.child_process`` does), and the next
export removes the child's temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import psutil

from digits_zoo.baselines import run_baselines
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.runs import open_run
from digits_zoo.searching import run_search
from digits_zoo.ship.keras_formats import CONVERT_PREFIX
from search.spec import SearchSpec

SMALL = {"n_layers": 1, "units": 16, "batch_size": 128, "augment": "none"}


def _conversion_child(parent: psutil.Process, timeout: float) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE, "export ended"
        for child in parent.children():
            try:
                if "digits_zoo.ship.keras_formats" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no conversion child within {timeout:g} s")


def test_kill_9_of_an_export_stops_its_conversion_and_the_next_export_cleans_up(
    tmp_path, monkeypatch, cli
):
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    run_baselines(run, ["knn_k1"], progress=lambda line: None)
    spec = SearchSpec(tuner="random", max_trials=1, epochs=1, top_k=1, fixed=SMALL)
    run_search(run, spec, progress=lambda line: None)
    network = next(row["model"] for row in read_leaderboard(run.path) if row["kind"] == "keras")
    # The exports' temporary folder, this test's own: both processes use it.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    export = subprocess.Popen(
        [sys.executable, "-m", "digits_zoo.cli", "export", str(run.path), "--model", network,
         "--format", "all"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    child = None
    try:
        child = _conversion_child(psutil.Process(export.pid), timeout=240)
        export.kill()
        assert export.wait(30) == -9
        # The child dies with its parent, long before it could write a file.
        gone, alive = psutil.wait_procs([child], timeout=10)
        assert not alive, f"conversion child {child.pid} outlived its killed export"
    finally:
        export.kill()
        if child is not None and child.is_running():
            child.kill()
    staging = list((run.path / "export" / network).glob(".partial-*"))
    assert staging and not [path.name for path in staging[0].glob("model.*")]
    assert len(list(scratch.glob(f"{CONVERT_PREFIX}*"))) == 1

    # The next export (a quick one) removes the dead export's folders.
    status, _, err = cli("export", run.path, "--model", "knn_k1")
    assert status == 0, err
    assert not list(scratch.glob(f"{CONVERT_PREFIX}*"))


# A parent that starts a long child through child_process, prints its pid and waits.
PARENT = """
import subprocess, sys
from digits_zoo.ship import child_process
child = subprocess.Popen(child_process.command("timeit", "-n", "1", "import time; time.sleep(60)"))
print(child.pid, flush=True)
child.wait()
"""


def test_a_child_process_dies_with_its_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    try:
        time.sleep(0.5)
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        parent.kill()
        parent.wait(10)
        gone, alive = psutil.wait_procs([child], timeout=5)
        assert not alive
    finally:
        parent.kill()
        if child.is_running():
            child.kill()


def test_a_child_whose_parent_is_already_gone_stops_at_once():
    # Pid 1 is not the test's pid: as if the parent had died before the child started.
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "digits_zoo.ship.child_process", "1", "timeit", "-n", "1",
         "import time; time.sleep(60)"],
        timeout=30,
    )  # fmt: skip
    assert completed.returncode == 1 and time.monotonic() - started < 20
