"""Collecting drawn digits: rows appended to a CSV in the optdigits layout.

Each row is the digit as the dataset stores it (the picture converted by
:func:`digits_zoo.ship.inputs.image_to_pixels`: 64 counts ``0..16`` for the
bundled digits, 784 grey levels ``0..255`` for MNIST) and then its true label,
with no header: the layout ``--data FILE.csv`` reads, so ``digits-zoo evaluate
EXPORT --data collected.csv`` and ``digits-zoo search --data collected.csv``
take the file as it is.

A row is written whole or not at all. The file is opened for appending and
locked (``fcntl.flock``, so two servers on one file take turns), the row goes
out in one ``os.write``, a short write is cut back off, and ``fsync`` puts it on
disk before the request is answered. A process killed mid-way leaves the file
as it was before that row or with the whole row.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import numpy as np

from zoo.data import read_number_rows
from zoo.errors import DataError, ZooError

# The default file's name, beside the export (or in the run directory).
COLLECTED = "collected.csv"


class CollectFile:
    """A CSV that drawn digits are appended to, for one image format.

    Args:
        path: the CSV file; created on the first row.
        n_features: pixels per row (64 for the bundled digits).
        pixel_max: the largest raw pixel value (16 for the bundled digits).
    """

    def __init__(self, path: str | Path, n_features: int, pixel_max: float) -> None:
        self.path = Path(path)
        self.n_features = int(n_features)
        self.pixel_max = float(pixel_max)
        self._lock = threading.Lock()

    def check(self) -> None:
        """Checks, before serving, that rows can be appended here.

        Raises:
            ZooError: the folder is missing or not writable, or the file holds
                rows of another layout (another image size, or not a CSV).
        """
        folder = self.path.parent
        advice = "pass another --collect FILE"
        if not folder.is_dir():
            raise ZooError(
                f"the collect file's folder does not exist (got {str(folder)!r}); {advice}"
            )
        if self.path.exists() and not self.path.is_file():
            raise ZooError(f"the collect file is not a file (got {str(self.path)!r}); {advice}")
        target = self.path if self.path.exists() else folder
        if not os.access(target, os.W_OK):
            raise ZooError(f"the collect file cannot be written (got {str(target)!r}); {advice}")
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        width = self.n_features + 1
        try:
            columns = read_number_rows(self.path, layout=f"{self.n_features} pixels then a label")
        except DataError as error:
            raise ZooError(f"the collect file holds other data: {error}; {advice}") from None
        if columns.shape[1] != width:
            raise ZooError(
                f"the collect file {str(self.path)!r} holds rows of {columns.shape[1]} columns, but "
                f"this model's rows have {width} ({self.n_features} pixels then the label); {advice}"
            )

    def append(self, pixels: np.ndarray, label: int) -> int:
        """Appends one row, whole, and returns how many rows the file holds now.

        Args:
            pixels: the digit's ``n_features`` raw pixels.
            label: its true class.

        Raises:
            ZooError: pixels of another size; the file could not take the whole row
                (nothing of it is left there then).
        """
        pixels = np.asarray(pixels, dtype="float64").ravel()
        if pixels.size != self.n_features:
            raise ZooError(f"a collected row needs {self.n_features} pixels (got {pixels.size})")
        line = ",".join(_cell(value) for value in pixels) + f",{int(label)}\n"
        data = line.encode("ascii")
        with self._lock:
            descriptor = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                size = os.fstat(descriptor).st_size
                if size and os.pread(descriptor, 1, size - 1) != b"\n":
                    # A last line without its end (an edit by hand) would swallow this row.
                    data = b"\n" + data
                try:
                    written = os.write(descriptor, data)
                    if written != len(data):
                        raise OSError(f"only {written} of {len(data)} bytes written")
                    os.fsync(descriptor)
                except OSError as error:
                    os.ftruncate(descriptor, size)
                    raise ZooError(
                        f"could not append to the collect file {str(self.path)!r} ({error}); "
                        "free some space or pass another --collect FILE"
                    ) from None
                return _count_rows(descriptor, size + len(data))
            finally:
                os.close(descriptor)


def _cell(value: float) -> str:
    """A pixel as the dataset stores it: whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _count_rows(descriptor: int, size: int) -> int:
    rows = 0
    offset = 0
    while offset < size:
        chunk = os.pread(descriptor, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        rows += chunk.count(b"\n")
        offset += len(chunk)
    return rows
