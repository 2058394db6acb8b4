"""The search's time budget: no trial starts once the trials have used it, and a trial
still training when it runs out stops at its next epoch's end (and is not scored)."""

from __future__ import annotations

import time
from typing import Any

import keras


class OverBudget(RuntimeError):
    """A trial was still training when the search's time budget ran out."""


class StopAtDeadline(keras.callbacks.Callback):
    """Stops a fit at the end of the first epoch past ``deadline`` (``time.monotonic``)."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_epoch_end(self, epoch, logs=None) -> None:
        if time.monotonic() > self.deadline:
            raise OverBudget(f"after epoch {epoch + 1}")


def spent_seconds(records: list[dict[str, Any]]) -> float:
    """The wall seconds a search's trials have spent, from their records.

    A trial's share (``wall_seconds``) runs from the end of the trial before
    it, so the oracle's proposals count too; trials recorded without it count
    their training time (``seconds``).
    """
    return sum(float(r.get("wall_seconds") or r.get("seconds") or 0.0) for r in records)


def remaining_seconds(budget_minutes: float, records: list[dict[str, Any]]) -> float:
    """Seconds of the budget the recorded trials have left (negative once over)."""
    return budget_minutes * 60 - spent_seconds(records)
