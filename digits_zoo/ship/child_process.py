"""A child Python program that dies with its parent: ``python -m digits_zoo.ship.child_process``.

An export converts its network in a child process (``keras_formats``); if the
export is killed (``kill -9``), the child must not go on writing into the
dead export's folder. Before anything else is imported, this program has the
kernel kill it when its parent ends (Linux's ``prctl(PR_SET_PDEATHSIG,
SIGKILL)``), or, where there is no such call, watches its parent's pid from a
thread; then it runs the module it was given as ``__main__``.

It is set up in the child, after exec, rather than in a ``preexec_fn``: the
parent runs JAX's and TensorFlow's threads, and a ``preexec_fn`` makes
``subprocess`` fork, which is not safe in a process with threads (JAX warns
that it may deadlock). The parent's pid is passed in, so a parent that died
before the call is caught too. Standard library only, so the call comes
within milliseconds of the start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import runpy
import signal
import sys
import threading
import time

# Linux's prctl option that has the kernel signal a process when its parent ends.
_PR_SET_PDEATHSIG = 1
# How often the fallback looks whether the parent is still there, in seconds.
POLL_SECONDS = 0.5


def command(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module *args`` as a child that dies with this process."""
    return [sys.executable, "-m", __name__, str(os.getpid()), module, *args]


def die_with_parent(parent: int) -> None:
    """Ends this process when its parent (pid ``parent``) ends; at once if it already has.

    Linux's ``PR_SET_PDEATHSIG`` where it is available, else a daemon thread
    that looks every :data:`POLL_SECONDS` whether the parent is still there.
    """
    if not _set_death_signal():
        threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
    # A parent that died before the call: the child was handed to another process.
    if os.getppid() != parent:
        os._exit(1)


def _set_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)


def main(argv: list[str]) -> None:
    """``PARENT_PID MODULE ARGS...``: dies with the parent, then runs ``MODULE`` with ``ARGS``."""
    parent, module, *args = argv
    die_with_parent(int(parent))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
