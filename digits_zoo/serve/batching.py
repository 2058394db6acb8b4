"""Predictions of concurrent requests run as one call, as TensorFlow Serving's batching does.

A model call has a fixed cost (about 0.3 ms for a SavedModel signature, more
than a small network's arithmetic), so under load the server answers more
requests per second when the images of the requests that arrived together go
through one call. The batching here never waits for company: a request alone
is predicted at once, and only requests that arrived while the previous call
ran share the next one. Each request gets its own rows' answers back.

A SavedModel compiles its network once for every batch size it meets (its
network is an XLA program of fixed shape, about 70 ms to compile here), so its
calls are padded with blank rows to the next power of two, up to
``MAX_BATCH_ROWS`` rows a call (TensorFlow Serving's ``allowed_batch_sizes``):
eleven sizes in all, compiled once each by :func:`warm_up` before serving.
Rows do not affect one another, so padding changes no answer.

All of it runs on the server's event loop; the model call itself blocks the
loop for its duration, which is what keeps the next batch filling up.
"""

from __future__ import annotations

import asyncio

import numpy as np

from digits_zoo.ship.load import LoadedExport

# The most rows one call takes (a power of two); a bigger request is called in parts.
MAX_BATCH_ROWS = 1024


class Batcher:
    """Runs the predictions of one export for requests that arrive together as one call.

    Args:
        export: the loaded export.
        max_rows: the most rows merged into one call, a power of two.
    """

    def __init__(self, export: LoadedExport, max_rows: int = MAX_BATCH_ROWS) -> None:
        self.export = export
        self.max_rows = max_rows
        self._waiting: list[tuple[np.ndarray, asyncio.Future]] = []
        self._running = False
        # The loop keeps only a weak reference to a task.
        self._task: asyncio.Task | None = None

    async def predict_proba(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicts raw pixel rows, as :meth:`LoadedExport.predict_proba` does.

        Returns:
            ``(probabilities, classes)`` of these rows.
        """
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, future))
        if not self._running:
            self._running = True
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                # Requests whose handlers are ready to run add their rows first.
                await asyncio.sleep(0)
                batch = self._take()
                try:
                    probabilities, classes = predict_padded(
                        self.export, np.concatenate([rows for rows, _ in batch]), self.max_rows
                    )
                except Exception as error:  # A bug: every request of the call gets it (a 500).
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                start = 0
                for rows, future in batch:
                    stop = start + len(rows)
                    if not future.done():  # a client that went away cancels its future
                        future.set_result((probabilities[start:stop], classes[start:stop]))
                    start = stop
        finally:
            self._running = False

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The waiting requests, oldest first, up to ``max_rows`` rows (at least one request)."""
        count, rows = 0, 0
        for waiting_rows, _ in self._waiting:
            if count and rows + len(waiting_rows) > self.max_rows:
                break
            count += 1
            rows += len(waiting_rows)
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch


def padded_size(rows: int) -> int:
    """The batch size a call of ``rows`` rows is padded to: the next power of two."""
    return 1 << max(0, rows - 1).bit_length()


def predict_padded(
    export: LoadedExport, rows: np.ndarray, max_rows: int = MAX_BATCH_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`LoadedExport.predict_proba` in calls of at most ``max_rows`` rows.

    A SavedModel's calls are padded with blank rows to :func:`padded_size`, so
    that it meets few batch sizes; other formats are called with the rows as
    they are.
    """
    if export.format != "tf_saved_model":
        return export.predict_proba(rows)
    parts = []
    for start in range(0, len(rows), max_rows):
        part = rows[start : start + max_rows]
        padded = np.zeros((padded_size(len(part)), rows.shape[1]), dtype="float32")
        padded[: len(part)] = part
        probabilities, classes = export.predict_proba(padded)
        parts.append((probabilities[: len(part)], classes[: len(part)]))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p for p, _ in parts]), np.concatenate([c for _, c in parts])


def warm_up(export: LoadedExport, max_rows: int = MAX_BATCH_ROWS) -> None:
    """Calls a SavedModel once at every padded batch size, so no request waits for a compile."""
    if export.format != "tf_saved_model":
        return
    size = 1
    while size <= max_rows:
        export.predict_proba(np.zeros((size, export.n_features), dtype="float32"))
        size *= 2
