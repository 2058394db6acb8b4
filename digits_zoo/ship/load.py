"""Loading an export for prediction: its version folder, its metadata and its model."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.artifacts import DamagedModel, load_fitted
from digits_zoo.ship.layout import (
    METADATA,
    MODEL_FILES,
    SIGNATURE,
    check_contained,
    check_versions,
    is_version,
    version_folders,
)
from zoo.errors import ZooError

_NOT_AN_EXPORT = "pass the folder digits-zoo export wrote, or one of its numbered versions"


def resolve_export(path: str | Path) -> Path:
    """Returns the version folder an EXPORT_DIR argument means.

    Args:
        path: an export's base folder (its newest version is used) or one
            version folder.

    Raises:
        ZooError: no such folder, no export in it, or a numbered folder without
            its metadata (TensorFlow Serving would serve it).
    """
    path = Path(path)
    if not path.exists():
        raise ZooError(f"export folder not found (got {str(path)!r}); {_NOT_AN_EXPORT}")
    if not path.is_dir():
        raise ZooError(
            f"the export must be a folder (got the file {str(path)!r}); {_NOT_AN_EXPORT}"
        )
    if is_version(path):
        return path
    check_versions(path)
    versions = version_folders(path)
    if not versions:
        raise ZooError(
            f"{str(path)!r} is not an export (no {METADATA} in it or in a numbered version "
            f"folder); {_NOT_AN_EXPORT}"
        )
    return max(versions)[1]


@dataclass
class LoadedExport:
    """An export loaded for prediction: its metadata and its model.

    Attributes:
        path: the version folder.
        metadata: its ``metadata.json``.
        model: the SavedModel's ``serving_default`` signature, or the
            scikit-learn estimator.
    """

    path: Path
    metadata: dict[str, Any]
    model: Any

    @property
    def name(self) -> str:
        """The exported model's leaderboard name."""
        return self.metadata["model"]

    @property
    def format(self) -> str:
        """``tf_saved_model`` or ``skops``."""
        return self.metadata["format"]

    @property
    def classes(self) -> np.ndarray:
        """The class labels, in the order of the probability columns."""
        return np.asarray(self.metadata["classes"], dtype="int64")

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one image, such as ``(8, 8)``."""
        return tuple(int(s) for s in self.metadata["dataset"]["image_shape"])

    @property
    def n_features(self) -> int:
        """Pixels per image."""
        return int(self.metadata["dataset"]["n_features"])

    @property
    def pixel_max(self) -> float:
        """The largest raw pixel value (16 for the bundled digits)."""
        return float(self.metadata["dataset"]["pixel_max"])

    def predict_proba(self, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicts raw pixel rows.

        Args:
            x_raw: ``[n, n_features]`` raw pixel values (see :func:`digits_zoo.ship.inputs.as_rows`).

        Returns:
            ``(probabilities, classes)``: float32 ``[n, n_classes]`` in the
            order of :attr:`classes`, and the predicted label of each row.
        """
        x_raw = np.asarray(x_raw, dtype="float32")
        if self.format == "tf_saved_model":
            import tensorflow as tf

            outputs = self.model(pixels=tf.constant(x_raw))
            return outputs["probabilities"].numpy(), outputs["class"].numpy()
        scaled = x_raw / np.float32(self.pixel_max)
        probabilities = np.asarray(self.model.predict_proba(scaled), dtype="float32")
        return probabilities, np.asarray(self.model.predict(scaled)).astype("int64")


def load_export(path: str | Path) -> LoadedExport:
    """Loads an export (base folder or version folder) for prediction.

    A SavedModel is loaded with ``tf.saved_model.load``; a skops file
    trusting only the types of the zoo's own scikit-learn models
    (:data:`digits_zoo.artifacts.SKOPS_TRUSTED_TYPES`), so neither runs code
    from the file. Nothing is read through a link that leads outside ``path``.

    Raises:
        ZooError: not an export, a damaged one, one with a link that leads
            outside it, or a skops file that names other types.
    """
    folder = resolve_export(path)
    check_contained(path, folder)
    metadata = _read_metadata(folder)
    model_file = folder / MODEL_FILES[metadata["format"]]
    if not model_file.is_file():
        raise ZooError(
            f"the export {str(folder)!r} lacks its model file {model_file.name}; export again"
        )
    if metadata["format"] == "skops":
        try:
            model = load_fitted(model_file)
        except DamagedModel as damage:
            raise ZooError(
                f"the export's model file is damaged ({damage.reason}) (got "
                f"{str(model_file)!r}); export again"
            ) from None
        return LoadedExport(folder, metadata, model)
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(folder)).signatures[SIGNATURE]
    except Exception as error:  # TensorFlow raises many kinds for a damaged SavedModel.
        raise ZooError(
            f"cannot load the SavedModel in {str(folder)!r} ({error.__class__.__name__}); "
            "the export is damaged, export again"
        ) from None
    return LoadedExport(folder, metadata, signature)


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / METADATA
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        dataset = metadata["dataset"]
        valid = (
            metadata["format"] in MODEL_FILES
            and len(metadata["classes"]) >= 2
            and int(dataset["n_features"]) == math.prod(dataset["image_shape"])
            and float(dataset["pixel_max"]) > 0
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ZooError(
            f"{str(path)!r} is not the metadata of a digits-zoo export (unreadable or "
            f"incomplete); {_NOT_AN_EXPORT}"
        )
    return metadata
