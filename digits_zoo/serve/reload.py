"""Hot reload: a newer version written into a served base folder is served without a restart.

TensorFlow Serving polls each model's base path every
``--file_system_poll_wait_seconds`` (1 s by default) and, under its default
version policy (``latest``, one version), loads the highest version it finds,
then unloads the one it replaces. ``digits-zoo serve`` polls the base folders
it serves every ``--poll-seconds`` (``DEFAULT_POLL_SECONDS``; 0: never). When
a version numbered above the newest one appears, it is loaded in full, away
from the event loop, as the versions were at start: every file checked
(:func:`digits_zoo.ship.load.load_export`), its signature read, a SavedModel
called once at every batch size (:func:`digits_zoo.serve.batching.warm_up`).
Only then is it added (:meth:`ServedModel.add_version`), and requests without a
version get it. The versions served before stay served, as every version found
at start is: a client that names one keeps getting it.

A version that fails to load is told in one line and reported in the model's
status as TensorFlow Serving reports one (state ``END``, with the error); the
newest version that loaded keeps serving. It is tried again only when its
folder changes (a copy that was still being written, then finished). Versions
below the newest, and versions removed from disk, change nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from digits_zoo.serve.batching import warm_up
from digits_zoo.serve.models import ServedModel
from digits_zoo.serve.tfserving import signature_def
from digits_zoo.ship.layout import version_folders
from digits_zoo.ship.load import load_export

DEFAULT_POLL_SECONDS = 2.0

# A folder's files as (path, size, modification time): a failed version is retried when they change.
Fingerprint = tuple[tuple[str, int, int], ...]


class VersionPoller:
    """Watches the served base folders for newer versions and serves them once loaded.

    Args:
        models: the served models; those with a base folder are watched.
        progress: receives one line per version loaded.
        warn: receives one line per version that failed to load.
    """

    def __init__(
        self,
        models: dict[str, ServedModel],
        progress: Callable[[str], None] = print,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.models = models
        self.progress = progress
        self.warn = warn
        self._failed: dict[tuple[str, int], Fingerprint] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[tuple[str, int]]:
        """Looks once for a newer version of every watched model, and serves each that loads.

        Returns:
            ``(model, version)`` of each version served now.
        """
        served = []
        for model in self.models.values():
            if model.base is None:
                continue
            found = version_folders(model.base)
            if not found:
                continue
            number, folder = found[-1]
            if number <= model.newest:
                continue
            fingerprint = _fingerprint(folder)
            if self._failed.get((model.name, number)) == fingerprint:
                continue
            try:
                export = load_export(folder)
                signature = signature_def(export)
                warm_up(export)
            except Exception as error:  # Whatever it is, the version serving now goes on.
                self._failed[model.name, number] = fingerprint
                reason = " ".join(str(error).split()) or error.__class__.__name__
                model.failed = {**model.failed, number: reason}
                self.warn(
                    f"{model.name}: version {number} not loaded, version {model.newest} still "
                    f"serving: {reason}"
                )
                continue
            self._failed.pop((model.name, number), None)
            model.add_version(number, export, signature)
            served.append((model.name, number))
            self.progress(f"{model.name}: serving version {number} ({folder})")
        return served

    def start(self, seconds: float) -> None:
        """Polls every ``seconds`` on a daemon thread until :meth:`stop`; 0 or less: never."""
        if seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(seconds,), name="version-poller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops polling (a version being loaded is finished first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.poll()
            except Exception as error:  # A folder gone or unreadable: try again next time.
                self.warn(f"looking for new versions failed ({error}); trying again")


def _fingerprint(folder: Path) -> Fingerprint:
    files = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            files.append((os.path.relpath(path, folder), info.st_size, info.st_mtime_ns))
    return tuple(sorted(files))
