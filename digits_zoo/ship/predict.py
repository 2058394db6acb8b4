"""Using an export: load it, turn inputs into the dataset's format, predict, evaluate.

Inputs are converted to pixels exactly as the dataset stores them; the export
does its own scaling. Images are converted the way the dataset was made:

* counted bitmaps (``pixel_max`` a square such as 16, the bundled digits): the
  UCI optdigits recipe. The digit's bounding box is scaled, aspect ratio
  kept, into a ``4 x 8 = 32``-pixel square bitmap, binarised, and the ink
  pixels of each ``4 x 4`` block are counted into an 8x8 image of ``0..16``.
* grey images (``pixel_max`` 255 or 1, MNIST): the digit's bounding box is
  scaled, aspect ratio kept, into a ``20 x 20`` box and placed in the
  ``28 x 28`` image so that its centre of mass is the image's centre.

Both sizes follow the export's recorded image shape.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.ship.export import METADATA, SAVED_MODEL, SIGNATURE, SKOPS_MODEL
from zoo.errors import ZooError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_FORMATS = {"tf_saved_model": SAVED_MODEL, "skops": SKOPS_MODEL}
_NOT_AN_EXPORT = "pass the folder digits-zoo export wrote, or one of its numbered versions"


def resolve_export(path: str | Path) -> Path:
    """Returns the version folder an EXPORT_DIR argument means.

    Args:
        path: an export's base folder (its newest version is used) or one
            version folder.

    Raises:
        ZooError: no such folder, or no export in it.
    """
    path = Path(path)
    if not path.exists():
        raise ZooError(f"export folder not found (got {str(path)!r}); {_NOT_AN_EXPORT}")
    if not path.is_dir():
        raise ZooError(
            f"the export must be a folder (got the file {str(path)!r}); {_NOT_AN_EXPORT}"
        )
    if (path / METADATA).is_file():
        return path
    versions = [
        (int(child.name), child)
        for child in path.iterdir()
        if child.name.isdigit() and (child / METADATA).is_file()
    ]
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
            x_raw: ``[n, n_features]`` raw pixel values (see :func:`as_rows`).

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
    trusting only scikit-learn and numpy types, so neither runs code from
    the file.

    Raises:
        ZooError: not an export, or a damaged one.
    """
    from digits_zoo.artifacts import load_fitted

    folder = resolve_export(path)
    metadata = _read_metadata(folder)
    model_file = folder / _FORMATS[metadata["format"]]
    if not model_file.is_file():
        raise ZooError(
            f"the export {str(folder)!r} lacks its model file {model_file.name}; export again"
        )
    if metadata["format"] == "skops":
        return LoadedExport(folder, metadata, load_fitted(model_file))
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
            metadata["format"] in _FORMATS
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


def as_rows(array: np.ndarray, export: LoadedExport, source: str) -> np.ndarray:
    """Checks an array of raw pixels and returns it as ``[n, n_features]`` float32 rows.

    Accepted shapes: one image (``[n_features]``, ``image_shape`` or
    ``image_shape + [1]``) or a batch of them (the same with a leading ``n``).
    Values must lie in ``0..pixel_max``, as the dataset stores them.

    Raises:
        ZooError: a non-numeric or wrong-shaped array, or values out of range.
    """
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ZooError(f"{source}: pixels must be numbers (got dtype {array.dtype})")
    single = [(export.n_features,), export.image_shape, (*export.image_shape, 1)]
    if tuple(array.shape) in single:
        array = array.reshape(1, -1)
    elif array.ndim >= 1 and tuple(array.shape[1:]) in single:
        array = array.reshape(len(array), -1)
    else:
        shapes = ", ".join(str(list(shape)) for shape in single)
        raise ZooError(
            f"{source}: wrong-shaped array (got shape {list(array.shape)}); this export takes "
            f"{export.n_features}-pixel images shaped {shapes}, optionally with a leading n"
        )
    if len(array) == 0:
        raise ZooError(f"{source}: holds no images (got shape {list(array.shape)})")
    array = array.astype("float32")
    if not np.isfinite(array).all():
        raise ZooError(f"{source}: pixels must be finite numbers (found NaN or infinity)")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > export.pixel_max:
        raise ZooError(
            f"{source}: pixel values must lie in 0..{export.pixel_max:g} as the dataset stores "
            f"them (got {low:g}..{high:g}); pass raw, unscaled pixels of the same kind"
        )
    return array


