"""Files written whole or not at all: the one write-then-rename helper every layer uses.

A writer that is killed half way leaves at most a hidden temporary file
(``.<name>.<random>``) beside the target, never a half-written target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


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
