"""Datasets: the bundled digits and local files, validated and split once.

Formats, known from the path:

* nothing: scikit-learn's bundled digits (1,797 8x8 images, values 0..16);
* ``*.csv``: the UCI optdigits layout, pixel columns then the label, no header;
* ``*.npz``: the Keras MNIST layout (``x_train, y_train, x_test, y_test``);
* a folder: MNIST IDX files (``train-images-idx3-ubyte[.gz]`` and friends).

Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from zoo.errors import DataError

DEFAULT_TEST_SIZE = 0.2


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into a training part and a held-out test part.

    Pixel rows are stored flat and raw, exactly as the source stores them
    (0..16 for the bundled digits, 0..255 for MNIST); ``scale`` maps them to
    ``[0, 1]`` for training.

    Attributes:
        name: ``digits`` or the file's path.
        x_train, y_train, x_test, y_test: flat float32 pixels and int64 labels.
        image_shape: the shape of one image, such as ``(8, 8)``.
        pixel_max: the largest value a pixel can take (16, 255, ...).
        test_source: ``split`` (made here, with ``split_seed``) or ``file``.
        split_seed: the seed of the stratified split, when one was made.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...]
    pixel_max: float
    test_source: str
    split_seed: int | None = None

    @property
    def classes(self) -> list[int]:
        """The class labels, sorted."""
        return [int(c) for c in np.unique(np.concatenate([self.y_train, self.y_test]))]

    @property
    def n_features(self) -> int:
        """Pixels per image."""
        return int(self.x_train.shape[1])

    def scale(self, x: np.ndarray) -> np.ndarray:
        """Maps raw pixel values to ``[0, 1]`` as float32."""
        return (np.asarray(x, dtype="float32") / np.float32(self.pixel_max)).astype("float32")

    def fingerprint(self) -> str:
        """A short hash of the data and its split, to recognise a run's dataset."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        """A JSON-ready summary for run metadata."""
        return {
            "name": self.name,
            "image_shape": list(self.image_shape),
            "pixel_max": self.pixel_max,
            "classes": self.classes,
            "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)),
            "test_source": self.test_source,
            "split_seed": self.split_seed,
            "fingerprint": self.fingerprint(),
        }


def load_dataset(
    path: str | Path | None = None, *, test_size: float = DEFAULT_TEST_SIZE, seed: int = 0
) -> Dataset:
    """Loads a dataset and splits off its held-out test part.

    Args:
        path: a local file or folder (see the module docstring); ``None`` or
            ``"digits"`` for the bundled digits.
        test_size: the stratified test fraction, for data with no test part.
        seed: the seed of that split.

    Returns:
        The dataset.

    Raises:
        DataError: the path is missing, unreadable or malformed.
    """
    if not 0.0 < test_size < 1.0:
        raise DataError(f"test size must be between 0 and 1 (got {test_size})")
    if path is None or str(path) == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, y = bunch.data.astype("float32"), bunch.target.astype("int64")
        return _split("digits", x, y, (8, 8), 16.0, test_size, seed)
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path not found (got {str(path)!r}); pass an existing file or folder")
    if path.is_dir():
        return _load_idx_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, y = read_csv_rows(path)
        side = math.isqrt(x.shape[1])
        shape = (side, side) if side * side == x.shape[1] else (x.shape[1],)
        return _split(str(path), x, y, shape, _pixel_max(x), test_size, seed)
    if suffix == ".npz":
        return _load_npz(path)
    raise DataError(
        f"unknown data format (got {str(path)!r}); use a .csv (optdigits layout), a .npz "
        "(x_train, y_train, x_test, y_test) or a folder of MNIST IDX files"
    )


def read_number_rows(path: str | Path, *, layout: str) -> np.ndarray:
    """Reads a headerless CSV of numbers: one row per non-blank line, all rows one width.

    What the columns mean is the caller's business; ``layout`` only words the
    error messages.

    Args:
        path: the CSV file (UTF-8 text, comma-separated, no header).
        layout: what one line should hold, such as ``"pixel columns then a label"``.

    Returns:
        float64 ``[n_rows, n_columns]``, every value finite.

    Raises:
        DataError: unreadable, empty, non-numeric, ragged, or NaN or infinite values.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read {str(path)!r} ({error.__class__.__name__}); pass a readable text CSV"
        ) from None
    rows = []
    width = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if width is None:
            width = len(cells)
        elif len(cells) != width:
            raise DataError(
                f"{path}: line {number} has {len(cells)} columns, expected {width} like the "
                f"first row; every line holds {layout}"
            )
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise DataError(
                f"{path}: line {number} has a non-numeric value (got {bad.strip()!r}); the CSV "
                f"must be comma-separated numbers only, with no header: each line holds {layout}"
            ) from None
    if not rows:
        raise DataError(f"{path} holds no rows; each line should hold {layout}")
    table = np.asarray(rows, dtype="float64")
    if not np.isfinite(table).all():
        raise DataError(f"{path} holds NaN or infinite values; every value must be finite")
    return table


def read_csv_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads an optdigits-style CSV: pixel columns then an integer label, no header.

    Raises:
        DataError: unreadable, empty, non-numeric, ragged, or non-integer labels.
    """
    layout = "pixel columns then a label"
    table = read_number_rows(path, layout=layout)
    if table.shape[1] < 2:
        raise DataError(f"{path}: rows have {table.shape[1]} column; expected {layout}")
    x, y = table[:, :-1], table[:, -1]
    return x.astype("float32"), _integer_labels(y, path)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integer_labels(y: np.ndarray, source) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be one value per image (got shape {y.shape})")
    if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
        raise DataError(f"{source}: labels must be integers (got dtype {y.dtype})")
    if not np.all(y == np.round(y)):
        bad = y[y != np.round(y)][0]
        raise DataError(
            f"{source}: labels must be integers (got {bad}); is the label the last column?"
        )
    return y.astype("int64")