def image_to_pixels(image: Any, image_shape: tuple[int, ...], pixel_max: float) -> np.ndarray:
    """Converts a picture of one digit to a flat row of the dataset's raw pixels.

    The picture may have any size and either polarity (dark ink on a light
    background or light on dark); the background is the colour of the
    border. See the module docstring for the two recipes.

    Args:
        image: a ``PIL.Image.Image``.
        image_shape: the dataset's image shape, such as ``(8, 8)`` or ``(28, 28)``.
        pixel_max: the dataset's largest pixel value (16 or 255).

    Returns:
        float32 ``[prod(image_shape)]`` values in ``0..pixel_max``.

    Raises:
        ZooError: the dataset's images are not 2-D, or the picture is blank.
    """
    if len(image_shape) != 2:
        raise ZooError(
            f"this export's data are not 2-D images (image shape {list(image_shape)}); "
            "pass a .npy array or a .csv of pixel rows instead"
        )
    ink = _ink(image)
    rows, columns = np.nonzero(ink >= 0.5)
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = image_shape
    block = math.isqrt(int(pixel_max))
    if block > 1 and block * block == pixel_max:
        # optdigits: a (4*8)x(4*8) bitmap, ink pixels counted in 4x4 blocks into 0..16.
        bitmap = _fit(crop, (height * block, width * block)) >= 0.5
        counts = bitmap.reshape(height, block, width, block).sum(axis=(1, 3))
        return counts.astype("float32").ravel()
    # MNIST: the digit fits a 20x20 box of the 28x28 image, centred by its centre of mass.
    box = (max(1, round(height * 20 / 28)), max(1, round(width * 20 / 28)))
    digit = _fit(crop, box, centred=False)
    canvas = np.zeros((height, width))
    mass = digit.sum()
    centre_row = (digit.sum(axis=1) @ np.arange(digit.shape[0])) / mass
    centre_column = (digit.sum(axis=0) @ np.arange(digit.shape[1])) / mass
    top = int(np.clip(round((height - 1) / 2 - centre_row), 0, height - digit.shape[0]))
    left = int(np.clip(round((width - 1) / 2 - centre_column), 0, width - digit.shape[1]))
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    pixels = canvas * pixel_max
    # Integer pixel ranges (0..255) store whole numbers.
    if float(pixel_max).is_integer() and pixel_max > 1:
        pixels = np.round(pixels)
    return pixels.astype("float32").ravel()


def _grey(image: Any) -> np.ndarray:
    """The picture in grey levels ``[0, 1]``; transparency is laid over a plain background."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not transparent:
        return np.asarray(image.convert("L"), dtype="float64") / 255.0
    rgba = image.convert("RGBA")
    grey = None
    # Ink drawn on a transparent sheet shows on white unless the ink itself is white.
    for background in ("white", "black"):
        flat = Image.new("RGBA", rgba.size, background)
        flat.alpha_composite(rgba)
        grey = np.asarray(flat.convert("L"), dtype="float64") / 255.0
        if grey.max() - grey.min() > 0.25:
            break
    return grey


def _ink(image: Any) -> np.ndarray:
    """Ink in ``[0, 1]`` on a background of 0, whatever the picture's polarity."""
    grey = _grey(image)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    # The background is what the border mostly shows: lighter than the whole means
    # dark ink on light paper.
    ink = 1.0 - grey if border.mean() >= grey.mean() else grey
    background = float(np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])))
    contrast = float(ink.max()) - background
    if contrast < 0.1:
        raise ZooError("no digit visible (the picture is one flat colour)")
    return np.clip((ink - background) / contrast, 0.0, 1.0)


