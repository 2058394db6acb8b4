"""Adapting a served model from the page: ``digits-zoo adapt`` run in the background.

The page's Adapt button starts ``digits-zoo adapt FOLDER --data COLLECT_FILE``
(:mod:`digits_zoo.ship.adapt`) as a child process, for the model's export
folder and its collect file: the same command the page shows for a terminal.
At most one adaptation runs per model (a second start gets a 409); the server
goes on answering meanwhile, since the child does the work, and the page polls
the job's status. A version the command writes is served once the poller finds
it (:mod:`digits_zoo.serve.reload`); the status says which version was written
by comparing the export's version folders before and after.

The child gets the environment the server started with, before ``serve`` limited
its own thread pools to one thread, so that training uses every core.
"""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from digits_zoo.serve.errors import Conflict, RequestError
from digits_zoo.serve.models import ServedModel
from digits_zoo.ship import child_process
from digits_zoo.ship.layout import is_version, version_folders

# The fewest collected digits 'digits-zoo adapt' takes.
MIN_DIGITS = 2

# Lines of the command's output kept for the page.
TAIL_LINES = 20


def adapt_command(model: ServedModel, program: str = "digits-zoo") -> list[str]:
    """The command that adapts ``model`` to its collected digits, with absolute paths."""
    return [program, "adapt", str(model.folder), "--data", str(model.collect.path)]


def shown_command(model: ServedModel) -> str:
    """:func:`adapt_command` as a person types it in a shell."""
    return shlex.join(adapt_command(model))


class AdaptJob:
    """One run of ``digits-zoo adapt`` for one model, and what became of it."""

    def __init__(self, model: ServedModel, environment: dict[str, str] | None) -> None:
        self.model_name = model.name
        self.base = model.base or (model.folder.parent if is_version(model.folder) else None)
        self.before = _newest_on_disk(self.base)
        self.started = time.time()
        self.finished: float | None = None
        self.exit_code: int | None = None
        self.written: int | None = None
        self.digits = model.collect.rows
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # A child that dies with the server: a killed server leaves no training behind.
        command = child_process.command("digits_zoo.cli", *adapt_command(model)[1:])
        env = {**(os.environ if environment is None else environment), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name="adapt-output", daemon=True)
        self._reader.start()

    @property
    def running(self) -> bool:
        """Whether the command has not finished yet."""
        return self.exit_code is None

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip()
            if line:
                self.tail.append(line)
        self.process.stdout.close()
        code = self.process.wait()
        newest = _newest_on_disk(self.base)
        if code == 0 and newest is not None and (self.before is None or newest > self.before):
            self.written = newest
        self.finished = time.time()
        # Set last: a poll that sees the exit code sees everything else with it.
        self.exit_code = code

    def describe(self, serving: int) -> dict[str, Any]:
        """The job's state for the page: ``running``, ``written``, ``not written`` or ``failed``."""
        if self.running:
            state = "running"
        elif self.exit_code != 0:
            state = "failed"
        else:
            state = "written" if self.written is not None else "not written"
        lines = list(self.tail)
        return {
            "state": state,
            "digits": self.digits,
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "exit_code": self.exit_code,
            "written": self.written,
            "serving": serving,
            "last_line": lines[-1] if lines else "",
            "lines": lines,
        }

    def stop(self) -> None:
        """Ends the command if it still runs (the server is stopping)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)


class Adaptations:
    """The adaptations started from the page: at most one running per model.

    Args:
        environment: the child's environment (default: this process's).
    """

    def __init__(self, environment: dict[str, str] | None = None) -> None:
        self.environment = environment
        self._jobs: dict[str, AdaptJob] = {}
        self._lock = threading.Lock()

    def start(self, model: ServedModel) -> AdaptJob:
        """Starts adapting ``model`` to its collect file.

        Raises:
            Conflict: an adaptation of this model is running.
            RequestError: fewer than ``MIN_DIGITS`` digits collected.
        """
        with self._lock:
            job = self._jobs.get(model.name)
            if job is not None and job.running:
                raise Conflict(
                    f"an adaptation of {model.name!r} is already running (started "
                    f"{time.time() - job.started:.0f} s ago, on {job.digits} digits); wait for "
                    "it to finish"
                )
            rows = model.collect.rows
            if rows < MIN_DIGITS:
                raise RequestError(
                    f"adapting needs at least {MIN_DIGITS} collected digits (got {rows} in "
                    f"{model.collect.path.name}); mark a few drawings Right or Wrong first"
                )
            job = AdaptJob(model, self.environment)
            self._jobs[model.name] = job
            return job

    def get(self, name: str) -> AdaptJob | None:
        """The model's latest adaptation, running or finished; ``None`` if none was started."""
        return self._jobs.get(name)

    def stop(self) -> None:
        """Ends every adaptation still running."""
        for job in list(self._jobs.values()):
            job.stop()


def _newest_on_disk(base: Path | None) -> int | None:
    if base is None:
        return None
    whole = [number for number, folder in version_folders(base) if is_version(folder)]
    return max(whole, default=None)
