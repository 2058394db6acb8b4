"""Loading an export for prediction: its version folder, its metadata and one of its model files.

A version holds its model's own format (a SavedModel, or a skops file for
scikit-learn models) and may hold portable files beside it (``model.onnx``,
``model.tflite``). A folder loads the model's own format, as before; a path to
one model file in a version folder, or ``format=``, loads that file, with its
format's own runtime.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.artifacts import DamagedModel, load_fitted
from digits_zoo.ship.layout import (
    FILE_FORMATS,
    FORMAT_LABELS,
    METADATA,
    MODEL_FILES,
    SIGNATURE,
    check_contained,
    check_versions,
    is_version,
    version_folders,
)
from digits_zoo.ship.runtimes import LiteRTModel, OnnxModel, sha256
from zoo.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    StrangerCalibration,
    apply_temperature,
)
from zoo.errors import ZooError
from zoo.pictures import PictureRecipe, read_by_class

_NOT_AN_EXPORT = (
    "pass the folder digits-zoo export wrote, one of its numbered versions, or a model file in one"
)
# The portable formats, each run by its own runtime from the file's bytes.
_RUNTIMES = {"onnx": OnnxModel, "litert": LiteRTModel}


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
            f"the export must be a folder, or one of {', '.join(MODEL_FILES.values())} in a "
            f"version folder (got the file {str(path)!r}); {_NOT_AN_EXPORT}"
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


def stranger_calibration(metadata: dict[str, Any]) -> StrangerCalibration | None:
    """An export's strangers' calibration (``stranger_calibration`` in its metadata), checked.

    ``None`` when it has none (an export before it, a baseline, rows that are not images).

    Raises:
        ZooError: a record :meth:`~zoo.calibration.StrangerCalibration.to_dict` would not write.
    """
    values = metadata.get("stranger_calibration")
    if values is None:
        return None
    return StrangerCalibration.from_dict(
        values, len(metadata["classes"]), int(metadata["dataset"]["n_features"])
    )


def calibrated(
    metadata: dict[str, Any], probabilities: np.ndarray, x_raw: np.ndarray
) -> np.ndarray:
    """A model's probabilities for raw pixel rows, calibrated as its export's metadata says
    (:func:`apply_calibration`)."""
    return apply_calibration(
        probabilities,
        x_raw,
        float(metadata.get("temperature", 1.0)),
        stranger_calibration(metadata),
        float(metadata["dataset"]["pixel_max"]),
    )


def apply_calibration(
    probabilities: np.ndarray,
    x_raw: np.ndarray,
    temperature: float,
    stranger: StrangerCalibration | None,
    pixel_max: float,
) -> np.ndarray:
    """Probabilities for raw pixel rows rescaled by an export's calibration.

    With a strangers' calibration each row gets its own temperature, between
    ``temperature`` and the strangers' one by how far the row lies from the
    training rows' class means; without, the one ``temperature``.
    """
    if stranger is None:
        return apply_temperature(probabilities, temperature)
    scaled = np.asarray(x_raw, dtype="float32") / np.float32(pixel_max)
    return stranger.apply(probabilities, scaled, temperature)


def picture_recipe(metadata: dict[str, Any]) -> PictureRecipe | None:
    """The picture recipe an export records (``picture_recipe``), or ``None`` for the plain one.

    The one reader of the key: ``predict``, ``evaluate``, ``serve`` (its page's
    drawings and the digits it collects) and ``adapt`` all convert a picture
    with what it returns. Exports made before the key existed, and those of
    data that are not counted bitmaps, convert pictures as first shipped.

    Raises:
        ZooError: the recorded value is not a recipe (see
            :meth:`zoo.pictures.PictureRecipe.from_dict`).
    """
    recorded = metadata.get("picture_recipe")
    return None if recorded is None else PictureRecipe.from_dict(recorded)


def recorded_formats(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The formats a version holds, by name, each with its file's record (file, checksum, check).

    Exports made before portable formats existed record only ``format``.
    """
    return metadata.get("formats") or {
        metadata["format"]: {"file": MODEL_FILES[metadata["format"]]}
    }


