"""Confidence you can trust: calibration error and temperature scaling.

Temperature scaling (Guo et al., 2017, "On calibration of modern neural
networks") divides a model's logits by one number ``T`` fitted to minimise the
negative log-likelihood of held-out predictions. Here the logits are the logs
of the model's probabilities (softmax is unchanged by a constant added to the
logits, so ``log(p)`` is a valid set of logits for ``p``), and the held-out
predictions are out-of-fold ones, so no row is scored by a model that trained
on it. ``T > 0`` keeps every row's most probable class: accuracy never
changes, only how sure the model says it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from zoo.errors import ZooError

# The range searched for the temperature; outside it a model is degenerate
# (every probability 0 or 1, or all equal), not miscalibrated.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
# Probabilities are clipped here before their log is taken (a network's softmax can return 0).
_FLOOR = 1e-12


def _check(probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Returns each row's column of its true class; checks the shapes."""
    probabilities = np.asarray(probabilities)
    classes = np.asarray(classes)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ZooError(
            f"probabilities must be [n, {len(classes)}] (one column per class) "
            f"(got shape {probabilities.shape})"
        )
    if len(y) != len(probabilities):
        raise ZooError(
            f"labels and probabilities must have the same rows (got {len(y)} labels, "
            f"{len(probabilities)} rows)"
        )
    position = {label: index for index, label in enumerate(classes.tolist())}
    try:
        return np.asarray([position[label] for label in np.asarray(y).tolist()], dtype=int)
    except KeyError as error:
        raise ZooError(
            f"label {error.args[0]} is not among the classes {classes.tolist()}"
        ) from None


def expected_calibration_error(
    probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray, bins: int = 15
) -> float:
    """The expected calibration error of the most probable class (Guo et al., 2017).

    Rows are put in ``bins`` equal-width bins of their largest probability
    (``(0, 1/bins]``, ..., ``((bins-1)/bins, 1]``); the error is the mean, over
    bins weighted by their share of rows, of ``|accuracy - mean confidence|``.

    Args:
        probabilities: ``[n, n_classes]``, columns in ``classes`` order.
        y: the true labels.
        classes: the class labels of the columns.
        bins: how many bins.

    Returns:
        The error, from 0 (confidence matches accuracy in every bin) to 1.
    """
    truth = _check(probabilities, y, classes)
    probabilities = np.asarray(probabilities, dtype="float64")
    if not len(probabilities):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of 0 joins the first.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            error += gap * members.sum() / len(probabilities)
    return float(error)


