"""Files the tool writes and reads back: the one write-then-rename helper every layer uses,
the one reader of the JSON files it wrote, and the one OS file lock.

A writer that is killed half way leaves at most a hidden temporary file
(``.<name>.<random>.tmp``) beside the target, never a half-written target. A
rename replaces a symbolic link at the target instead of writing through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from zoo.errors import ZooError


def atomic_write(path: str | Path, write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """Writes ``path`` through a temporary file in its folder and a rename.

    Args:
        path: the file to write; its folder is created if missing.
        write: called with the open temporary file; writes the content.
        binary: open the temporary file in binary mode.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if binary:
            stream = os.fdopen(handle, "wb")
        else:
            stream = os.fdopen(handle, "w", encoding="utf-8", newline="")
        with stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes text (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda stream: stream.write(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes bytes to ``path`` atomically."""
    return atomic_write(path, lambda stream: stream.write(data), binary=True)


def write_array(path: str | Path, array: np.ndarray) -> Path:
    """Writes one numpy array as an ``.npy`` file (atomically, like :func:`atomic_write`)."""
    return atomic_write(path, lambda stream: np.save(stream, array), binary=True)


# The .npy header readers of the format versions numpy writes for plain arrays.
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def npy_header(handle) -> tuple[tuple[int, int], tuple[int, ...], np.dtype | None, int]:
    """Reads an open ``.npy`` file's header, without reading its data or unpickling anything.

    Returns:
        ``(version, shape, dtype, promised)``: the format version, the array's
        shape and dtype, and the file size the header promises (header plus
        data). ``dtype`` is ``None`` (and shape empty, promised 0) for a
        format version other than 1.0 and 2.0, which numpy writes for named fields.

    Raises:
        ValueError, EOFError: no ``.npy`` header.
    """
    version = np.lib.format.read_magic(handle)
    read = _NPY_HEADERS.get(version)
    if read is None:
        return version, (), None, 0
    shape, _, dtype = read(handle)
    # Python integers: a product of the header's sizes cannot overflow.
    return version, shape, dtype, handle.tell() + math.prod(shape) * dtype.itemsize


def read_array(path: str | Path, what: str = "array file") -> np.ndarray | None:
    """Reads an ``.npy`` file written by :func:`write_array`; ``None`` if there is none.

    The header is checked against the file's length before any data are read
    (a header that promises more than the file holds allocates nothing), and
    nothing is unpickled.

    Args:
        path: the file.
        what: what the file holds, for the message ("out-of-fold probabilities", ...).

    Raises:
        ZooError: the file exists but is empty, cut short, longer than its
            header says, not a ``.npy`` file or an object array.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise _Damaged("0 bytes")
            try:
                version, shape, dtype, promised = npy_header(handle)
            except (ValueError, EOFError) as error:
                raise _Damaged(f"no .npy header: {_first_line(error)}") from None
            if dtype is None:
                raise _Damaged(
                    f".npy format {version[0]}.{version[1]}, which write_array never writes"
                )
            if dtype.hasobject:
                raise _Damaged(f"dtype {dtype}, which only unpickling could read")
            if size != promised:
                raise _Damaged(
                    f"{size} bytes; its header promises {promised} for shape {list(shape)} "
                    f"of {dtype}"
                )
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    except (_Damaged, OSError, ValueError, EOFError) as error:
        reason = str(error) if isinstance(error, _Damaged) else _first_line(error)
        raise ZooError(
            f"damaged {what} ({reason}) (got {str(path)!r}); delete the file and rerun"
        ) from None


class _Damaged(Exception):
    """What is wrong with a file, raised and caught inside this module."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:200]


def read_json(path: str | Path, what: str) -> Any:
    """Reads a JSON file the tool wrote; a damaged one is a one-line error.

    Args:
        path: the file.
        what: what the file holds, for the message ("trial record", ...).

    Raises:
        ZooError: the file cannot be read or is not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = error.__class__.__name__ if isinstance(error, OSError) else "not valid JSON"
        raise ZooError(
            f"damaged {what} ({reason}) (got {str(path)!r}); restore or delete the file and rerun"
        ) from None


class Locked(ZooError):
    """Another process holds the lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, message: str, holder: dict[str, Any]):
        super().__init__(message)
        self.holder = holder


# Folders this process holds locked: resolved path -> [file descriptor, depth]. A
# lock is re-entrant within one process (a command holding its run's lock calls
# library functions that take it too) and exclusive across processes.
_HELD: dict[str, list[int]] = {}
HOLDER_FILE = ".lock-holder"
# How long a refused process waits for the lock's holder to write its name (it does so
# within milliseconds of taking the lock) before saying that the holder is just starting.
HOLDER_WAIT_SECONDS = 2.0


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, wait: bool, what: str) -> Iterator[None]:
    """Holds an OS lock (``fcntl.flock``) on a folder for the block.

    The lock is on the folder itself, so it needs no lock file and survives
    files being replaced inside; while it is held, ``.lock-holder`` in the
    folder names the holding process (for the other one's message).

    Args:
        folder: the folder (created if missing).
        wait: block until the other holder is done; otherwise refuse at once.
        what: what the folder is, for the refusal message.

    Raises:
        Locked: ``wait`` is false and another process holds the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder_of(folder, descriptor)
            if holder is not None:
                if holder:
                    described = f"another digits-zoo process (pid {holder['pid']}: "
                    described += f"{holder.get('command', '?')})"
                else:
                    described = "another digits-zoo process that is just starting (it has "
                    described += f"not written its name in {HOLDER_WAIT_SECONDS:g} s)"
                raise Locked(
                    f"{what} is in use by {described} (got {str(folder)!r}); wait for it "
                    "to finish, or use another folder",
                    holder,
                ) from None
        holder = {"pid": os.getpid(), "command": " ".join(sys.argv)[:300]}
        _HELD[key] = [descriptor, 1]
        try:
            if not wait:
                atomic_write_text(folder / HOLDER_FILE, json.dumps(holder) + "\n")
            yield
        finally:
            del _HELD[key]
            if not wait:
                (folder / HOLDER_FILE).unlink(missing_ok=True)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _holder_of(folder: Path, descriptor: int) -> dict[str, Any] | None:
    """The process holding a folder's lock, as it named itself; ``None`` if the lock came free.

    A process names itself in ``.lock-holder`` just after it takes the lock,
    so for a moment after that the file is missing, or still the one a killed
    holder left behind. A record whose process is gone is not the holder's:
    this waits up to :data:`HOLDER_WAIT_SECONDS` for a living one, taking the
    lock if it comes free meanwhile. ``{}``: none named itself in that time.
    """
    deadline = time.monotonic() + HOLDER_WAIT_SECONDS
    while True:
        holder = _read_holder(folder / HOLDER_FILE)
        if _is_running(holder.get("pid")):
            return holder
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return {}
            time.sleep(0.02)
        else:
            return None


def _is_running(pid: Any) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
