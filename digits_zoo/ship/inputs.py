"""Reading what ``digits-zoo predict`` is given: pictures, ``.npy`` arrays, ``.csv`` pixel rows.

Inputs are converted to pixels exactly as the dataset stores them; the export
does its own scaling. Pictures are converted the way the dataset was made, by
:func:`zoo.pictures.image_to_pixels` (the optdigits counted-bitmap recipe or
the MNIST 20x20-box recipe), at the export's recorded image shape and with its
recorded picture recipe (the training data's stroke thickness; see
:attr:`digits_zoo.ship.load.LoadedExport.picture_recipe`).

Inputs are bounded before they are read: a file may hold at most
``MAX_INPUT_BYTES`` (256 MiB) and a picture at most ``MAX_IMAGE_PIXELS``
(4096 x 4096) pixels, read from its header before it is decoded. A digit needs
8x8 to 28x28 pixels; a phone photo of one (12 M pixels) still fits.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.ship.load import LoadedExport
from zoo.data import read_number_rows
from zoo.errors import ZooError
from zoo.files import npy_header
from zoo.pictures import image_to_pixels, picture_rows

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# The decoders Pillow may use, whatever a file's name says: the formats of IMAGE_SUFFIXES
# (JPEG's opener also reads the MPO JPEGs of phone cameras), so no other plugin runs (EPS
# would start Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")

# The largest input file read by predict or evaluate (a full MNIST CSV is 110 MB).
MAX_INPUT_BYTES = 256 * 2**20

# The largest picture decoded: 4096 x 4096. A 12000 x 12000 PNG compresses to 700 KB but
# decodes to gigabytes; Pillow only warns below 89 M pixels.
MAX_IMAGE_PIXELS = 4096 * 4096


def check_input_size(path: str | Path) -> None:
    """Refuses a file larger than ``MAX_INPUT_BYTES``, from its size on disk, before reading it.

    Raises:
        ZooError: the file is too large.
    """
    size = os.stat(path).st_size
    if size > MAX_INPUT_BYTES:
        raise ZooError(
            f"{path} is too large to read (got {size:,} bytes; at most {MAX_INPUT_BYTES:,}); "
            "split it into smaller files"
        )


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
        array = array.reshape(1, export.n_features)
    elif array.ndim >= 1 and tuple(array.shape[1:]) in single:
        # The width is spelled out: -1 cannot be inferred for zero images.
        array = array.reshape(len(array), export.n_features)
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


@contextlib.contextmanager
def checked_picture(source: Any, name: str) -> Iterator[Any]:
    """Opens a picture of one digit, refusing what must not be decoded, for the block's use.

    Only the decoders of ``IMAGE_FORMATS`` are tried. The picture's size is
    read from its header and checked against ``MAX_IMAGE_PIXELS`` before it is
    decoded; Pillow's own decompression-bomb warning counts as a refusal too.
    Inside the block, a picture that cannot be decoded or converted becomes one
    line naming ``name``.

    Args:
        source: a path or a binary stream.
        name: how the messages name the picture.

    Yields:
        The opened, not yet decoded, Pillow image.

    Raises:
        ZooError: unreadable, corrupt, blank or too large pictures.
    """
    from PIL import Image, UnidentifiedImageError

    too_large = (
        f"at most {MAX_IMAGE_PIXELS:,} = 4096x4096); crop or shrink the picture to the digit"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ZooError(
                        f"picture too large (got {width}x{height} = {width * height:,} pixels; "
                        f"{too_large}"
                    )
                yield image
    except ZooError as error:
        raise ZooError(f"{name}: {error}") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ZooError(
            f"{name}: picture too large (got more than {Image.MAX_IMAGE_PIXELS:,} pixels; "
            f"{too_large}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ZooError(
            f"cannot read {name!r} as an image ({error.__class__.__name__}); pass a "
            "PNG or JPEG picture of one digit"
        ) from None


def read_image(path: str | Path, export: LoadedExport) -> np.ndarray:
    """Reads a picture of one digit as one row of the export's raw pixels.

    The picture is opened by :func:`checked_picture` and converted by the
    export's picture recipe.

    Raises:
        ZooError: unreadable, corrupt, blank or too large pictures.
    """
    with checked_picture(path, str(path)) as image:
        image.load()
        row = image_to_pixels(image, export.image_shape, export.pixel_max, export.picture_recipe)
    return row.reshape(1, -1)


def read_picture(path: str | Path, export: LoadedExport) -> np.ndarray:
    """Reads a picture of one digit as the rows the export reads it by.

    :func:`zoo.pictures.picture_rows` by the export's recipe: the row
    :func:`read_image` gives, then, when the recipe records each class's own
    slant, one row per class (:meth:`LoadedExport.predict_pictures`).

    Returns:
        float32 ``[n_rows, n_features]``.

    Raises:
        ZooError: unreadable, corrupt, blank or too large pictures.
    """
    with checked_picture(path, str(path)) as image:
        image.load()
        return picture_rows(image, export.image_shape, export.pixel_max, export.picture_recipe)


def read_array(path: str | Path) -> np.ndarray:
    """Reads a ``.npy`` array without unpickling anything.

    The header's shape and dtype are checked against the file's length before
    the data are read, so a header that promises more than the file holds
    allocates nothing.

    Raises:
        ZooError: unreadable, not a plain numeric array, or shorter or longer than
            its header says.
    """
    advice = "save it with numpy.save"
    try:
        with open(path, "rb") as handle:
            version, shape, dtype, promised = npy_header(handle)
            size = os.fstat(handle.fileno()).st_size
        if dtype is None:
            raise ZooError(
                f"{path}: pixels must be a plain numeric array (got .npy format version "
                f"{version[0]}.{version[1]}, which numpy writes for named fields); {advice}"
            )
        if dtype.hasobject:
            raise ZooError(
                f"cannot read {str(path)!r} as a .npy array (got dtype {dtype}, which only "
                f"unpickling could read); {advice}"
            )
        if size != promised:
            raise ZooError(
                f"{path} holds {size} bytes but its header promises {promised} bytes (shape "
                f"{list(shape)}, dtype {dtype}); {advice}"
            )
        return np.load(path, allow_pickle=False)
    except ZooError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise ZooError(
            f"cannot read {str(path)!r} as a .npy array ({error.__class__.__name__}); {advice}"
        ) from None


def read_pixel_csv(path: str | Path, export: LoadedExport) -> np.ndarray:
    """Reads a CSV of pixel rows (no header); a trailing label column is allowed and dropped.

    Raises:
        ZooError: unreadable, non-numeric, ragged, or the wrong number of columns.
    """
    n_features = export.n_features
    layout = f"{n_features} pixels, optionally then a label"
    table = read_number_rows(path, layout=layout)
    if table.shape[1] not in (n_features, n_features + 1):
        raise ZooError(
            f"{path}: each row has {table.shape[1]} columns; this export takes {layout}, per row"
        )
    return table[:, :n_features].astype("float32")


def read_input(
    path: str | Path,
    export: LoadedExport,
    picture: Callable[[Path, LoadedExport], np.ndarray] | None = None,
) -> np.ndarray:
    """Reads one INPUT of ``digits-zoo predict`` as ``[n, n_features]`` raw pixel rows.

    Args:
        path: a picture (PNG, JPEG, ...), a ``.npy`` array or a ``.csv`` of pixel rows.
        export: the loaded export (its image shape and pixel range).
        picture: what reads a picture (default :func:`read_image`, its one stored
            row; :func:`read_picture` gives the rows it is read by).

    Raises:
        ZooError: a missing, unreadable or wrong-shaped input.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"input not found (got {str(path)!r}); pass an existing file")
    check_input_size(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return as_rows(read_array(path), export, str(path))
    if suffix == ".csv":
        return as_rows(read_pixel_csv(path, export), export, str(path))
    if suffix in IMAGE_SUFFIXES:
        return (picture or read_image)(path, export)
    raise ZooError(
        f"unknown input type (got {str(path)!r}); pass a PNG/JPEG picture, a .npy array or a "
        ".csv of pixel rows"
    )


def predict_inputs(
    export: LoadedExport,
    paths: list[str | Path],
    top: int = 1,
    min_confidence: float | None = None,
) -> list[dict[str, Any]]:
    """Predicts every row of every input; all inputs are read before any is predicted.

    Args:
        export: the loaded export.
        paths: pictures, ``.npy`` arrays or ``.csv`` files.
        top: how many classes to list per row, most probable first.
        min_confidence: rows whose (calibrated) probability is below it are
            marked ``unsure``.

    Returns:
        One dict per row: ``input`` (the file, with ``[i]`` for arrays and
        CSVs), ``class``, ``probability`` (calibrated, see
        :meth:`LoadedExport.predict_proba`; a picture's read as
        :meth:`LoadedExport.predict_pictures` reads it), ``top`` (a list of
        ``{"class", "probability"}``) and, with ``min_confidence``, ``unsure``.

    Raises:
        ZooError: a bad ``top`` or ``min_confidence``, or a bad input (nothing
            is predicted then).
    """
    check_min_confidence(min_confidence)
    classes = export.classes
    if isinstance(top, bool) or not 1 <= top <= len(classes):
        raise ZooError(f"--top must be between 1 and {len(classes)} (got {top})")
    names: list[str] = []
    pictures: list[np.ndarray] = []  # each [n_rows, n_features]: read class by class
    rows: list[np.ndarray] = []  # arrays' and CSVs' rows, read one by one
    picture_at: list[int] = []  # where each picture and each row goes among the results
    row_at: list[int] = []
    for path in paths:
        block = read_input(path, export, picture=read_picture)
        if Path(path).suffix.lower() in IMAGE_SUFFIXES:
            picture_at.append(len(names))
            names.append(str(path))
            pictures.append(block)
        else:
            row_at += range(len(names), len(names) + len(block))
            names += [f"{path}[{i}]" for i in range(len(block))]
            rows.append(block)
    if not pictures and not rows:
        raise ZooError("no input given; pass at least one picture, .npy or .csv file")
    # float64 holds either reading's values exactly.
    probabilities = np.zeros((len(names), len(classes)), dtype="float64")
    predicted = np.zeros(len(names), dtype=classes.dtype)
    # One model call for all pictures ([n_pictures, n_rows, n_features]), one for all rows.
    if pictures:
        probabilities[picture_at], predicted[picture_at] = export.predict_pictures(
            np.stack(pictures)
        )
    if rows:
        probabilities[row_at], predicted[row_at] = export.predict_proba(np.concatenate(rows))
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
        if min_confidence is not None:
            results[-1]["unsure"] = results[-1]["probability"] < min_confidence
    return results


def check_min_confidence(min_confidence: float | None) -> None:
    """Checks a ``--min-confidence`` value: ``None``, or a probability from 0 to 1.

    Raises:
        ZooError: anything else.
    """
    if min_confidence is None:
        return
    if isinstance(min_confidence, bool) or not 0.0 <= float(min_confidence) <= 1.0:
        raise ZooError(
            f"--min-confidence must be a probability from 0 to 1 (got {min_confidence}); "
            "pass, for example, 0.9"
        )