def reliability_curve(
    probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray, bins: int = 15
) -> dict[str, np.ndarray]:
    """The reliability diagram's data: per bin, its rows, mean confidence and accuracy.

    Returns:
        ``edges`` (``bins + 1``), ``count``, ``confidence`` and ``accuracy``
        (``nan`` in empty bins).
    """
    truth = _check(probabilities, y, classes)
    probabilities = np.asarray(probabilities, dtype="float64")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        accuracy = np.bincount(index, correct.astype(float), minlength=bins) / count
    return {
        "edges": np.linspace(0.0, 1.0, bins + 1),
        "count": count,
        "confidence": mean_confidence,
        "accuracy": accuracy,
    }


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Rescales probabilities by a temperature: ``softmax(log(p) / T)``.

    ``T > 1`` softens (less sure), ``T < 1`` sharpens; ``T == 1`` returns the
    probabilities unchanged. Each row's most probable class stays the same.

    Raises:
        ZooError: a temperature that is not a positive finite number.
    """
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ZooError(f"the temperature must be a positive number (got {temperature})")
    probabilities = np.asarray(probabilities)
    if temperature == 1.0:
        return probabilities
    return _rescaled(probabilities, temperature)


def _rescaled(probabilities: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """``softmax(log(p) / T)``, ``T`` one number or one per row (``[n, 1]``)."""
    logits = np.log(np.clip(probabilities.astype("float64"), _FLOOR, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled.astype(probabilities.dtype if probabilities.dtype.kind == "f" else "float64")


def fit_temperature(probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray) -> float:
    """Fits the temperature that minimises the negative log-likelihood of ``y``.

    Args:
        probabilities: held-out (out-of-fold) probabilities, ``[n, n_classes]``.
        y: the true labels of their rows.
        classes: the class labels of the columns.

    Returns:
        The temperature, between :data:`MIN_TEMPERATURE` and :data:`MAX_TEMPERATURE`.

    Raises:
        ZooError: bad shapes, unknown labels or no rows.
    """
    truth = _check(probabilities, y, classes)
    if not len(truth):
        raise ZooError("cannot fit a temperature on no rows (got 0 probabilities)")
    logits = np.log(np.clip(np.asarray(probabilities, dtype="float64"), _FLOOR, None))
    rows = np.arange(len(truth))

    def negative_log_likelihood(log_temperature: float) -> float:
        scaled = logits / np.exp(log_temperature)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_normaliser = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_normaliser - scaled[rows, truth]))

    result = minimize_scalar(
        negative_log_likelihood,
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def accuracy_at_coverage(
    probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray, min_confidence: float
) -> dict[str, float | int]:
    """Accuracy on the rows a model answers when it answers only at ``min_confidence`` or above.

    Returns:
        ``answered`` (rows at or above the threshold), ``rows``, ``coverage``
        (their share), ``accuracy`` (on them; ``nan`` if none) and
        ``min_confidence``.
    """
    truth = _check(probabilities, y, classes)
    probabilities = np.asarray(probabilities, dtype="float64")
    answered = probabilities.max(axis=1) >= min_confidence
    correct = probabilities.argmax(axis=1) == truth
    count = int(answered.sum())
    return {
        "min_confidence": float(min_confidence),
        "rows": int(len(truth)),
        "answered": count,
        "coverage": count / len(truth) if len(truth) else 0.0,
        "accuracy": float(correct[answered].mean()) if count else float("nan"),
    }


def coverage_curve(
    probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy against coverage: answering the most confident rows first.

    Returns:
        ``(coverage, accuracy)``: for k = 1..n, the share k/n of rows answered
        and the accuracy on the k most confident of them.
    """
    truth = _check(probabilities, y, classes)
    probabilities = np.asarray(probabilities, dtype="float64")
    order = np.argsort(-probabilities.max(axis=1), kind="stable")
    correct = (probabilities.argmax(axis=1) == truth)[order]
    answered = np.arange(1, len(truth) + 1)
    return answered / len(truth), np.cumsum(correct) / answered


