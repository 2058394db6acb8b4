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

The file is bounded and never followed elsewhere: it is opened with
``O_NOFOLLOW`` (a symbolic link is refused, before serving and on every
append), it may hold at most ``MAX_COLLECT_BYTES`` (32 MiB: about 200,000 rows
of the bundled digits, 18,000 of MNIST), and an append reads nothing of what
is already there: the row count is kept, and only when the file has changed
since this server's last row (another server's rows, an edit, a replacement)
are the changed bytes checked, up to the whole file (32 MiB at most). Bytes
that are not rows of this layout are refused, and nothing is appended after
them. A file that is removed, replaced by a folder, or changed into something
else while serving gets a 503 (and a full one 507) with the reason; the server
goes on serving.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from pathlib import Path

import numpy as np

from digits_zoo.serve.errors import CollectFull, CollectUnavailable
from zoo.errors import ZooError

# The default file's name, beside the export (or in the run directory).
COLLECTED = "collected.csv"

# The largest collect file appended to.
MAX_COLLECT_BYTES = 32 * 2**20

# Bytes a row of numbers may hold (blank lines and CRLF line ends are allowed, as --data reads them).
_NUMBER_BYTES = b"0123456789.,-+eE \t\r\n"

_CHUNK = 1 << 20


class _NotRows(Exception):
    """Bytes that are not rows of the layout: ``reason`` words it for a message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CollectFile:
    """A CSV that drawn digits are appended to, for one image format.

    Args:
        path: the CSV file; created on the first row.
        n_features: pixels per row (64 for the bundled digits).
        pixel_max: the largest raw pixel value (16 for the bundled digits).
        max_bytes: the size the file may reach.
    """

    def __init__(
        self,
        path: str | Path,
        n_features: int,
        pixel_max: float,
        max_bytes: int = MAX_COLLECT_BYTES,
    ) -> None:
        self.path = Path(path)
        self.n_features = int(n_features)
        self.pixel_max = float(pixel_max)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        # What this server last saw of the file: (device, inode, size, mtime), and its rows.
        self._seen: tuple[int, int, int, int] | None = None
        self._rows = 0

    @property
    def width(self) -> int:
        """Cells a row holds: the pixels, then the label."""
        return self.n_features + 1

    def check(self) -> None:
        """Checks, before serving, that rows can be appended here, and counts the rows there.

        Raises:
            ZooError: the folder is missing or not writable, the path is a link
                or not a file, the file is full, or it holds rows of another
                layout (another image size, or not a CSV).
        """
        folder = self.path.parent
        advice = "pass another --collect FILE"
        if not folder.is_dir():
            raise ZooError(
                f"the collect file's folder does not exist (got {str(folder)!r}); {advice}"
            )
        if self.path.is_symlink():
            raise ZooError(
                f"the collect file is a symbolic link (got {str(self.path)!r} -> "
                f"{os.readlink(self.path)!r}); rows are appended to a real file only: remove "
                f"the link, or {advice}"
            )
        if self.path.exists() and not self.path.is_file():
            raise ZooError(f"the collect file is not a file (got {str(self.path)!r}); {advice}")
        target = self.path if self.path.exists() else folder
        if not os.access(target, os.W_OK):
            raise ZooError(f"the collect file cannot be written (got {str(target)!r}); {advice}")
        if not self.path.exists():
            return
        descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(descriptor)
            if info.st_size > self.max_bytes:
                raise ZooError(
                    f"the collect file is full (got {str(self.path)!r}, {info.st_size:,} bytes; "
                    f"at most {self.max_bytes:,}); move it aside (a new one is started) or "
                    f"{advice}"
                )
            try:
                self._rows = self._count(descriptor, 0, info.st_size)
            except _NotRows as error:
                raise ZooError(
                    f"the collect file {str(self.path)!r} holds other data ({error.reason}); "
                    f"{advice}"
                ) from None
            self._seen = _identity(info)
        finally:
            os.close(descriptor)

    @property
    def rows(self) -> int:
        """The rows the file held when this server last looked (see :meth:`recount`)."""
        return self._rows

    def recount(self) -> int:
        """The rows the file holds now, counted again only where it changed since last looked.

        A file not there (yet) holds none.

        Raises:
            CollectUnavailable: it is not a file any more, or holds bytes that
                are not rows of this layout.
            CollectFull: it changed and is over ``max_bytes``.
        """
        with self._lock:
            try:
                descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                self._rows, self._seen = 0, None
                return 0
            except OSError as error:
                raise CollectUnavailable(self._cannot_open(error)) from None
            try:
                info = os.fstat(descriptor)
                if not stat.S_ISREG(info.st_mode):
                    raise CollectUnavailable(
                        f"the collect file {str(self.path)!r} is no longer a file; "
                        "move it aside (a new one is started) or restart with --collect FILE"
                    )
                self._rows = self._rows_now(descriptor, info)
                self._seen = _identity(info)
                return self._rows
            finally:
                os.close(descriptor)

    def append(self, pixels: np.ndarray, label: int) -> int:
        """Appends one row, whole, and returns how many rows the file holds now.

        Args:
            pixels: the digit's ``n_features`` raw pixels.
            label: its true class.

        Raises:
            ZooError: pixels of another size.
            CollectUnavailable: the file cannot be opened (removed with its
                folder, replaced by a folder or a link), it no longer holds
                rows of this layout, or it could not take the whole row
                (nothing of it is left there then).
            CollectFull: the row would take the file over ``max_bytes``.
        """
        pixels = np.asarray(pixels, dtype="float64").ravel()
        if pixels.size != self.n_features:
            raise ZooError(f"a collected row needs {self.n_features} pixels (got {pixels.size})")
        line = ",".join(_cell(value) for value in pixels) + f",{int(label)}\n"
        data = line.encode("ascii")
        with self._lock:
            try:
                descriptor = os.open(
                    self.path,
                    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                    0o644,
                )
            except OSError as error:
                raise CollectUnavailable(self._cannot_open(error)) from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                info = os.fstat(descriptor)
                if not stat.S_ISREG(info.st_mode):
                    raise CollectUnavailable(
                        f"the collect file {str(self.path)!r} is no longer a file; "
                        "move it aside (a new one is started) or restart with --collect FILE"
                    )
                size = info.st_size
                rows = self._rows_now(descriptor, info)
                if size and os.pread(descriptor, 1, size - 1) != b"\n":
                    # A last line without its end (an edit by hand) would swallow this row.
                    data = b"\n" + data
                if size + len(data) > self.max_bytes:
                    raise CollectFull(
                        f"the collect file is full (got {str(self.path)!r}, {size:,} bytes; at "
                        f"most {self.max_bytes:,}); move it aside (a new one is started) or "
                        "restart with another --collect FILE"
                    )
                try:
                    written = os.write(descriptor, data)
                    if written != len(data):
                        raise OSError(f"only {written} of {len(data)} bytes written")
                    os.fsync(descriptor)
                except OSError as error:
                    os.ftruncate(descriptor, size)
                    raise CollectUnavailable(
                        f"could not append to the collect file {str(self.path)!r} ({error}); "
                        "free some space or restart with another --collect FILE"
                    ) from None
                self._rows = rows + 1
                self._seen = _identity(os.fstat(descriptor))
                return self._rows
            finally:
                os.close(descriptor)

    def _rows_now(self, descriptor: int, info: os.stat_result) -> int:
        """The rows the open file holds: the kept count, or a count of what changed.

        Raises:
            CollectUnavailable: the file holds bytes that are not rows of this layout.
            CollectFull: it changed and is over ``max_bytes`` (too large to check).
        """
        seen = self._seen
        now = _identity(info)
        if seen == now:
            return self._rows
        if info.st_size > self.max_bytes:
            raise CollectFull(
                f"the collect file is full (got {str(self.path)!r}, {info.st_size:,} bytes; at "
                f"most {self.max_bytes:,}); move it aside (a new one is started) or restart "
                "with another --collect FILE"
            )
        same_file = seen is not None and seen[:2] == now[:2] and seen[2] <= now[2]
        start, rows = (seen[2], self._rows) if same_file else (0, 0)
        try:
            return rows + self._count(descriptor, start, info.st_size)
        except _NotRows as error:
            raise CollectUnavailable(
                f"the collect file {str(self.path)!r} was changed by something else and no "
                f"longer holds rows of {self.n_features} pixels then a label ({error.reason}); "
                "nothing was appended: move it aside (a new one is started) or restore it"
            ) from None

    def _count(self, descriptor: int, start: int, end: int) -> int:
        """Counts the rows between two offsets, checking each is a row of this layout.

        A row is a line of ``width`` comma-separated cells made of digits, signs,
        points and exponents; blank lines are skipped, and a last line without
        its end counts.

        Raises:
            _NotRows: a line that is not such a row.
        """
        rows = 0
        rest = b""
        offset = start
        number = 0
        while offset < end:
            chunk = os.pread(descriptor, min(_CHUNK, end - offset), offset)
            if not chunk:
                break
            offset += len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                number += 1
                rows += self._row(line, number, start)
        if rest:
            rows += self._row(rest, number + 1, start)
        return rows

    def _row(self, line: bytes, number: int, start: int) -> int:
        """1 for a row of this layout, 0 for a blank line.

        Raises:
            _NotRows: anything else.
        """
        if not line.strip():
            return 0
        where = f"line {number}" if start == 0 else f"line {number} after byte {start:,}"
        if line.translate(None, _NUMBER_BYTES):
            raise _NotRows(f"{where} is not numbers: {_shown(line)}")
        cells = line.split(b",")
        if len(cells) != self.width:
            raise _NotRows(
                f"{where} holds rows of {len(cells)} columns, but this model's rows have "
                f"{self.width} ({self.n_features} pixels then the label)"
            )
        if not all(cell.strip() for cell in cells):
            raise _NotRows(f"{where} has an empty cell: {_shown(line)}")
        return 1

    def _cannot_open(self, error: OSError) -> str:
        name = str(self.path)
        advice = "restart with --collect FILE"
        if error.errno == errno.ENOENT:
            return (
                f"the collect file's folder is gone (got {str(self.path.parent)!r}); create it "
                f"again or {advice}"
            )
        if error.errno == errno.EISDIR:
            return f"the collect file is now a folder (got {name!r}); move it aside or {advice}"
        if error.errno == errno.ELOOP:
            return (
                f"the collect file is now a symbolic link (got {name!r}); rows are appended to a "
                f"real file only: remove the link or {advice}"
            )
        return f"cannot open the collect file {name!r} ({error.strerror or error}); {advice}"


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _shown(line: bytes) -> str:
    text = line[:40].decode("ascii", "backslashreplace")
    return repr(text + ("..." if len(line) > 40 else ""))


def _cell(value: float) -> str:
    """A pixel as the dataset stores it: whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
