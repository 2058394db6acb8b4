"""Parallel searches with keras-tuner's own distributed mode, supervised.

keras-tuner runs a distributed search as one chief process serving the oracle
over gRPC and worker processes that each ask it for trials, configured by the
environment variables ``KERASTUNER_TUNER_ID`` (``chief``, ``tuner0``, ...),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``. Left alone, keras-tuner
1.4.8 hangs in three cases measured here: a worker killed during a trial
leaves that trial RUNNING and the chief waiting forever; a worker with no chief
blocks for up to an hour; and the chief polls for its exit only every 20 s.

:func:`run_distributed` makes them safe: it starts the chief first and waits
(bounded) until it listens, starts the workers with their share of the cores,
restarts a dead worker under its own id (which makes keras-tuner hand it back
its orphaned trial), gives up on a worker after ``max_restarts`` and marks its
trial failed, stops the chief as soon as every worker is done, and stops
everything with a clear message when no trial finishes for ``stall_timeout``
seconds. Every process it started is gone when it returns.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from search import paths
from search.ktcompat import attach_oracle, fail_orphaned_trials
from search.oracles import make_oracle
from search.spec import SearchContext, SearchSpec, read_context, read_spec
from search.tuner import make_tuner, quiet_search_warnings
from zoo.errors import ZooError
from zoo.files import atomic_write_text, read_json


class SearchStalled(ZooError):
    """A distributed search made no progress within its time limit."""


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def thread_environment(threads: int) -> dict[str, str]:
    """Environment variables that limit BLAS, XLA and TensorFlow to ``threads`` threads."""
    variables = {
        name: str(threads)
        for name in (
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
            "TF_NUM_INTRAOP_THREADS",
            "TF_NUM_INTEROP_THREADS",
        )
    }
    if threads == 1:
        variables["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return variables


class _Process:
    """One supervised keras-tuner process and the tail of its output."""

    def __init__(self, role: str, run_dir: Path, env: dict[str, str], progress, cores=None):
        self.role = role
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "search.worker", str(run_dir)],
            env={**env, "KERASTUNER_TUNER_ID": role, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        if cores and hasattr(os, "sched_setaffinity"):
            try:
                os.sched_setaffinity(self.popen.pid, cores)
            except OSError:
                pass
        self.reader = threading.Thread(target=self._read, args=(progress,), daemon=True)
        self.reader.start()

    def _read(self, progress) -> None:
        for line in self.popen.stdout:
            line = line.rstrip()
            if not line:
                continue
            self.tail.append(line)
            if line.startswith("[trial"):
                progress(f"{line} ({self.role})")

    def poll(self) -> int | None:
        return self.popen.poll()

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(grace)
        self.reader.join(timeout=grace)

    def describe_exit(self) -> str:
        code = self.popen.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"


def _wait_listening(port: int, chief: _Process, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chief.poll() is not None:
            raise RuntimeError(
                f"the keras-tuner chief exited ({chief.describe_exit()}) before serving:\n"
                + "\n".join(chief.tail)
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SearchStalled(
        f"the keras-tuner chief did not listen on 127.0.0.1:{port} within {timeout:.0f} s; "
        "check that the port is free and rerun to resume"
    )


def _count_finished(directory: Path, spec: SearchSpec) -> int:
    project = paths.tuner_project(directory, spec.project)
    finished = 0
    for trial_file in project.glob("trial_*/trial.json"):
        try:
            status = json.loads(trial_file.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            continue
        finished += status in ("COMPLETED", "FAILED", "INVALID")
    return finished


def run_distributed(
    context: SearchContext,
    spec: SearchSpec,
    workers: int,
    progress: Callable[[str], None] = print,
    stall_timeout: float | None = None,
    max_restarts: int = 3,
    start_timeout: float = 120.0,
) -> None:
    """Runs a search with a keras-tuner chief and ``workers`` worker processes on this machine.

    The search settings must already be recorded (``search.spec.prepare_search``).

    Args:
        context: the search's folder, data, folds and seed.
        spec: the search settings.
        workers: worker processes (trials at once).
        progress: receives the workers' trial lines and supervision notices.
        stall_timeout: seconds without a finished trial before giving up
            (default: one hour).
        max_restarts: restarts allowed per worker after it dies.
        start_timeout: seconds the chief may take to start listening.

    Raises:
        SearchStalled: no trial finished in time; the state on disk is kept,
            and rerunning resumes.
        RuntimeError: the chief failed.
    """
    stall_timeout = 3600.0 if stall_timeout is None else float(stall_timeout)
    directory = context.directory
    port = free_port()
    base_env = {
        **os.environ,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
    }
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    n_cores = len(cores) or os.cpu_count() or 1
    threads = max(1, n_cores // workers)
    worker_env = {**base_env, **thread_environment(threads)}
    processes: dict[str, _Process] = {}
    restarts = collections.Counter()
    gave_up: list[str] = []

    def core_share(index: int) -> list[int] | None:
        if not cores or workers > len(cores):
            return None
        return cores[index * threads : (index + 1) * threads]

    def record_pids() -> None:
        pids = {role: process.popen.pid for role, process in processes.items()}
        atomic_write_text(paths.workers_path(directory), json.dumps(pids) + "\n")

    try:
        processes["chief"] = _Process("chief", directory, base_env, progress)
        record_pids()
        _wait_listening(port, processes["chief"], start_timeout)
        names = [f"tuner{index}" for index in range(workers)]
        for index, name in enumerate(names):
            processes[name] = _Process(name, directory, worker_env, progress, core_share(index))
        record_pids()
        progress(f"chief on 127.0.0.1:{port}, {workers} workers with {threads} thread(s) each")
        finished = _count_finished(directory, spec)
        last_progress = time.monotonic()
        while True:
            time.sleep(0.5)
            now_finished = _count_finished(directory, spec)
            if now_finished != finished:
                finished, last_progress = now_finished, time.monotonic()
            chief = processes["chief"]
            for index, name in enumerate(names):
                process = processes[name]
                code = process.poll()
                if code is None or code == 0 or name in gave_up:
                    continue
                if chief.poll() is None and restarts[name] < max_restarts:
                    restarts[name] += 1
                    progress(
                        f"worker {name} died ({process.describe_exit()}); restarting it under "
                        f"its own id ({restarts[name]}/{max_restarts}) to finish its trial"
                    )
                    processes[name] = _Process(
                        name, directory, worker_env, progress, core_share(index)
                    )
                    record_pids()
                else:
                    gave_up.append(name)
                    progress(
                        f"worker {name} died ({process.describe_exit()}) and will not be "
                        "restarted; its trial will be marked failed"
                    )
            if all(processes[name].poll() is not None for name in names):
                break
            if chief.poll() is not None and chief.popen.returncode != 0:
                raise RuntimeError(
                    f"the keras-tuner chief exited ({chief.describe_exit()}):\n"
                    + "\n".join(chief.tail)
                )
            if time.monotonic() - last_progress > stall_timeout:
                raise SearchStalled(
                    f"no trial finished in {stall_timeout:.0f} s with {workers} workers; "
                    "stopped the search (its state is kept: rerun the same command to resume)"
                )
        failed_workers = [
            name for name in names if processes[name].popen.returncode not in (0, None)
        ]
        for name in failed_workers:
            if name not in gave_up:
                gave_up.append(name)
        if failed_workers:
            tails = "\n".join(
                f"{n}: {processes[n].tail[-1] if processes[n].tail else ''}" for n in failed_workers
            )
            progress(f"workers that failed: {', '.join(failed_workers)}\n{tails}")
    finally:
        # The chief would notice the end only at its next 20 s poll; its state
        # is saved after every trial, so it can be stopped at once.
        for process in processes.values():
            process.stop()
        paths.workers_path(directory).unlink(missing_ok=True)
    if gave_up:
        _fail_orphaned_trials(context, spec)


def _fail_orphaned_trials(context: SearchContext, spec: SearchSpec) -> None:
    """Marks trials left RUNNING by workers that were given up on as FAILED, in the oracle's state."""
    oracle = make_oracle(spec, context.seed)
    attach_oracle(oracle, str(paths.tuner_root(context.directory)), spec.project)
    oracle.reload()
    fail_orphaned_trials(oracle, "its worker died during the trial and was not restarted")


def worker_main(directory: str) -> int:
    """Runs one keras-tuner process (chief or worker) of a recorded search."""
    _die_with_parent()
    quiet_search_warnings()
    context = read_context(directory)
    spec = read_spec(directory)
    tuner = make_tuner(context, spec, progress=lambda line: print(line, flush=True))
    tuner.search(verbose=0)
    return 0


def _die_with_parent() -> None:
    """Asks Linux to end this process when its supervisor dies (no orphans)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass
    if os.getppid() == 1:
        sys.exit(1)


def read_worker_pids(directory: str | Path) -> dict[str, int]:
    """The pids of a running distributed search's processes (for supervision tools and tests)."""
    path = paths.workers_path(directory)
    return read_json(path, "worker list") if path.is_file() else {}