def _fit(crop: np.ndarray, size: tuple[int, int], centred: bool = True) -> np.ndarray:
    """Scales ``crop`` to fit ``size`` keeping its aspect ratio; centred on a canvas of ``size``.

    With ``centred=False`` the scaled crop itself is returned, uncut.
    """
    from PIL import Image

    height, width = size
    scale = min(height / crop.shape[0], width / crop.shape[1])
    new_height = max(1, min(height, round(crop.shape[0] * scale)))
    new_width = max(1, min(width, round(crop.shape[1] * scale)))
    picture = Image.fromarray(np.round(crop * 255).astype("uint8"), mode="L")
    scaled = (
        np.asarray(
            picture.resize((new_width, new_height), Image.Resampling.LANCZOS), dtype="float64"
        )
        / 255.0
    )
    if not centred:
        return scaled
    canvas = np.zeros(size)
    top, left = (height - new_height) // 2, (width - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = scaled
    return canvas


def read_image(path: str | Path, export: LoadedExport) -> np.ndarray:
    """Reads a picture of one digit as one row of the export's raw pixels.

    Raises:
        ZooError: unreadable, corrupt or blank pictures.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            row = image_to_pixels(image, export.image_shape, export.pixel_max)
    except ZooError as error:
        raise ZooError(f"{path}: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ZooError(
            f"cannot read {str(path)!r} as an image ({error.__class__.__name__}); pass a "
            "PNG or JPEG picture of one digit"
        ) from None
    return row.reshape(1, -1)


def read_array(path: str | Path) -> np.ndarray:
    """Reads a ``.npy`` array without unpickling anything.

    Raises:
        ZooError: unreadable or not a plain numeric array.
    """
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ZooError(
            f"cannot read {str(path)!r} as a .npy array ({error.__class__.__name__}); save it "
            "with numpy.save"
        ) from None


def read_pixel_csv(path: str | Path, export: LoadedExport) -> np.ndarray:
    """Reads a CSV of pixel rows (no header); a trailing label column is allowed and dropped.

    Raises:
        ZooError: unreadable, non-numeric, ragged, or the wrong number of columns.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ZooError(
            f"cannot read {str(path)!r} ({error.__class__.__name__}); pass a readable text CSV"
        ) from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(cell) for cell in line.split(",")])
        except ValueError:
            raise ZooError(
                f"{path}: line {number} is not comma-separated numbers (got {line[:40]!r}); "
                "the CSV must hold pixel rows with no header"
            ) from None
        if len(rows[-1]) not in (export.n_features, export.n_features + 1):
            raise ZooError(
                f"{path}: line {number} has {len(rows[-1])} columns; this export takes "
                f"{export.n_features} pixels per row (optionally then a label)"
            )
    if not rows:
        raise ZooError(f"{path} holds no rows; expected {export.n_features} pixels per line")
    if len({len(row) for row in rows}) > 1:
        raise ZooError(f"{path}: rows have different numbers of columns; keep one layout per file")
    table = np.asarray(rows, dtype="float32")
    return table[:, : export.n_features]