def nearest_mean_distance(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance to the nearest of ``means`` (rows and means alike scaled)."""
    x = np.asarray(x, dtype="float64").reshape(len(x), -1)
    means = np.asarray(means, dtype="float64")
    squared = (
        np.sum(x**2, axis=1, keepdims=True) - 2.0 * x @ means.T + np.sum(means**2, axis=1)[None, :]
    )
    return np.sqrt(np.clip(squared.min(axis=1), 0.0, None)) if len(x) else np.zeros(0)


@dataclass(frozen=True)
class StrangerCalibration:
    """A temperature for digits unlike the training writers', and a gate saying how unlike.

    An input's stranger weight is ``w = sigmoid(coef * d + intercept)``, ``d``
    its distance to the nearest class mean of the training rows (scaled to
    ``[0, 1]``); its probabilities are rescaled by ``T = T_own ** (1 - w) *
    temperature ** w``, ``T_own`` the temperature fitted on the training
    writers' own held-out rows.

    Attributes:
        temperature: fitted on the model's probabilities for handwriting copies of the
            training rows.
        means: ``[n_classes, n_features]``, each class's mean training row, scaled.
        coef, intercept: the logistic gate on the distance.
    """

    temperature: float
    means: np.ndarray
    coef: float
    intercept: float

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        x_copies: np.ndarray,
        copies_probabilities: np.ndarray,
        y_copies: np.ndarray,
        classes: np.ndarray,
    ) -> StrangerCalibration:
        """Fits the copies' temperature and the gate telling the rows ``x`` from the copies.

        Args:
            x, y: the training rows (scaled) and their labels.
            x_copies: the copies (scaled), written as other hands might.
            copies_probabilities, y_copies: the model's probabilities for the copies, and
                their labels.
            classes: the class labels of the probability columns.
        """
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype="float64").reshape(len(x), -1)
        classes = np.asarray(classes)
        means = np.stack([x[np.asarray(y) == c].mean(axis=0) for c in classes])
        distances = np.concatenate(
            [nearest_mean_distance(x, means), nearest_mean_distance(x_copies, means)]
        )
        is_copy = np.concatenate([np.zeros(len(x)), np.ones(len(x_copies))])
        gate = LogisticRegression().fit(distances[:, None], is_copy)
        return cls(
            temperature=fit_temperature(copies_probabilities, y_copies, classes),
            means=means.astype("float32"),
            coef=float(gate.coef_[0, 0]),
            intercept=float(gate.intercept_[0]),
        )

    def weights(self, x: np.ndarray) -> np.ndarray:
        """How much each scaled row looks like a stranger's, from 0 to 1."""
        return expit(self.coef * nearest_mean_distance(x, self.means) + self.intercept)

    def apply(self, probabilities: np.ndarray, x: np.ndarray, temperature: float) -> np.ndarray:
        """``probabilities`` of the scaled rows ``x`` rescaled, each by its own temperature
        between ``temperature`` (the training writers') and the strangers' one."""
        probabilities = np.asarray(probabilities)
        if not len(probabilities):
            return probabilities
        weight = self.weights(x)[:, None]
        log_temperature = (1.0 - weight) * math.log(float(temperature)) + weight * math.log(
            self.temperature
        )
        return _rescaled(probabilities, np.exp(log_temperature))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (for an export's metadata)."""
        return {
            "temperature": self.temperature,
            "coef": self.coef,
            "intercept": self.intercept,
            "means": np.round(np.asarray(self.means, dtype="float64"), 6).tolist(),
        }

    @classmethod
    def from_dict(cls, values: Any, n_classes: int, n_features: int) -> StrangerCalibration:
        """What :meth:`to_dict` wrote, checked: shapes, finite numbers, the temperature's range.

        Raises:
            ZooError: anything else.
        """
        if not isinstance(values, dict) or set(values) != {
            "temperature",
            "coef",
            "intercept",
            "means",
        }:
            raise ZooError(
                "a stranger calibration is {'temperature', 'coef', 'intercept', 'means'} "
                f"(got {type(values).__name__})"
            )
        numbers = [values[key] for key in ("temperature", "coef", "intercept")]
        if any(
            isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n)
            for n in numbers
        ):
            raise ZooError(f"the stranger calibration's numbers must be finite (got {numbers})")
        temperature = float(values["temperature"])
        if not MIN_TEMPERATURE * (1 - 1e-9) <= temperature <= MAX_TEMPERATURE * (1 + 1e-9):
            raise ZooError(
                f"the strangers' temperature must lie from {MIN_TEMPERATURE:g} to "
                f"{MAX_TEMPERATURE:g} (got {temperature})"
            )
        try:
            means = np.asarray(values["means"], dtype="float64")
        except (TypeError, ValueError):
            raise ZooError("the stranger calibration's means must be a table of numbers") from None
        if means.shape != (n_classes, n_features) or not np.all(np.isfinite(means)):
            raise ZooError(
                f"the stranger calibration's means must be {n_classes} x {n_features} finite "
                f"numbers (got shape {means.shape})"
            )
        return cls(
            temperature, means.astype("float32"), float(values["coef"]), float(values["intercept"])
        )
