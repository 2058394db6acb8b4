"""Datasets: the bundled digits and local files, validated and split once.

Datasets known by name (``DATASET_NAMES``):

* nothing or ``digits``: scikit-learn's bundled digits (1,797 8x8 images, values
  0..16), split here into training and test parts;
* ``optdigits``: UCI's writer-independent protocol on the same kind of images:
  the 3,823 digits of 30 writers (UCI's ``optdigits.tra``, shipped gzipped in
  ``zoo/datasets/``) to train on, the 1,797 of 13 other writers (the bundled
  digits, which are UCI's ``optdigits.tes``) as the test part.

Anything else is a local path; its format is known from the path:

* ``*.csv``: the UCI optdigits layout, pixel columns then the label, no header;
* ``*.npz``: the Keras MNIST layout (``x_train, y_train, x_test, y_test``);
* a folder: MNIST IDX files (``train-images-idx3-ubyte[.gz]`` and friends),
  or labelled pictures, one subfolder per class named by its class number
  (``0/``, ``1/``, ...: the layout Keras' ``image_dataset_from_directory``
  reads), each picture converted by the project's picture recipe
  (:func:`zoo.pictures.image_to_pixels`) into the bundled digits' format, 8x8
  counts 0..16.

Several sources combine into one training set (:func:`load_dataset` given a
list): the first is the protocol (its test part, image format, picture recipe
and classes); each later one only adds training rows, converted to the first's
format (see :func:`read_added_rows`).

Pixels must lie in 0..255; the range (0..1, 0..16 or 0..255) is inferred
from the data, and a 0..16 file with a few stray values above 16 is refused
rather than read as 8-bit images (see ``_infer_pixel_max``). Labels are class
numbers: integers in ``0..MAX_LABEL - 1``. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from zoo.errors import DataError, ZooError
from zoo.pictures import PictureRecipe, image_to_pixels, recipe_from_counts

DEFAULT_TEST_SIZE = 0.2

# Datasets known by name; any other ``data`` argument is a path (``./optdigits`` is a path).
DATASET_NAMES = ("digits", "optdigits")

# UCI's optdigits training file, gzipped inside the package (its source and licence are in
# zoo/datasets/README.md). The md5 is the uncompressed file's as UCI publishes it: a damaged
# or edited copy is refused rather than trained on.
OPTDIGITS_TRAIN_FILE = "optdigits.tra.gz"
OPTDIGITS_TRAIN_MD5 = "268ce7771f3f15afbc54402478b1d454"

# Labels are class numbers: small non-negative integers. The bound keeps them exact as
# int64 and float64 (1e20 and 2e20 would otherwise overflow into one class).
MAX_LABEL = 10**6

# Fewer values than this fraction above 16 in data that is otherwise 0..16 mark a damaged
# optdigits file, not 8-bit images (see _infer_pixel_max).
CORRUPT_FRACTION = 0.01

# The most bytes one IDX file may declare; the whole of MNIST's training images is 47 MB.
MAX_IDX_BYTES = 4 * 2**30

# A picture folder: the file types Keras' image_dataset_from_directory reads, and the most
# pictures one folder may hold (each is decoded and converted: about a millisecond apiece).
PICTURE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
MAX_PICTURES = 100_000
# The format a picture folder is converted to when it is the first source: the bundled
# digits' 8x8 counts 0..16.
PICTURE_IMAGE_SHAPE = (8, 8)
PICTURE_PIXEL_MAX = 16.0

# A later source that holds at least this share of the first's test digits (exact rows) is
# refused: training on them would make the test figure meaningless (``digits`` after
# ``optdigits``, whose test part is the bundled digits).
TEST_OVERLAP_FRACTION = 0.05

# One source, or several (the first is the protocol; the others add training rows).
DataSources = str | Path | None | Sequence[str | Path]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into a training part and a held-out test part.

    Pixel rows are stored flat and raw, exactly as the source stores them
    (0..16 for the bundled digits, 0..255 for MNIST); ``scale`` maps them to
    ``[0, 1]`` for training.

    Attributes:
        name: ``digits``, ``optdigits`` or the file's path.
        x_train, y_train, x_test, y_test: flat float32 pixels and int64 labels.
        image_shape: the shape of one image, such as ``(8, 8)``.
        pixel_max: the largest value a pixel can take: 1, 16 or 255.
        test_source: ``split`` (made here, with ``split_seed``) or ``file``.
        split_seed: the seed of the stratified split, when one was made.
        added: for a combined dataset, each later source's name and the
            training rows it added (``[{"name": ..., "rows": ...}]``); empty
            for one source.
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
    added: tuple[dict, ...] = ()

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
        """A JSON-ready summary for run metadata (``added`` only for combined sources)."""
        summary = {
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
        if self.added:
            summary["added"] = [dict(source) for source in self.added]
        return summary


def load_dataset(
    path: DataSources = None, *, test_size: float = DEFAULT_TEST_SIZE, seed: int = 0
) -> Dataset:
    """Loads a dataset, or combines several sources, and splits off its held-out test part.

    Args:
        path: a local file or folder (see the module docstring); ``None`` or
            ``"digits"`` for the bundled digits; ``"optdigits"`` for UCI's
            writer-independent protocol. A list of those combines them: the
            first is loaded as alone (test part, format, classes) and each
            later one adds its rows to the training part only
            (:func:`read_added_rows`).
        test_size: the stratified test fraction, for data with no test part
            (checked, then unused, for data that ships its own, such as
            ``optdigits`` or a .npz).
        seed: the seed of that split.

    Returns:
        The dataset.

    Raises:
        DataError: the path is missing, unreadable or malformed, or a later
            source does not fit the first.
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise DataError("no data source given (got an empty list); pass at least one --data")
        dataset = load_dataset(path[0], test_size=test_size, seed=seed)
        for other in path[1:]:
            dataset = add_training_rows(dataset, other, test_size=test_size, seed=seed)
        return dataset
    if not 0.0 < test_size < 1.0:
        raise DataError(f"test size must be between 0 and 1 (got {test_size})")
    if path is None or str(path) == "digits":
        bunch = load_digits()
        x, y = bunch.data.astype("float32"), bunch.target.astype("int64")
        return _split("digits", x, y, (8, 8), 16.0, test_size, seed)
    if str(path) == "optdigits":
        return load_optdigits()
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path not found (got {str(path)!r}); pass an existing file or folder")
    if path.is_dir():
        if _is_picture_folder(path):
            x, y = read_picture_folder(path, PICTURE_IMAGE_SHAPE, PICTURE_PIXEL_MAX)
            return _split(str(path), x, y, PICTURE_IMAGE_SHAPE, PICTURE_PIXEL_MAX, test_size, seed)
        return _load_idx_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, y, lines = _read_labelled_table(path)
        side = math.isqrt(x.shape[1])
        shape = (side, side) if side * side == x.shape[1] else (x.shape[1],)
        pixel_max = _infer_pixel_max([(x, lambda row: f"line {lines[row]}")], str(path))
        return _split(str(path), x, y, shape, pixel_max, test_size, seed)
    if suffix == ".npz":
        return _load_npz(path)
    raise DataError(
        f"unknown data format (got {str(path)!r}); use a .csv (optdigits layout), a .npz "
        "(x_train, y_train, x_test, y_test), a folder of MNIST IDX files or a folder of "
        "pictures with one subfolder per class"
    )


