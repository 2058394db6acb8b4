"""The run directory's lock, taken by a second process: a refusal names the holder or says it
is just starting, and a lock that comes free while a refusal is being worded is taken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from digits_zoo.rundir import run_lock
from zoo.files import HOLDER_FILE, HOLDER_WAIT_SECONDS, Locked

# A process in the moment after it took the lock and before it wrote its name: it
# takes the folder's OS lock as folder_lock does, then writes .lock-holder (as
# folder_lock does, by a rename) after WRITE_AFTER seconds (never if negative), and
# holds the lock for HOLD seconds. No imports beyond the standard library: it starts
# in milliseconds.
TAKER = """
import fcntl, json, os, sys, time
folder, write_after, hold = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
descriptor = os.open(folder, os.O_RDONLY)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("taken", flush=True)
if write_after >= 0:
    time.sleep(write_after)
    with open(os.path.join(folder, ".holder.tmp"), "w") as stream:
        json.dump({"pid": os.getpid(), "command": "digits-zoo search --run-dir RUN"}, stream)
    os.replace(os.path.join(folder, ".holder.tmp"), os.path.join(folder, ".lock-holder"))
time.sleep(hold)
"""


@pytest.fixture
def take_lock(tmp_path):
    """Starts a process that takes ``tmp_path``'s lock: ``take_lock(write_after, hold)``."""
    started = []

    def start(write_after: float, hold: float) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", TAKER, str(tmp_path), str(write_after), str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout.readline().strip() == "taken"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    return process.pid


def test_a_refusal_names_a_holder_that_names_itself_late(tmp_path, take_lock):
    # Left by a holder killed with -9: not the one holding the lock now.
    stale = _dead_pid()
    (tmp_path / HOLDER_FILE).write_text(json.dumps({"pid": stale, "command": "old"}))
    holder = take_lock(write_after=0.5, hold=30)
    with pytest.raises(Locked) as caught:
        with run_lock(tmp_path):
            pass
    message = str(caught.value)
    assert f"pid {holder.pid}: digits-zoo search --run-dir RUN" in message
    assert f"pid {stale}" not in message and "?" not in message
    assert caught.value.holder["pid"] == holder.pid


def test_a_holder_that_has_not_named_itself_is_just_starting(tmp_path, take_lock):
    take_lock(write_after=-1, hold=30)
    started = time.monotonic()
    with pytest.raises(Locked) as caught:
        with run_lock(tmp_path):
            pass
    waited = time.monotonic() - started
    message = str(caught.value)
    assert "in use by another digits-zoo process that is just starting" in message
    assert "\n" not in message and "?" not in message and str(tmp_path) in message
    assert caught.value.holder == {}
    assert HOLDER_WAIT_SECONDS <= waited < HOLDER_WAIT_SECONDS + 5


def test_a_lock_that_comes_free_while_waiting_is_taken(tmp_path, take_lock):
    holder = take_lock(write_after=-1, hold=0.3)
    with run_lock(tmp_path):
        assert holder.wait(10) == 0
        assert json.loads((tmp_path / HOLDER_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / HOLDER_FILE).exists()
