"""The search's time budget: no trial starts once the trials have used it, and a trial
still training when it runs out stops at its next epoch's end (and is not scored).

Several families searched under one budget (``--family all``) share it with
:func:`budget_shares` and :func:`carried_budget`.

Under a budget, a dense trial's cost is estimated before it starts
(:func:`expected_seconds`, from the finished trials' records) and a proposal
that would take more than :data:`COST_FRACTION` of the budget still left
(:func:`overruns`) is replaced by the oracle (``search.oracles``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import keras

from zoo.augment import n_copies
from zoo.errors import ZooError
from zoo.families import DENSE
from zoo.network import CONV_KERNEL, conv_stem, stem_output_dim
from zoo.space import DenseConfig

# The dense nets' share of a budget shared with the classic families (--family all).
DENSE_SHARE = 0.8
# A proposal expected to take more than this share of the budget still left is replaced
# (search.oracles). A third leaves room for two more trials of its cost after it, so
# the search still has trials to learn from and to pick among; a trial that does not fit
# what is left is stopped by the budget unscored, all its time lost. In the measured
# 4-minute demo one 2x1024 trial took 2m47s (70% of the budget) and lost to a 1x256.
COST_FRACTION = 1 / 3
# Finished trials needed before any cost estimate: one would say nothing of the spread.
MIN_COSTED_TRIALS = 2


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


def cost_shape(config: DenseConfig) -> tuple[int, ...]:
    """What sets a dense trial's cost: convolutional stem, layers, units, batch size and
    copies of each row."""
    return (
        config.conv_filters,
        config.n_layers,
        config.units,
        config.batch_size,
        n_copies(config.augment),
    )


def training_work(config: DenseConfig, input_dim: int, n_classes: int, epochs: int) -> float:
    """A dense trial's work in parameter-epochs: weights x copies of each row x epochs.

    A convolution's weights count once per pixel they slide over, as its
    multiply-adds do.
    """
    width = int(input_dim)
    parameters = 0
    if config.conv_filters:
        parameters = sum(
            (CONV_KERNEL * CONV_KERNEL * c.channels + 1) * c.filters * c.side * c.side
            for c in conv_stem(config.conv_filters, input_dim)
        )
        width = stem_output_dim(config.conv_filters, input_dim)
    widths = [width, *([config.units] * config.n_layers), int(n_classes)]
    parameters += sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return float(parameters * n_copies(config.augment) * int(epochs))


def expected_seconds(
    config: DenseConfig,
    epochs: int,
    records: Sequence[dict[str, Any]],
    input_dim: int,
    n_classes: int,
) -> float | None:
    """The seconds a dense trial of ``config`` is expected to take, from the finished trials.

    Each completed trial's record gives its seconds per epoch trained (a trial
    stopped early trained fewer). The estimate is the mean of those of the
    trials of the same :func:`cost_shape`, times ``epochs``; without one, the
    seconds per parameter-epoch over all of them (:func:`training_work`),
    times the trial's work.

    Args:
        config: the proposed configuration.
        epochs: the epochs it would train.
        records: the search's trial records (``search.records.trial_records``).
        input_dim: features per image.
        n_classes: number of classes.

    Returns:
        The expected seconds, or ``None`` before :data:`MIN_COSTED_TRIALS`
        trials have completed.
    """
    costed = []
    for record in records:
        trained = int(record.get("epochs_run") or record.get("epochs") or 0)
        seconds = float(record.get("seconds") or 0.0)
        if record.get("status") != "COMPLETED" or trained < 1 or seconds <= 0:
            continue
        try:
            costed.append((DenseConfig.from_dict(record.get("config") or {}), seconds, trained))
        except ZooError:
            continue  # a record of another space's version: no estimate from it
    if len(costed) < MIN_COSTED_TRIALS:
        return None
    shape = cost_shape(config)
    same = [seconds / trained for done, seconds, trained in costed if cost_shape(done) == shape]
    if same:
        return sum(same) / len(same) * int(epochs)
    work = sum(training_work(done, input_dim, n_classes, trained) for done, _, trained in costed)
    per_work = sum(seconds for _, seconds, _ in costed) / work
    return per_work * training_work(config, input_dim, n_classes, epochs)


def overruns(
    expected: float | None,
    budget_minutes: float | None,
    records: Sequence[dict[str, Any]],
    fraction: float = COST_FRACTION,
) -> bool:
    """Whether a trial expected to take ``expected`` seconds takes too much of the budget left.

    ``False`` without a budget or an estimate.
    """
    if expected is None or budget_minutes is None:
        return False
    return expected > fraction * remaining_seconds(budget_minutes, list(records))