def read_input(path: str | Path, export: LoadedExport) -> np.ndarray:
    """Reads one INPUT of ``digits-zoo predict`` as ``[n, n_features]`` raw pixel rows.

    Args:
        path: a picture (PNG, JPEG, ...), a ``.npy`` array or a ``.csv`` of pixel rows.
        export: the loaded export (its image shape and pixel range).

    Raises:
        ZooError: a missing, unreadable or wrong-shaped input.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"input not found (got {str(path)!r}); pass an existing file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return as_rows(read_array(path), export, str(path))
    if suffix == ".csv":
        return as_rows(read_pixel_csv(path, export), export, str(path))
    if suffix in IMAGE_SUFFIXES:
        return read_image(path, export)
    raise ZooError(
        f"unknown input type (got {str(path)!r}); pass a PNG/JPEG picture, a .npy array or a "
        ".csv of pixel rows"
    )


def predict_inputs(
    export: LoadedExport, paths: list[str | Path], top: int = 1
) -> list[dict[str, Any]]:
    """Predicts every row of every input; all inputs are read before any is predicted.

    Args:
        export: the loaded export.
        paths: pictures, ``.npy`` arrays or ``.csv`` files.
        top: how many classes to list per row, most probable first.

    Returns:
        One dict per row: ``input`` (the file, with ``[i]`` for arrays and
        CSVs), ``class``, ``probability`` and ``top`` (a list of
        ``{"class", "probability"}``).

    Raises:
        ZooError: a bad ``top`` or a bad input (nothing is predicted then).
    """
    classes = export.classes
    if isinstance(top, bool) or not 1 <= top <= len(classes):
        raise ZooError(f"--top must be between 1 and {len(classes)} (got {top})")
    names: list[str] = []
    blocks = []
    for path in paths:
        rows = read_input(path, export)
        is_picture = Path(path).suffix.lower() in IMAGE_SUFFIXES
        names += [str(path)] if is_picture else [f"{path}[{i}]" for i in range(len(rows))]
        blocks.append(rows)
    if not blocks:
        raise ZooError("no input given; pass at least one picture, .npy or .csv file")
    probabilities, predicted = export.predict_proba(np.concatenate(blocks))
    results = []
    for name, row, label in zip(names, probabilities, predicted, strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        results.append(
            {
                "input": name,
                "class": int(label),
                "probability": float(row[int(np.flatnonzero(classes == label)[0])]),
                "top": [{"class": int(classes[j]), "probability": float(row[j])} for j in order],
            }
        )
    return results


def read_labelled(path: str | Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Reads labelled raw pixel rows in a format the dataset loaders accept.

    A ``.csv`` is the optdigits layout (pixels, then the label in the last
    column) and every row is used; a ``.npz`` or an MNIST IDX folder carries
    its own test part, which is used.

    Returns:
        ``(x, y, description)``.

    Raises:
        DataError: a missing or malformed file.
    """
    from zoo.data import load_dataset, read_csv_rows
    from zoo.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"data path not found (got {str(path)!r}); pass an existing file or folder")
    if path.is_file() and path.suffix.lower() == ".csv":
        x, y = read_csv_rows(path)
        return x, y, f"{path}: {len(y)} labelled rows"
    dataset = load_dataset(path)
    return dataset.x_test, dataset.y_test, f"{path}: its test part, {len(dataset.y_test)} rows"


def evaluate_export(export: LoadedExport, data: str | Path) -> dict[str, Any]:
    """Scores an export on a labelled data file.

    Returns:
        ``rows``, ``correct``, ``accuracy``, ``macro_f1`` and
        ``confusion_matrix`` (rows: true class, columns: predicted class, both
        in the order of ``labels``), plus ``export``, ``model`` and ``data``.

    Raises:
        ZooError: bad data, or data of another shape or pixel range than the export's.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    x, y, description = read_labelled(data)
    if x.shape[1] != export.n_features:
        raise ZooError(
            f"{data}: rows have {x.shape[1]} pixels but the export takes {export.n_features} "
            f"({'x'.join(map(str, export.image_shape))}); pass data of the kind it was trained on"
        )
    x = as_rows(x, export, str(data))
    _, predicted = export.predict_proba(x)
    labels = sorted(set(np.unique(y).tolist()) | set(np.unique(predicted).tolist()))
    return {
        "export": str(export.path),
        "model": export.name,
        "data": description,
        "rows": int(len(y)),
        "correct": int(np.sum(predicted == y)),
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro")),
        "labels": [int(label) for label in labels],
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
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