def read_added_rows(
    source: str | Path,
    like: Dataset,
    *,
    test_size: float = DEFAULT_TEST_SIZE,
    seed: int = 0,
    recipe: PictureRecipe | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a source's labelled rows in the format of another dataset, to train on.

    A picture folder is converted by ``like``'s picture recipe (its image
    shape and pixel range; ``recipe`` for a counted bitmap matched to a
    training set, as an export records it), every picture kept. A CSV (such
    as the page's collected digits) gives every row. A source that ships or
    makes its own test part (``digits``, ``optdigits``, a .npz, an IDX folder)
    gives its training part only. Pixel rows must already be in ``like``'s
    format: as many pixels per image and the same pixel range.

    Args:
        source: anything ``load_dataset`` takes, one source.
        like: the dataset whose format and classes the rows must have.
        test_size, seed: the split of a source that makes its own test part.
        recipe: the picture recipe for a picture folder (default: the plain one).

    Returns:
        ``(x, y)``: float32 raw pixel rows and int64 labels, at least one row.

    Raises:
        DataError: unreadable or malformed, another image format or pixel range,
            or labels that are not among ``like``'s classes.
    """
    name = str(source)
    path = Path(source)
    if is_picture_folder(source):
        x, y = read_picture_folder(path, like.image_shape, like.pixel_max, recipe)
        pixel_max = like.pixel_max
    elif name not in DATASET_NAMES and path.suffix.lower() == ".csv" and path.is_file():
        x, y, lines = _read_labelled_table(path)
        if x.shape[1] != like.n_features:
            raise DataError(
                f"{name}: rows hold {x.shape[1]} pixels but {like.name}'s images have "
                f"{like.n_features} ({'x'.join(map(str, like.image_shape))}); combine sources "
                "of one image format, or pass pictures (a folder of them) to be converted"
            )
        pixel_max = _infer_pixel_max([(x, lambda row: f"line {lines[row]}")], name)
    else:
        other = load_dataset(source, test_size=test_size, seed=seed)
        x, y, pixel_max = other.x_train, other.y_train, other.pixel_max
        if other.image_shape != like.image_shape:
            raise DataError(
                f"{name}: images of {'x'.join(map(str, other.image_shape))} pixels, but "
                f"{like.name}'s are {'x'.join(map(str, like.image_shape))}; combine sources of "
                "one image format, or pass pictures (a folder of them) to be converted"
            )
    if pixel_max != like.pixel_max:
        raise DataError(
            f"{name}: pixels range over 0..{pixel_max:g} but {like.name}'s over "
            f"0..{like.pixel_max:g}; combine sources of one pixel range, or pass pictures "
            "(a folder of them) to be converted"
        )
    unknown = sorted(set(int(c) for c in np.unique(y)) - set(like.classes))
    if unknown:
        raise DataError(
            f"{name}: labels {unknown} are not among {like.name}'s classes {like.classes}; "
            "a later source adds training rows of the first source's classes only"
        )
    return x.astype("float32"), y.astype("int64")


def add_training_rows(
    dataset: Dataset, source: str | Path, *, test_size: float = DEFAULT_TEST_SIZE, seed: int = 0
) -> Dataset:
    """Returns ``dataset`` with a later source's rows (:func:`read_added_rows`) added to its
    training part; the test part, format and classes stay the first source's.

    A later picture folder is converted by the recipe matched to the first
    source's training images (:func:`zoo.pictures.recipe_from_counts`), the one
    an export of such data records for the pictures it is given.

    Raises:
        DataError: as :func:`read_added_rows`, or a source that holds the test part's digits.
    """
    recipe = recipe_from_counts(dataset.x_train, dataset.image_shape, dataset.pixel_max)
    x, y = read_added_rows(source, dataset, test_size=test_size, seed=seed, recipe=recipe)
    check_test_overlap(dataset, x, source)
    return replace(
        dataset,
        name=f"{dataset.name} + {source}",
        x_train=np.concatenate([dataset.x_train, x]),
        y_train=np.concatenate([dataset.y_train, y]),
        added=(*dataset.added, {"name": str(source), "rows": int(len(y))}),
    )


def with_test_in_training(dataset: Dataset) -> Dataset:
    """``dataset`` with its test rows added to its training part: every labelled digit it has.

    For refitting a model the protocol has chosen (as AutoGluon's
    ``refit_full`` does). The test part stays, for checks, but a model fitted
    on the result is no longer held out from it.
    """
    return replace(
        dataset,
        name=f"{dataset.name} (training and test)",
        x_train=np.concatenate([dataset.x_train, dataset.x_test]),
        y_train=np.concatenate([dataset.y_train, dataset.y_test]),
    )


def check_test_overlap(dataset: Dataset, x: np.ndarray, source) -> None:
    """Refuses rows to train on that are, in ``TEST_OVERLAP_FRACTION`` or more, test digits.

    A few equal rows can be chance (a plain 1 drawn twice); a source that holds
    the test part (``digits`` after ``optdigits``) is not.

    Raises:
        DataError: ``source``'s rows ``x`` repeat too many of ``dataset``'s test rows.
    """
    test_rows = {row.tobytes() for row in np.ascontiguousarray(dataset.x_test, dtype="float32")}
    shared = sum(row.tobytes() in test_rows for row in np.ascontiguousarray(x, dtype="float32"))
    if shared and shared >= TEST_OVERLAP_FRACTION * len(x):
        raise DataError(
            f"{source}: {shared} of its {len(x)} digits are digits of {dataset.name}'s test "
            "part; training on them would make the test figure meaningless: leave that "
            "source out, or make it the first --data"
        )


def _is_picture_folder(folder: Path) -> bool:
    """A folder of labelled pictures: no IDX file in it, and at least one subfolder."""
    if any(
        (folder / base).is_file() or (folder / f"{base}.gz").is_file()
        for names in _IDX_NAMES.values()
        for base in names
    ):
        return False
    return any(entry.is_dir() and not entry.name.startswith(".") for entry in folder.iterdir())


def read_picture_folder(
    folder: str | Path,
    image_shape: tuple[int, ...] = PICTURE_IMAGE_SHAPE,
    pixel_max: float = PICTURE_PIXEL_MAX,
    recipe: PictureRecipe | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads a folder of labelled pictures: one subfolder per class, named by its class number.

    The layout is the one Keras' ``image_dataset_from_directory`` reads
    (``folder/3/any-name.png``; pictures in deeper folders belong to the class
    folder above them), with classes that are numbers, as labels are here.
    Hidden files and folders (a leading dot) are skipped. Each picture is
    converted by :func:`zoo.pictures.image_to_pixels` to ``image_shape`` and
    ``pixel_max``.

    Args:
        folder: the folder.
        image_shape, pixel_max: the format to convert to (default: the bundled
            digits' 8x8 counts 0..16).
        recipe: the counted bitmap's recipe (default: the plain one).

    Returns:
        ``(x, y)``: float32 ``[n, prod(image_shape)]`` raw pixels and int64 labels,
        in the order of the sorted class and file names.

    Raises:
        DataError: an empty folder, a file beside the class folders, a folder
            whose name is not a class number, a file that is not a picture or
            shows no digit, or more than ``MAX_PICTURES`` files.
    """
    folder = Path(folder)
    files = _picture_files(folder)
    rows = [_picture_row(path, folder, image_shape, pixel_max, recipe) for path, _ in files]
    return np.stack(rows).astype("float32"), np.array([label for _, label in files], "int64")


def is_picture_folder(source: str | Path) -> bool:
    """Whether a source is a folder of labelled pictures (:func:`read_picture_folder`)."""
    path = Path(source)
    return str(source) not in DATASET_NAMES and path.is_dir() and _is_picture_folder(path)


def picture_folder_images(folder: str | Path) -> tuple[list[Any], np.ndarray]:
    """The pictures of a picture folder as loaded ``PIL`` images, with their labels, in the
    order :func:`read_picture_folder` converts them (which checks them: read it first).

    Raises:
        DataError: as :func:`read_picture_folder`, for its layout and its files.
    """
    folder = Path(folder)
    files = _picture_files(folder)
    images = []
    for path, _ in files:
        with _opened_picture(path, folder) as image:
            images.append(image.copy())
    return images, np.array([label for _, label in files], "int64")


def _picture_files(folder: Path) -> list[tuple[Path, int]]:
    """A picture folder's files and their classes, sorted, its layout checked."""
    layout = "one subfolder per class, named by its class number (0/, 1/, ...), pictures in them"
    entries = sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))
    if not entries:
        raise DataError(
            f"{folder} is empty: it has no train-images-idx3-ubyte[.gz] (an MNIST folder) and "
            f"no class subfolders (a picture folder holds {layout})"
        )
    files: list[tuple[Path, int]] = []
    for entry in entries:
        if not entry.is_dir():
            raise DataError(
                f"{folder}: {entry.name!r} is a file beside the class folders; a picture folder "
                f"holds {layout}: move it into its class's folder"
            )
        label = entry.name
        if not (label.isascii() and label.isdigit() and int(label) < MAX_LABEL):
            raise DataError(
                f"{folder}: subfolder {label!r} is not a class (got a name that is not a class "
                f"number 0..{MAX_LABEL - 1}); a picture folder holds {layout}"
            )
        for path in sorted(entry.rglob("*")):
            relative = path.relative_to(entry)
            if any(part.startswith(".") for part in relative.parts) or path.is_dir():
                continue
            files.append((path, int(label)))
            if len(files) > MAX_PICTURES:
                raise DataError(
                    f"{folder} holds more than {MAX_PICTURES} files; a picture folder may hold "
                    f"at most {MAX_PICTURES} pictures: pass fewer, or convert them to a .npz"
                )
    if not files:
        raise DataError(f"{folder}: its class folders hold no pictures; it should hold {layout}")
    return files