def _pixel_max(x: np.ndarray) -> float:
    """The pixel range a dataset's values live in: 16 (optdigits), 255 (8-bit) or 1."""
    top = float(np.max(x)) if x.size else 0.0
    for limit in (1.0, 16.0, 255.0):
        if top <= limit:
            return limit
    return top


def _check_pixels(x: np.ndarray, source) -> None:
    if not np.isfinite(x).all():
        raise DataError(f"{source}: pixels must be finite numbers (found NaN or infinity)")
    if x.size and float(np.min(x)) < 0:
        raise DataError(f"{source}: pixels must be non-negative (got {float(np.min(x))})")


def _check_classes(y: np.ndarray, source) -> None:
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"{source}: needs at least 2 classes to classify (got {len(classes)})")


def _split(name, x, y, image_shape, pixel_max, test_size, seed) -> Dataset:
    _check_pixels(x, name)
    _check_classes(y, name)
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise DataError(
            f"{name}: class {classes[counts.argmin()]} has {counts.min()} sample(s) among "
            f"{len(y)}; a stratified {test_size:.0%} test split needs at least 2 per class"
        )
    n_test = math.ceil(test_size * len(y))
    if n_test < len(classes) or len(y) - n_test < len(classes):
        raise DataError(
            f"{name}: a {test_size:.0%} test split of {len(y)} samples leaves {n_test} test and "
            f"{len(y) - n_test} training samples for {len(classes)} classes; each side needs "
            "one per class: change --test-size or use more data"
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    return Dataset(
        str(name), x_train, y_train, x_test, y_test, tuple(image_shape), pixel_max, "split", seed
    )


def _from_parts(name, x_train, y_train, x_test, y_test) -> Dataset:
    """Validates a dataset that ships its own test part."""
    arrays = {}
    for key, array in (("x_train", x_train), ("x_test", x_test)):
        array = np.asarray(array)
        if array.ndim < 2 or not np.issubdtype(array.dtype, np.number):
            raise DataError(
                f"{name}: {key} must be a numeric array of images (got shape {array.shape}, "
                f"dtype {array.dtype})"
            )
        arrays[key] = array
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{name}: train and test images differ in shape ({arrays['x_train'].shape[1:]} "
            f"against {arrays['x_test'].shape[1:]})"
        )
    y_train = _integer_labels(np.asarray(y_train), name)
    y_test = _integer_labels(np.asarray(y_test), name)
    for key, labels in (("train", y_train), ("test", y_test)):
        if len(labels) != len(arrays[f"x_{key}"]):
            raise DataError(
                f"{name}: {len(arrays[f'x_{key}'])} {key} images but {len(labels)} {key} labels"
            )
    image_shape = tuple(int(s) for s in arrays["x_train"].shape[1:])
    x_train = arrays["x_train"].reshape(len(y_train), -1).astype("float32")
    x_test = arrays["x_test"].reshape(len(y_test), -1).astype("float32")
    _check_pixels(x_train, name)
    _check_pixels(x_test, name)
    _check_classes(y_train, name)
    unseen = sorted(int(c) for c in set(np.unique(y_test)) - set(np.unique(y_train)))
    if unseen:
        raise DataError(f"{name}: test labels {unseen} never appear in the training part")
    pixel_max = _pixel_max(np.concatenate([x_train.ravel()[:100000], x_test.ravel()[:100000]]))
    return Dataset(str(name), x_train, y_train, x_test, y_test, image_shape, pixel_max, "file")


def _load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive]
            if missing:
                raise DataError(
                    f"{path} lacks {', '.join(missing)}; a .npz needs x_train, y_train, x_test, "
                    f"y_test (found {', '.join(archive.files) or 'nothing'})"
                )
            parts = [archive[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read {str(path)!r} as a .npz archive ({error.__class__.__name__}); "
            "save it with numpy.savez"
        ) from None
    return _from_parts(str(path), *parts)


_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _find_idx(folder: Path, key: str) -> Path:
    for base in _IDX_NAMES[key]:
        for candidate in (folder / base, folder / f"{base}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(
        f"{folder} has no {_IDX_NAMES[key][0]}[.gz]; an MNIST folder needs the four IDX files "
        "(train-images, train-labels, t10k-images, t10k-labels)"
    )


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into an array.

    Raises:
        DataError: unreadable, a bad magic number, or a size that does not match.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read {str(path)!r} ({error.__class__.__name__}); is it a valid IDX file?"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header is incomplete")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header promises {expected} (shape {shape})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _load_idx_folder(folder: Path) -> Dataset:
    parts = {key: read_idx(_find_idx(folder, key)) for key in _IDX_NAMES}
    return _from_parts(
        str(folder), parts["x_train"], parts["y_train"], parts["x_test"], parts["y_test"]
    )
