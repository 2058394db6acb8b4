"""The median stopping rule: a dense trial stops once it trails the finished trials.

After each epoch a trial's best fold-mean validation accuracy so far is
compared with the median of the fully trained trials' fold-mean validation
accuracy at the same epoch (Golovin et al., 2017, Google Vizier; Optuna's
``MedianPruner``). A trial below that median stops, and is scored and recorded
like any other trial (``stopped_early`` in its record), so the tuner still
learns from it. Trials that were themselves stopped are not part of the median.

The rule waits for a warm-up (:func:`warmup_epochs`), since every curve is
noisy and close to the others in its first epochs, and for at least
:data:`MIN_COMPLETED` finished trials that reached the epoch, so the first
trials of a search always train in full.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

MIN_COMPLETED = 3
WARMUP_EPOCHS = 3
WARMUP_FRACTION = 0.25


def warmup_epochs(total_epochs: int) -> int:
    """Epochs a trial always trains: 3, or a quarter of its epochs if that is more."""
    return max(WARMUP_EPOCHS, math.ceil(WARMUP_FRACTION * int(total_epochs)))


def fold_mean_curve(histories: Sequence[dict[str, list[float]]]) -> list[float]:
    """The mean over folds of the validation accuracy after each epoch (``[]`` without one)."""
    curves = [list(h["val_accuracy"]) for h in histories if h.get("val_accuracy")]
    if not curves:
        return []
    length = min(len(curve) for curve in curves)
    return [float(np.mean([curve[epoch] for curve in curves])) for epoch in range(length)]


def should_stop(
    curve: Sequence[float],
    completed_curves: Sequence[Sequence[float]],
    total_epochs: int,
    min_completed: int = MIN_COMPLETED,
) -> bool:
    """Whether a trial whose fold-mean curve is ``curve`` so far stops now.

    Args:
        curve: the trial's fold-mean validation accuracy after each epoch so far.
        completed_curves: the fold-mean curves of the fully trained trials.
        total_epochs: the epochs the trial would train in full.
        min_completed: how many completed trials must have reached this epoch.

    Returns:
        ``True`` when, past the warm-up and before its last epoch, the trial's
        best value so far is below the median of the completed trials' values
        at this epoch.
    """
    epoch = len(curve)
    if epoch < warmup_epochs(total_epochs) or epoch >= total_epochs:
        return False
    reached = [float(other[epoch - 1]) for other in completed_curves if len(other) >= epoch]
    if len(reached) < min_completed:
        return False
    return max(curve) < float(np.median(reached))


def completed_curves(records: Sequence[dict[str, Any]], epochs: int) -> list[list[float]]:
    """The fold-mean curves of the recorded trials trained in full for ``epochs`` epochs."""
    curves = []
    for record in records:
        if record.get("status") != "COMPLETED" or record.get("stopped_early"):
            continue
        if record.get("epochs") != epochs:
            continue
        curve = fold_mean_curve(record.get("histories") or [])
        if curve:
            curves.append(curve)
    return curves


class MedianStopping(keras.callbacks.Callback):
    """Stops a fold-stacked fit once :func:`should_stop` says so.

    Its epoch logs hold one ``val_accuracy`` per fold (a scalar for one fold).

    Args:
        completed: the fold-mean curves of the fully trained trials.
        total_epochs: the epochs of the fit.
    """

    def __init__(self, completed: Sequence[Sequence[float]], total_epochs: int):
        super().__init__()
        self.completed = [list(curve) for curve in completed]
        self.total_epochs = int(total_epochs)
        self.curve: list[float] = []
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        value = (logs or {}).get("val_accuracy")
        if value is None:
            return
        self.curve.append(float(np.mean(np.atleast_1d(np.asarray(value, dtype="float64")))))
        if should_stop(self.curve, self.completed, self.total_epochs):
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