@dataclass
class LoadedExport:
    """An export loaded for prediction: its metadata and one of its model files.

    Attributes:
        path: the version folder.
        metadata: its ``metadata.json``.
        model: the SavedModel's ``serving_default`` signature, the scikit-learn
            estimator, or the :class:`~digits_zoo.ship.runtimes.OnnxModel` or
            :class:`~digits_zoo.ship.runtimes.LiteRTModel` running the file.
        loaded_format: the format loaded, when not the model's own.
    """

    path: Path
    metadata: dict[str, Any]
    model: Any
    loaded_format: str | None = None

    @property
    def name(self) -> str:
        """The exported model's leaderboard name."""
        return self.metadata["model"]

    @property
    def format(self) -> str:
        """The format loaded: ``tf_saved_model``, ``skops``, ``onnx`` or ``litert``."""
        return self.loaded_format or self.metadata["format"]

    @property
    def model_file(self) -> Path:
        """The file loaded (for a SavedModel, its ``saved_model.pb``)."""
        return self.path / MODEL_FILES[self.format]

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

    @property
    def picture_recipe(self) -> PictureRecipe | None:
        """How a picture becomes this export's pixels, beyond image shape and pixel range.

        ``None`` for the plain recipe (see :func:`picture_recipe`); checked when loaded.
        """
        return picture_recipe(self.metadata)

    @property
    def temperature(self) -> float:
        """The temperature fitted at export (1 for exports before calibration, and baselines)."""
        return float(self.metadata.get("temperature", 1.0))

    @cached_property
    def stranger(self) -> StrangerCalibration | None:
        """The strangers' temperature and gate (``None``: one temperature for every input),
        read from the metadata once, not on every prediction."""
        return stranger_calibration(self.metadata)

    def predict_proba(self, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicts raw pixel rows, with calibrated probabilities.

        The model file's probabilities are rescaled by the export's
        :attr:`temperature` (``softmax(log(p) / T)``), or, when it records a
        :attr:`stranger` calibration, by each row's own temperature between it
        and the strangers' (:func:`apply_calibration`); ``T > 0`` keeps every row's
        most probable class, so the classes are the model file's own.

        Args:
            x_raw: ``[n, n_features]`` raw pixel values (see :func:`digits_zoo.ship.inputs.as_rows`).

        Returns:
            ``(probabilities, classes)``: float32 ``[n, n_classes]`` in the
            order of :attr:`classes`, and the predicted label of each row.
        """
        probabilities, classes = self._predict_raw(x_raw)
        calibrated_probabilities = apply_calibration(
            probabilities, x_raw, self.temperature, self.stranger, self.pixel_max
        )
        return calibrated_probabilities, classes

    def predict_pictures(
        self, pictures: np.ndarray, predict: Callable[..., Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predicts pictures, each converted to its rows by :func:`zoo.pictures.picture_rows`.

        Every row is predicted with calibrated probabilities
        (:meth:`predict_proba`); a picture's probabilities are then its rows'
        read class by class (:func:`zoo.pictures.read_by_class`) when its recipe
        records each class's slant, its one row's otherwise.

        Args:
            pictures: ``[n, n_rows, n_features]`` raw pixel values.
            predict: what predicts the rows (default :meth:`predict_proba`;
                the server passes its padded batches).

        Returns:
            ``(probabilities, classes)`` as :meth:`predict_proba` returns them.
        """
        pictures = np.asarray(pictures, dtype="float32")
        n, n_rows, n_features = pictures.shape
        probabilities, classes = (predict or self.predict_proba)(
            pictures.reshape(n * n_rows, n_features)
        )
        if n_rows == 1:
            return probabilities, classes
        read = read_by_class(np.asarray(probabilities).reshape(n, n_rows, -1))
        return read, self.classes[np.argmax(read, axis=1)]

    def _predict_raw(self, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x_raw = np.asarray(x_raw, dtype="float32")
        if self.format in _RUNTIMES:
            if not len(x_raw):
                # Neither runtime takes an empty batch; nothing in, nothing out.
                return np.zeros((0, len(self.classes)), "float32"), np.zeros(0, "int64")
            return self.model.predict_proba(np.ascontiguousarray(x_raw))
        if self.format == "tf_saved_model":
            import tensorflow as tf

            outputs = self.model(pixels=tf.constant(x_raw))
            return outputs["probabilities"].numpy(), outputs["class"].numpy()
        scaled = x_raw / np.float32(self.pixel_max)
        probabilities = np.asarray(self.model.predict_proba(scaled), dtype="float32")
        return probabilities, np.asarray(self.model.predict(scaled)).astype("int64")


def load_export(path: str | Path, format: str | None = None) -> LoadedExport:
    """Loads an export (base folder, version folder or model file) for prediction.

    A folder loads the model's own format, a model file in a version folder
    (``.../3/model.onnx``) that file. A SavedModel is loaded with
    ``tf.saved_model.load``; a skops file trusting only the types of the zoo's
    own scikit-learn models (:data:`digits_zoo.artifacts.SKOPS_TRUSTED_TYPES`),
    so neither runs code from the file; an ONNX file with ONNX Runtime and a
    LiteRT file with LiteRT's interpreter, after their bytes are checked
    against the checksum ``metadata.json`` records. Nothing is read through a
    link that leads outside ``path``.

    Args:
        path: the export's base folder (its newest version), a version folder,
            or one model file in a version folder.
        format: the format to load from a folder (``onnx``, ``litert``, ...);
            by default the model's own, or the one a model file's name says.

    Raises:
        ZooError: not an export, a damaged one, one with a link that leads
            outside it, a format the version does not hold, a file that does
            not match its checksum, or a skops file that names other types.
    """
    path = Path(path)
    if path.is_file() and path.name in FILE_FORMATS and is_version(path.parent):
        named = FILE_FORMATS[path.name]
        if format is not None and format != named:
            raise ZooError(
                f"{str(path)!r} is a {FORMAT_LABELS[named]} file, not {format}; pass its "
                "version folder to choose another format"
            )
        format, folder, root = named, path.parent, path.parent
    else:
        folder, root = resolve_export(path), path
    check_contained(root, folder)
    metadata = _read_metadata(folder)
    format = format or metadata["format"]
    held = recorded_formats(metadata)
    if format not in held:
        kinds = ", ".join(f"{FORMAT_LABELS.get(name, name)} ({name})" for name in held)
        raise ZooError(
            f"the export {str(folder)!r} holds no {FORMAT_LABELS.get(format, format)} file "
            f"(got format {format!r}; it holds {kinds}); pass one of those, or export again "
            "with --format onnx, litert or all"
        )
    model_file = folder / MODEL_FILES[format]
    if not model_file.is_file():
        raise ZooError(
            f"the export {str(folder)!r} lacks its model file {model_file.name}; export again"
        )
    loaded_format = None if format == metadata["format"] else format
    return _check_outputs(_load_model(folder, metadata, format, model_file, loaded_format, held))


def _load_model(
    folder: Path,
    metadata: dict[str, Any],
    format: str,
    model_file: Path,
    loaded_format: str | None,
    held: dict[str, dict[str, Any]],
) -> LoadedExport:
    """Loads one checked model file of a version folder (see :func:`load_export`)."""
    if format in _RUNTIMES:
        data = model_file.read_bytes()
        recorded = held[format].get("sha256")
        if recorded is not None and sha256(data) != recorded:
            raise ZooError(
                f"the export's {model_file.name} does not match the checksum in its {METADATA} "
                f"(damaged or changed since it was exported; got {str(model_file)!r}); export again"
            )
        model = _RUNTIMES[format](data, model_file, int(metadata["dataset"]["n_features"]))
        return LoadedExport(folder, metadata, model, loaded_format)
    if format == "skops":
        try:
            model = load_fitted(model_file)
        except DamagedModel as damage:
            raise ZooError(
                f"the export's model file is damaged ({damage.reason}) (got "
                f"{str(model_file)!r}); export again"
            ) from None
        return LoadedExport(folder, metadata, model, loaded_format)
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(folder)).signatures[SIGNATURE]
    except Exception as error:  # TensorFlow raises many kinds for a damaged SavedModel.
        raise ZooError(
            f"cannot load the SavedModel in {str(folder)!r} ({error.__class__.__name__}); "
            "the export is damaged, export again"
        ) from None
    return LoadedExport(folder, metadata, signature, loaded_format)


def _check_outputs(export: LoadedExport) -> LoadedExport:
    """Checks that the model gives one probability per class its metadata lists, and that its
    picture recipe's ``class_slants`` (if any) have one slant per class.

    Raises:
        ZooError: another number of probabilities (a ``classes`` list edited by hand), or
            of class slants.
    """
    probabilities, _ = export._predict_raw(np.zeros((1, export.n_features), "float32"))
    given = int(np.shape(probabilities)[-1])
    if given != len(export.classes):
        raise ZooError(
            f"the metadata of {str(export.path)!r} lists {len(export.classes)} classes but its "
            f"model gives {given} probabilities per image (got classes "
            f"{export.metadata['classes']}); the metadata was changed or damaged: export again"
        )
    recipe = export.picture_recipe
    if recipe is not None and recipe.class_slants is not None:
        if len(recipe.class_slants) != given:
            raise ZooError(
                f"the picture_recipe in {str(export.path / METADATA)!r} is not one export "
                f"writes: it has {len(recipe.class_slants)} class_slants for {given} classes; "
                "the metadata was changed or damaged: export again"
            )
    return export


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / METADATA
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        dataset = metadata["dataset"]
        valid = (
            metadata["format"] in MODEL_FILES
            and all(
                name in MODEL_FILES and record["file"] == MODEL_FILES[name]
                for name, record in recorded_formats(metadata).items()
            )
            and len(metadata["classes"]) >= 2
            and int(dataset["n_features"]) == math.prod(dataset["image_shape"])
            and float(dataset["pixel_max"]) > 0
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise ZooError(
            f"{str(path)!r} is not the metadata of a digits-zoo export (unreadable or "
            f"incomplete); {_NOT_AN_EXPORT}"
        )
    damaged = "the metadata was changed or damaged: export again"
    classes = metadata["classes"]
    if not all(isinstance(label, int) and not isinstance(label, bool) for label in classes) or len(
        set(classes)
    ) != len(classes):
        raise ZooError(
            f"the classes in {str(path)!r} must be distinct whole numbers (got {classes!r}); "
            f"{damaged}"
        )
    temperature = metadata.get("temperature", 1.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        # The fitted value is exp(log(bound)) at most: a rounding's slack.
        or not MIN_TEMPERATURE * (1 - 1e-9) <= temperature <= MAX_TEMPERATURE * (1 + 1e-9)
    ):
        raise ZooError(
            f"the temperature in {str(path)!r} must be a number from {MIN_TEMPERATURE:g} to "
            f"{MAX_TEMPERATURE:g}, the range calibration fits in (got {temperature!r}); {damaged}"
        )
    try:
        picture_recipe(metadata)
    except ZooError as error:
        raise ZooError(
            f"the picture_recipe in {str(path)!r} is not one export writes: {error}; {damaged}"
        ) from None
    try:
        stranger_calibration(metadata)
    except ZooError as error:
        raise ZooError(
            f"the stranger_calibration in {str(path)!r} is not one export writes: {error}; "
            f"{damaged}"
        ) from None
    return metadata