def _picture_row(path, folder, image_shape, pixel_max, recipe) -> np.ndarray:
    """One picture file converted to a pixel row, or a one-line error naming the file."""
    with _opened_picture(path, folder) as image:
        return image_to_pixels(image, image_shape, pixel_max, recipe)


@contextmanager
def _opened_picture(path: Path, folder: Path) -> Iterator[Any]:
    """A picture file of a picture folder, opened and loaded; what goes wrong with it, or with
    its conversion in the ``with`` block, becomes a one-line error naming the file."""
    from PIL import Image, UnidentifiedImageError

    where = path.relative_to(folder)
    kinds = ", ".join(PICTURE_SUFFIXES)
    if path.suffix.lower() not in PICTURE_SUFFIXES:
        raise DataError(
            f"{folder}: {str(where)!r} is not a picture (got a {path.suffix or 'nameless'} "
            f"file); a picture folder holds {kinds} files only: remove it"
        )
    try:
        with Image.open(path) as image:
            image.load()
            yield image
    except ZooError as error:
        # A blank picture: the recipe finds no digit in it. (ZooError is a ValueError.)
        raise DataError(f"{folder}: {str(where)!r}: {error}; remove or replace it") from None
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as error:
        raise DataError(
            f"{folder}: {str(where)!r} is not a readable picture ({error.__class__.__name__}); "
            f"a picture folder holds {kinds} files only: remove or replace it"
        ) from None


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
    return _read_numbered_rows(path, layout)[0]


