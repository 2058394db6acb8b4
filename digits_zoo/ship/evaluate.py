"""Scoring an export on labelled data: accuracy, macro-F1 and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from digits_zoo.ship.inputs import as_rows, check_input_size, check_min_confidence
from digits_zoo.ship.load import LoadedExport
from zoo.calibration import accuracy_at_coverage, expected_calibration_error
from zoo.data import load_dataset, read_csv_rows
from zoo.errors import DataError, ZooError


def read_labelled(path: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Reads labelled raw pixel rows in a format the dataset loaders accept.

    A ``.csv`` is the optdigits layout (pixels, then the label in the last
    column) and every row is used; a ``.npz`` or an MNIST IDX folder carries
    its own test part, which is used. A file larger than
    :data:`~digits_zoo.ship.inputs.MAX_INPUT_BYTES` is refused unread.

    Returns:
        ``(x, y, description)``.

    Raises:
        DataError: a missing or malformed file.
        ZooError: a file too large to read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path not found (got {str(path)!r}); pass an existing file or folder")
    if path.is_file():
        check_input_size(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        x, y = read_csv_rows(path)
        return x, y, f"{path}: {len(y)} labelled rows"
    dataset = load_dataset(path)
    return dataset.x_test, dataset.y_test, f"{path}: its test part, {len(dataset.y_test)} rows"


def evaluate_export(
    export: LoadedExport, data: str | Path, min_confidence: float | None = None
) -> dict[str, Any]:
    """Scores an export on a labelled data file.

    Args:
        export: the loaded export.
        data: the labelled data file.
        min_confidence: also score the rows whose (calibrated) probability is
            at least this: the ``coverage`` it gives and the accuracy there.

    Returns:
        ``rows``, ``correct``, ``accuracy``, ``macro_f1``, ``ece`` (expected
        calibration error of the calibrated probabilities, 15 bins),
        ``temperature`` and ``confusion_matrix`` (rows: true class, columns:
        predicted class, both in the order of ``labels``), plus ``export``,
        ``model`` and ``data``; with ``min_confidence``, ``coverage`` (see
        :func:`zoo.calibration.accuracy_at_coverage`).

    Raises:
        ZooError: bad data, data of another shape or pixel range than the export's,
            or labels that are not among the model's classes (the model could never
            predict them, so they would only count as silent errors).
    """
    check_min_confidence(min_confidence)
    x, y, description = read_labelled(data)
    if x.shape[1] != export.n_features:
        raise ZooError(
            f"{data}: rows have {x.shape[1]} pixels but the export takes {export.n_features} "
            f"({'x'.join(map(str, export.image_shape))}); pass data of the kind it was trained on"
        )
    classes = [int(label) for label in export.classes]
    unknown = sorted(set(np.unique(y).tolist()) - set(classes))
    if unknown:
        raise ZooError(
            f"{data}: labels {unknown} are not classes of this model (it knows {classes}); "
            "evaluate on data labelled with the model's classes only"
        )
    x = as_rows(x, export, str(data))
    probabilities, predicted = export.predict_proba(x)
    labels = sorted(set(np.unique(y).tolist()) | set(np.unique(predicted).tolist()))
    extra: dict[str, Any] = {}
    if min_confidence is not None:
        extra["coverage"] = accuracy_at_coverage(
            probabilities, y, export.classes, float(min_confidence)
        )
    return {
        "export": str(export.path),
        "model": export.name,
        "data": description,
        "rows": int(len(y)),
        "correct": int(np.sum(predicted == y)),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro")),
        "ece": expected_calibration_error(probabilities, y, export.classes),
        "temperature": export.temperature,
        "labels": [int(label) for label in labels],
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
        **extra,
    }


def format_confusion(labels: list[int], matrix: list[list[int]]) -> str:
    """Renders a confusion matrix as an aligned table (rows true, columns predicted)."""
    names = [str(label) for label in labels]
    width = max(len(str(value)) for row in matrix for value in row)
    width = max(width, *(len(name) for name in names))
    label_width = max(len("true"), *(len(name) for name in names))
    lines = [" " * label_width + "  " + " ".join(name.rjust(width) for name in names)]
    for name, row in zip(names, matrix, strict=True):
        cells = " ".join(str(value).rjust(width) for value in row)
        lines.append(f"{name.rjust(label_width)}  {cells}")
    return "\n".join(lines)
