"""Greedy ensemble selection (Caruana et al., 2004): which models to average, and how much.

The candidates are models scored by cross-validation on the same folds, each
given as its out-of-fold probabilities: row ``i`` predicted by the fold model
that never trained on row ``i``. Selection starts from the best single
candidate and then, round after round, adds (with replacement) the candidate
that most improves the score of the weighted mean of the chosen probabilities.
It keeps the best-scoring prefix of the rounds, so the ensemble it returns
never scores below its best member on these folds. A candidate chosen ``k``
times out of ``n`` kept rounds gets weight ``k / n``.

The score is the leaderboard's: the mean over folds of each fold's accuracy.
Ties are broken by the log-loss of the mean probabilities, then by candidate
order. Pure numpy; the folds are the run's ``(train_index, val_index)`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import ZooError
from zoo.validation import check_integer

# The rounds of AutoGluon's WeightedEnsemble (its ``ensemble_size``).
DEFAULT_ROUNDS = 25
# Probabilities are clipped here before the log of the log-loss.
_EPSILON = 1e-15


@dataclass(frozen=True)
class Selection:
    """What greedy selection chose.

    Attributes:
        members: the chosen candidates' indices, distinct, in the order first chosen.
        weights: each member's weight (times chosen / rounds kept); they sum to 1.
        cv_scores: the weighted ensemble's accuracy on each fold's validation rows.
        rounds: the rounds kept (the best-scoring prefix of the rounds run).
        log_loss: the weighted ensemble's out-of-fold log-loss.
    """

    members: tuple[int, ...]
    weights: tuple[float, ...]
    cv_scores: tuple[float, ...]
    rounds: int
    log_loss: float

    @property
    def cv_accuracy_mean(self) -> float:
        """The mean of the per-fold accuracies (the leaderboard's CV score)."""
        return float(np.mean(self.cv_scores))


def greedy_selection(
    probabilities: Sequence[np.ndarray],
    y: np.ndarray,
    classes: Sequence,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    rounds: int = DEFAULT_ROUNDS,
) -> Selection:
    """Selects a weighted ensemble of candidates greedily, with replacement.

    Args:
        probabilities: one out-of-fold probability matrix per candidate,
            ``(n_samples, n_classes)``, columns in ``classes`` order.
        y: the true labels of the rows.
        classes: the class labels, in column order.
        folds: the ``(train_index, val_index)`` pairs the probabilities were
            predicted on; each row in one validation part.
        rounds: the rounds of selection (at least 1); the first picks the
            best single candidate.

    Returns:
        The best-scoring prefix of the rounds, as a :class:`Selection`.

    Raises:
        ZooError: no candidate, shapes that disagree, a label not in
            ``classes``, folds that do not cover every row once, or a bad
            ``rounds``.
    """
    check_integer("rounds", rounds, 1)
    candidates, targets, row_weights = _checked(probabilities, y, classes, folds)
    rows = np.arange(len(targets))
    # Each candidate's true-class probabilities: the log-loss of any mean needs only these.
    true_class = [matrix[rows, targets] for matrix in candidates]

    total = np.zeros(candidates[0].shape, dtype=np.float64)
    true_total = np.zeros(len(targets), dtype=np.float64)
    chosen: list[int] = []
    history: list[tuple[float, float]] = []
    for step in range(1, rounds + 1):
        keys = []
        for index, candidate in enumerate(candidates):
            mean = (total + candidate) / step
            score = float(row_weights @ (mean.argmax(axis=1) == targets))
            keys.append((-score, _log_loss((true_total + true_class[index]) / step), index))
        negative_score, loss, picked = min(keys)
        chosen.append(picked)
        total += candidates[picked]
        true_total += true_class[picked]
        history.append((-negative_score, loss))
    # The best prefix: highest score, then lowest log-loss, then the shortest.
    kept = min(range(len(history)), key=lambda i: (-history[i][0], history[i][1], i)) + 1
    members = tuple(dict.fromkeys(chosen[:kept]))
    counts = [chosen[:kept].count(member) for member in members]
    weights = tuple(count / kept for count in counts)
    mean = weighted_mean([candidates[member] for member in members], weights)
    correct = mean.argmax(axis=1) == targets
    cv_scores = tuple(float(np.mean(correct[val])) for _, val in folds)
    return Selection(members, weights, cv_scores, kept, history[kept - 1][1])


def weighted_mean(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted mean of several probability matrices (weights normalised to sum 1)."""
    return np.average(np.asarray(probabilities, dtype=np.float64), axis=0, weights=weights)


def fold_accuracies(
    probabilities: np.ndarray,
    y: np.ndarray,
    classes: Sequence,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[float]:
    """The accuracy of ``probabilities``' most likely class on each fold's validation rows."""
    predicted = np.asarray(classes)[np.asarray(probabilities).argmax(axis=1)]
    return [float(np.mean(predicted[val] == np.asarray(y)[val])) for _, val in folds]


def _log_loss(true_class_probability: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(true_class_probability, _EPSILON, 1.0))))


def _checked(
    probabilities: Sequence[np.ndarray],
    y: np.ndarray,
    classes: Sequence,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Checks the candidates, maps labels to columns, and weighs each row for the fold mean."""
    if len(probabilities) == 0:
        raise ZooError("greedy selection needs at least one candidate (got none)")
    y = np.asarray(y)
    classes = np.asarray(classes)
    expected = (len(y), len(classes))
    for index, matrix in enumerate(probabilities):
        shape = np.shape(matrix)
        if shape != expected:
            raise ZooError(
                f"candidate {index}'s out-of-fold probabilities have shape {shape}, expected "
                f"{expected} (rows, classes)"
            )
    candidates = [np.asarray(matrix) for matrix in probabilities]
    if not all(np.isfinite(matrix).all() for matrix in candidates):
        raise ZooError("out-of-fold probabilities must be finite (got NaN or infinity)")
    column = {label: index for index, label in enumerate(classes.tolist())}
    unknown = sorted({label for label in y.tolist() if label not in column}, key=str)
    if unknown:
        raise ZooError(f"y holds labels not in classes (got {unknown[:5]})")
    targets = np.asarray([column[label] for label in y.tolist()], dtype=np.int64)
    # Each row weighs 1 / (folds * its fold's size): the weighted accuracy is the
    # mean of the per-fold accuracies, the leaderboard's CV score.
    row_weights = np.zeros(len(y), dtype=np.float64)
    seen = np.zeros(len(y), dtype=np.int64)
    for _, val in folds:
        val = np.asarray(val)
        if len(val) == 0:
            raise ZooError("a fold has no validation rows (got an empty one)")
        row_weights[val] = 1.0 / (len(folds) * len(val))
        seen[val] += 1
    if len(folds) == 0 or not (seen == 1).all():
        raise ZooError(
            f"the folds' validation parts must cover every row exactly once (got "
            f"{int((seen == 0).sum())} rows uncovered, {int((seen > 1).sum())} repeated)"
        )
    return candidates, targets, row_weights