def _read_numbered_rows(path: str | Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_number_rows`, plus the file's line number of each row (blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read {str(path)!r} ({error.__class__.__name__}); pass a readable text CSV"
        ) from None
    return _parse_numbered_rows(text, path, layout)


def _parse_numbered_rows(text: str, path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_read_numbered_rows` on text already read; ``path`` names it in messages."""
    rows = []
    lines = []
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
            # One array per row: a list of Python floats would take three times the memory.
            rows.append(np.array([float(cell) for cell in cells], dtype="float64"))
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise DataError(
                f"{path}: line {number} has a non-numeric value (got {bad.strip()!r}); the CSV "
                f"must be comma-separated numbers only, with no header: each line holds {layout}"
            ) from None
        lines.append(number)
    if not rows:
        raise DataError(f"{path} holds no rows; each line should hold {layout}")
    table = np.stack(rows)
    if not np.isfinite(table).all():
        raise DataError(f"{path} holds NaN or infinite values; every value must be finite")
    return table, np.asarray(lines)


def read_csv_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads an optdigits-style CSV: pixel columns then an integer label, no header.

    Raises:
        DataError: unreadable, empty, non-numeric, ragged, or labels that are not
            integers in ``0..MAX_LABEL - 1``.
    """
    x, y, _ = _read_labelled_table(path)
    return x, y


def _read_labelled_table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`read_csv_rows`, plus the file's line number of each row."""
    layout = "pixel columns then a label"
    table, lines = _read_numbered_rows(path, layout)
    if table.shape[1] < 2:
        raise DataError(f"{path}: rows have {table.shape[1]} column; expected {layout}")
    x, y = table[:, :-1], table[:, -1]
    labels = _integer_labels(y, path, lambda row: f"line {lines[row]}")
    return x.astype("float32"), labels, lines


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integer_labels(y: np.ndarray, source, position: Callable[[int], str]) -> np.ndarray:
    """Checks labels are whole numbers in ``0..MAX_LABEL - 1``; ``position(i)`` names label i."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be one value per image (got shape {y.shape})")
    if y.dtype.kind not in "iuf":
        raise DataError(f"{source}: labels must be integers (got dtype {y.dtype})")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        whole = np.zeros_like(finite)
        whole[finite] = y[finite] == np.round(y[finite])
        if not whole.all():
            row = int(np.argmin(whole))
            raise DataError(
                f"{source}: labels must be integers (got {_number(y[row])}) at {position(row)}; "
                "is the label the last column?"
            )
    outside = (y < 0) | (y >= MAX_LABEL)
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(
            f"{source}: labels must be integers in 0..{MAX_LABEL - 1} (got {_number(y[row])} at "
            f"{position(row)}); labels are class numbers such as 0..9"
        )
    return y.astype("int64")


def _number(value) -> str:
    """A number as a person would write it: ``17``, ``1.5``, ``1e+20``."""
    return f"{float(value):.10g}"


def _infer_pixel_max(parts: list[tuple[np.ndarray, Callable[[int], str]]], source) -> float:
    """Infers the range a dataset's raw pixels live in, or refuses data that fits none.

    The rule, on every value of every part:

    * a value below 0 or above 255, or one that is not finite: refused;
    * largest value at most 1: ``0..1`` (binary or already scaled pixels);
    * largest value at most 16: ``0..16`` (the optdigits counts);
    * otherwise ``0..255`` (8-bit images such as MNIST), but only when at least
      ``CORRUPT_FRACTION`` (1%) of the values exceed 16. Fewer than that in data
      that is otherwise ``0..16`` is almost certainly a damaged optdigits file
      (8-bit digit images have far more ink than 1% of their pixels): refused,
      naming the largest stray value and where it is, rather than scaling every
      pixel by 1/255.

    Args:
        parts: ``(rows, position)`` pairs: 2-D ``[n, n_features]`` pixel rows and a
            function naming row ``i`` in messages (``"line 12"``, ``"x_train[3]"``).
        source: the data's name, for messages.

    Returns:
        1.0, 16.0 or 255.0.

    Raises:
        DataError: values outside ``0..255``, or a 0..16 file with a few values above 16.
    """
    top, where = 0.0, ""
    for rows, position in parts:
        _check_pixels(rows, source)
        if rows.size:
            row = int(np.argmax(rows.max(axis=1)))
            if float(rows[row].max()) > top:
                top, where = float(rows[row].max()), position(row)
    if top <= 1:
        return 1.0
    if top <= 16:
        return 16.0
    if top > 255:
        raise DataError(
            f"{source}: pixel values must lie in 0..255 (got {_number(top)} at {where}); pass "
            "raw 8-bit (0..255) or optdigits (0..16) pixels"
        )
    total = sum(int(rows.size) for rows, _ in parts)
    above = sum(int(np.count_nonzero(rows > 16)) for rows, _ in parts)
    if above < CORRUPT_FRACTION * total:
        raise DataError(
            f"{source}: pixel values must lie in 0..16 (optdigits) or 0..255 (8-bit images): "
            f"{above} of {total} values exceed 16, the largest {_number(top)} at {where}; fewer "
            f"than {CORRUPT_FRACTION:.0%} above 16 marks a damaged 0..16 file, not 8-bit "
            "images: correct those values"
        )
    return 255.0


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


def _from_parts(name, x_train, y_train, x_test, y_test, where=None) -> Dataset:
    """Validates a dataset that ships its own test part.

    ``where`` maps each part (``x_train``, ...) to its name in messages (default:
    the part's own name, as in a .npz).
    """
    where = {key: key for key in ("x_train", "y_train", "x_test", "y_test")} | (where or {})
    arrays = {}
    for key, array in (("x_train", x_train), ("x_test", x_test)):
        array = np.asarray(array)
        if array.ndim < 2 or array.dtype.kind not in "iuf":
            raise DataError(
                f"{name}: {where[key]} must be a numeric array of images (got shape "
                f"{array.shape}, dtype {array.dtype})"
            )
        if len(array) == 0:
            raise DataError(
                f"{name}: {where[key]} holds no images (got shape {array.shape}); both parts "
                "need at least one image per class"
            )
        if math.prod(array.shape[1:]) == 0:
            raise DataError(
                f"{name}: {where[key]} images have no pixels (got shape {array.shape}); pass "
                "images of at least one pixel"
            )
        arrays[key] = array
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{name}: train and test images differ in shape ({arrays['x_train'].shape[1:]} "
            f"against {arrays['x_test'].shape[1:]})"
        )
    y_train = _integer_labels(y_train, name, lambda i: f"{where['y_train']}[{i}]")
    y_test = _integer_labels(y_test, name, lambda i: f"{where['y_test']}[{i}]")
    for key, labels in (("train", y_train), ("test", y_test)):
        if len(labels) != len(arrays[f"x_{key}"]):
            raise DataError(
                f"{name}: {len(arrays[f'x_{key}'])} {key} images but {len(labels)} {key} labels"
            )
    image_shape = tuple(int(s) for s in arrays["x_train"].shape[1:])
    x_train = arrays["x_train"].reshape(len(y_train), -1).astype("float32")
    x_test = arrays["x_test"].reshape(len(y_test), -1).astype("float32")
    pixel_max = _infer_pixel_max(
        [
            (x_train, lambda i: f"{where['x_train']}[{i}]"),
            (x_test, lambda i: f"{where['x_test']}[{i}]"),
        ],
        name,
    )
    _check_classes(y_train, name)
    unseen = sorted(int(c) for c in set(np.unique(y_test)) - set(np.unique(y_train)))
    if unseen:
        raise DataError(f"{name}: test labels {unseen} never appear in the training part")
    return Dataset(str(name), x_train, y_train, x_test, y_test, image_shape, pixel_max, "file")


def load_optdigits() -> Dataset:
    """Loads UCI's optdigits under its writer-independent protocol.

    The training part is UCI's ``optdigits.tra`` as published: 3,823 digits
    written by 30 people, in file order. The test part is UCI's
    ``optdigits.tes``, the 1,797 digits of 13 other people, which is exactly
    scikit-learn's bundled ``load_digits()``. No writer is on both sides, so the
    test accuracy measures how a model reads handwriting it has never seen.
    Nothing is downloaded: the training file ships inside the package.

    Returns:
        The dataset, named ``optdigits``: 8x8 images, pixels 0..16, classes 0..9,
        ``test_source`` ``file``.

    Raises:
        DataError: the packaged file is missing or damaged.
    """
    name = "optdigits"
    resource = resources.files("zoo") / "datasets" / OPTDIGITS_TRAIN_FILE
    try:
        raw = gzip.decompress(resource.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read the packaged optdigits file {str(resource)!r} "
            f"({error.__class__.__name__}); reinstall digits-zoo"
        ) from None
    digest = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if digest != OPTDIGITS_TRAIN_MD5:
        raise DataError(
            f"the packaged optdigits file {str(resource)!r} is damaged (md5 {digest}, expected "
            f"{OPTDIGITS_TRAIN_MD5}); reinstall digits-zoo"
        )
    layout = "64 pixel counts 0..16 then the label"
    table, _ = _parse_numbered_rows(raw.decode("ascii"), resource, layout)
    x_train, y_train = table[:, :-1], table[:, -1]
    test = load_digits()
    dataset = _from_parts(
        name,
        x_train.reshape(len(table), 8, 8),
        y_train,
        test.images,
        test.target,
        where={
            "x_train": "optdigits.tra pixels",
            "y_train": "optdigits.tra labels",
            "x_test": "load_digits().images",
            "y_test": "load_digits().target",
        },
    )
    # The md5 already vouches for the file; these hold the promise every loader makes.
    if dataset.pixel_max != 16.0 or dataset.classes != list(range(10)):
        raise DataError(
            f"{name}: expected pixels 0..16 and classes 0..9 (got pixels 0..{dataset.pixel_max:g}, "
            f"classes {dataset.classes}); reinstall digits-zoo"
        )
    return dataset


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
    empty = not any(not entry.name.startswith(".") for entry in folder.iterdir())
    raise DataError(
        f"{folder} {'is empty: it ' if empty else ''}has no {_IDX_NAMES[key][0]}[.gz]; an MNIST "
        "folder needs the four IDX files (train-images, train-labels, t10k-images, "
        "t10k-labels), a picture folder one subfolder per class named by its class number"
    )


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into an array.

    The sizes in the header are checked before the data are read: against the
    file's length, or for a gzipped file against ``MAX_IDX_BYTES``, and then
    the stream is read in chunks up to what the header promises, so a short
    stream allocates only what it holds.

    Raises:
        DataError: unreadable, a bad magic number, or a size that does not match.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            magic = handle.read(4)
            if (
                len(magic) < 4
                or magic[:2] != b"\0\0"
                or magic[2] not in _IDX_TYPES
                or magic[3] == 0
            ):
                raise DataError(
                    f"{path} is not an IDX file (bad magic number {magic.hex() or 'empty'})"
                )
            dims = handle.read(4 * magic[3])
            if len(dims) < 4 * magic[3]:
                raise DataError(f"{path} is truncated: its header is incomplete")
            shape = tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4))
            dtype = np.dtype(_IDX_TYPES[magic[2]])
            header = 4 + len(dims)
            # Python integers: a product of 32-bit sizes cannot overflow.
            body = math.prod(shape) * dtype.itemsize
            if path.suffix != ".gz":
                size = os.fstat(handle.fileno()).st_size
                if size != header + body:
                    raise DataError(
                        f"{path} holds {size} bytes but its header promises {header + body} "
                        f"(shape {shape})"
                    )
            elif body > MAX_IDX_BYTES:
                raise DataError(
                    f"{path}: its header promises {header + body} bytes (shape {shape}), more "
                    f"than the {MAX_IDX_BYTES} bytes one IDX file may hold; is it a valid IDX file?"
                )
            raw = _read_at_most(handle, body + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read {str(path)!r} ({error.__class__.__name__}); is it a valid IDX file?"
        ) from None
    if len(raw) < body:
        raise DataError(
            f"{path} holds {header + len(raw)} bytes but its header promises {header + body} "
            f"(shape {shape})"
        )
    if len(raw) > body:
        raise DataError(
            f"{path} holds more than the {header + body} bytes its header promises (shape {shape})"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _read_at_most(handle, limit: int) -> bytearray:
    """Reads up to ``limit`` bytes in chunks, so that a short stream allocates only what it has."""
    data = bytearray()
    while len(data) < limit:
        chunk = handle.read(min(limit - len(data), 2**24))
        if not chunk:
            break
        data += chunk
    return data


def _load_idx_folder(folder: Path) -> Dataset:
    files = {key: _find_idx(folder, key) for key in _IDX_NAMES}
    parts = {key: read_idx(path) for key, path in files.items()}
    return _from_parts(
        str(folder),
        parts["x_train"],
        parts["y_train"],
        parts["x_test"],
        parts["y_test"],
        where={key: path.name for key, path in files.items()},
    )
