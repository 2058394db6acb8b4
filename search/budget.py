"""The search's time budget: no trial starts once the trials have used it, and a trial
still training when it runs out stops at its next epoch's end (and is not scored).

Several families searched under one budget (``--family all``) share it with
:func:`budget_shares` and :func:`carried_budget`.
"""

from __future__ import annotations

import time
from typing import Any

import keras

from zoo.families import DENSE

# The dense nets' share of a budget shared with the classic families (--family all).
DENSE_SHARE = 0.8


class OverBudget(RuntimeError):
    """A trial was still training when the search's time budget ran out."""


class StopAtDeadline(keras.callbacks.Callback):
    """Stops a fit at the end of the first epoch past ``deadline`` (``time.monotonic``)."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_epoch_end(self, epoch, logs=None) -> None:
        if getattr(self.model, "stop_training", False):
            # Stopped at this epoch anyway (the median rule): a finished, scored fit.
            return
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


def budget_shares(total_minutes: float, families: list[str]) -> dict[str, float]:
    """How one budget is shared among families searched one after another.

    The dense nets get four fifths (:data:`DENSE_SHARE`) and the classic
    families split the last fifth equally; without the dense nets, the classic
    families split it all. A classic family's space has two to four
    hyperparameters and most of its trials take seconds, so a Bayesian search
    settles in a few dozen trials; the dense space has twelve, and a trial
    takes a minute or more. Of the benchmark's 24 minutes of search, that is
    4.8 for the six classic families (48 s each, plus what the ones before
    left) and at least 19.2 for the networks.

    Returns:
        Each family's share in minutes, by name.
    """
    classic = [family for family in families if family != DENSE]
    if DENSE not in families:
        return {family: total_minutes / len(classic) for family in classic}
    if not classic:
        return {DENSE: total_minutes}
    shares = {family: total_minutes * (1 - DENSE_SHARE) / len(classic) for family in classic}
    shares[DENSE] = total_minutes * DENSE_SHARE
    return shares


def carried_budget(shares: list[float], spent_before: float) -> float:
    """The budget of the next family in a sequential search, in minutes.

    Its own share plus whatever the families before it left unspent: the
    families searched so far may together spend the sum of their shares. Read
    from the trial records, so a resumed run gives every family the same
    budget as an uninterrupted one.

    Args:
        shares: the shares of the families before it and its own, in order.
        spent_before: the minutes the families before it have spent.
    """
    return sum(shares) - spent_before
