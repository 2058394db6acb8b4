"""Tests of the dataset loaders: the bundled digits, CSV, npz, IDX folders, bad files, and pixels,
labels and headers out of range."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from helpers import digits_table, one_line_error, write_table
from zoo.data import MAX_LABEL, load_dataset, read_csv_rows, read_idx
from zoo.errors import DataError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# Writers ------------------------------------------------------------------------------------


def write_csv(path: Path, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """Writes rows in the UCI optdigits layout: integer pixels, then the label, no header."""
    table = np.column_stack([np.asarray(pixels).reshape(len(labels), -1), labels]).astype(int)
    np.savetxt(path, table, fmt="%d", delimiter=",")
    return path


def idx_bytes(array: np.ndarray, type_code: int = 0x08, dtype: str = ">u1") -> bytes:
    """Encodes an array as IDX: unsigned bytes by default (magic 0x00000801 for labels,
    0x00000803 for images); ``type_code`` 0x0C with ``dtype`` ">i4" writes 32-bit integers."""
    array = np.asarray(array)
    header = struct.pack(">I", (type_code << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx_folder(folder: Path, parts: dict[str, np.ndarray], gz: bool = False) -> Path:
    """Writes the four MNIST IDX files (optionally gzipped) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_FILES.items():
        raw = idx_bytes(parts[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return folder


def mnist_like(n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    """Small valid MNIST-style parts: 10x10 uint8 images (bundled digits, padded, 0..240)."""
    bunch = load_digits()
    images = np.pad(bunch.images, ((0, 0), (1, 1), (1, 1))) * 15
    labels = bunch.target
    return {
        "x_train": images[:n_train].astype(np.uint8),
        "y_train": labels[:n_train].astype(np.uint8),
        "x_test": images[n_train : n_train + n_test].astype(np.uint8),
        "y_test": labels[n_train : n_train + n_test].astype(np.uint8),
    }


def good_rows(n_per_class: int = 6, n_classes: int = 3, width: int = 16) -> np.ndarray:
    """A valid optdigits-style table of small integers, the label last."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    pixels = rng.integers(0, 17, (len(labels), width))
    return np.column_stack([pixels, labels])


def good_csv_text(**kwargs) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in good_rows(**kwargs)) + "\n"


# The bundled digits -------------------------------------------------------------------------


def test_bundled_digits_shape_classes_and_pixel_range(digits):
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert digits.image_shape == (8, 8) and digits.n_features == 64
    assert digits.classes == list(range(10))
    assert digits.pixel_max == 16.0
    assert digits.x_train.min() == 0 and digits.x_train.max() == 16


def test_bundled_split_is_stratified_and_records_its_seed(digits):
    assert digits.test_source == "split" and digits.split_seed == 0
    _, train_counts = np.unique(digits.y_train, return_counts=True)
    _, test_counts = np.unique(digits.y_test, return_counts=True)
    # Each class keeps its share in the test part, up to rounding.
    expected = (train_counts + test_counts) * 0.2
    assert np.all(np.abs(test_counts - expected) <= 1)
    description = digits.describe()
    assert description["split_seed"] == 0 and description["test_source"] == "split"
    assert description["n_train"] == 1437 and description["n_test"] == 360
    assert description["fingerprint"] == digits.fingerprint()


def test_same_seed_gives_the_same_split_and_another_seed_another(digits):
    again = load_dataset(seed=0)
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    assert again.fingerprint() == digits.fingerprint()
    other = load_dataset(seed=1)
    assert other.split_seed == 1
    assert other.fingerprint() != digits.fingerprint()
    assert not np.array_equal(other.y_test, digits.y_test)


def test_test_size_sets_the_held_out_fraction():
    half = load_dataset(test_size=0.5)
    assert len(half.y_test) == 899 and len(half.y_train) == 898


@pytest.mark.parametrize("test_size", [0.0, 1.0, 1.5, -0.1])
def test_test_size_outside_zero_one_is_refused(test_size):
    with pytest.raises(DataError, match=f"test size must be between 0 and 1 \\(got {test_size}\\)"):
        load_dataset(test_size=test_size)


def test_scale_maps_raw_pixels_to_the_unit_range(digits):
    scaled = digits.scale(digits.x_train)
    assert scaled.dtype == np.float32
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    np.testing.assert_allclose(scaled * 16.0, digits.x_train)


# Good files ---------------------------------------------------------------------------------


def test_csv_in_the_optdigits_layout_loads_exactly_like_the_bundled_digits(tmp_path, digits):
    bunch = load_digits()
    path = write_csv(tmp_path / "optdigits.csv", bunch.data, bunch.target)
    dataset = load_dataset(path, seed=0)
    assert dataset.name == str(path)
    assert dataset.image_shape == (8, 8) and dataset.pixel_max == 16.0
    assert dataset.test_source == "split" and dataset.split_seed == 0
    # Same rows and same seed: the very same split as the bundled copy.
    assert dataset.fingerprint() == digits.fingerprint()


def test_csv_image_shape_and_pixel_range_come_from_the_data(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 10)
    square = write_csv(tmp_path / "mnist.csv", rng.integers(0, 256, (20, 784)), labels)
    dataset = load_dataset(square)
    assert dataset.image_shape == (28, 28) and dataset.pixel_max == 255.0
    assert dataset.n_features == 784
    flat = write_csv(tmp_path / "flat.csv", rng.integers(0, 2, (20, 10)), labels)
    dataset = load_dataset(flat)
    assert dataset.image_shape == (10,) and dataset.pixel_max == 1.0


def test_read_csv_rows_skips_blank_lines_and_reads_crlf(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"1,2,3,7\r\n\r\n4,5,6,8\r\n")
    x, y = read_csv_rows(path)
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(y, [7, 8])
    assert x.dtype == np.float32 and y.dtype == np.int64


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_npz_in_the_keras_mnist_layout_keeps_its_own_test_part(tmp_path, compressed):
    parts = mnist_like()
    path = tmp_path / "mnist.npz"
    (np.savez_compressed if compressed else np.savez)(path, **parts)
    dataset = load_dataset(path, seed=5)
    assert dataset.test_source == "file" and dataset.split_seed is None
    assert dataset.image_shape == (10, 10) and dataset.pixel_max == 255.0
    np.testing.assert_array_equal(dataset.x_train, parts["x_train"].reshape(60, 100))
    np.testing.assert_array_equal(dataset.x_test, parts["x_test"].reshape(20, 100))
    np.testing.assert_array_equal(dataset.y_test, parts["y_test"])
    assert dataset.x_train.dtype == np.float32 and dataset.y_train.dtype == np.int64
    # The file's split is kept whatever the seed.
    assert load_dataset(path, seed=6).fingerprint() == dataset.fingerprint()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_idx_folder_loads_with_the_image_shape_of_its_data(tmp_path, gz):
    parts = mnist_like()
    folder = write_idx_folder(tmp_path / "mnist", parts, gz=gz)
    dataset = load_dataset(folder)
    assert dataset.name == str(folder) and dataset.test_source == "file"
    assert dataset.image_shape == (10, 10) and dataset.pixel_max == 255.0
    np.testing.assert_array_equal(dataset.x_train, parts["x_train"].reshape(60, 100))
    np.testing.assert_array_equal(dataset.y_train, parts["y_train"])
    np.testing.assert_array_equal(dataset.x_test, parts["x_test"].reshape(20, 100))
    np.testing.assert_array_equal(dataset.y_test, parts["y_test"])


def test_idx_folder_with_the_dotted_mnist_names_loads(tmp_path):
    parts = mnist_like()
    folder = tmp_path / "mnist"
    folder.mkdir()
    for key, name in IDX_FILES.items():
        dotted = name.replace("-idx", ".idx")
        (folder / dotted).write_bytes(idx_bytes(parts[key]))
    assert load_dataset(folder).image_shape == (10, 10)


def test_read_idx_reads_28x28_images(tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    read = read_idx(path)
    assert read.shape == (3, 28, 28)
    np.testing.assert_array_equal(read, images)


# Bad files ----------------------------------------------------------------------------------
# Each maker writes one bad input under a folder and returns the path to pass as --data.


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _missing(folder: Path) -> Path:
    return folder / "absent.csv"


def _unknown_extension(folder: Path) -> Path:
    return _write(folder / "digits.txt", good_csv_text())


def _non_numeric_cell(folder: Path) -> Path:
    return _write(folder / "cell.csv", good_csv_text() + "1,2,x," + "0," * 13 + "1\n")


def _header_row(folder: Path) -> Path:
    header = ",".join(f"p{i}" for i in range(16)) + ",label\n"
    return _write(folder / "header.csv", header + good_csv_text())


def _ragged_rows(folder: Path) -> Path:
    return _write(folder / "ragged.csv", good_csv_text() + "1,2,3\n")


def _non_integer_labels(folder: Path) -> Path:
    return _write(folder / "labels.csv", good_csv_text() + "0," * 16 + "1.5\n")


def _single_class(folder: Path) -> Path:
    rows = good_rows()
    rows[:, -1] = 4
    return _write(folder / "one.csv", "\n".join(",".join(map(str, r)) for r in rows))


def _too_few_per_class(folder: Path) -> Path:
    return _write(folder / "few.csv", good_csv_text() + "0," * 16 + "9\n")


def _empty_file(folder: Path) -> Path:
    return _write(folder / "empty.csv", "")


def _binary_garbage(folder: Path) -> Path:
    return _write(folder / "garbage.csv", bytes(range(256)) * 8)


def _nan_values(folder: Path) -> Path:
    return _write(folder / "nan.csv", good_csv_text() + "1,nan," + "0," * 14 + "1\n")


def _negative_pixels(folder: Path) -> Path:
    return _write(folder / "negative.csv", good_csv_text() + "1,-3," + "0," * 14 + "1\n")


def _corrupt_npz(folder: Path) -> Path:
    return _write(folder / "garbage.npz", np.random.default_rng(0).bytes(500))


def _truncated_npz(folder: Path) -> Path:
    np.savez(folder / "whole.npz", **mnist_like())
    raw = (folder / "whole.npz").read_bytes()
    return _write(folder / "truncated.npz", raw[: len(raw) // 2])


def _corrupt_compressed_npz(folder: Path) -> Path:
    # Damage inside x_train's deflate stream (the zip headers stay intact), so the
    # archive opens and fails only while it is decompressed.
    rng = np.random.default_rng(0)
    parts = {
        "x_train": rng.integers(0, 256, (40, 4, 4)).astype(np.uint8),
        "y_train": np.arange(40) % 4,
        "x_test": rng.integers(0, 256, (8, 4, 4)).astype(np.uint8),
        "y_test": np.arange(8) % 4,
    }
    np.savez_compressed(folder / "whole.npz", **parts)
    raw = bytearray((folder / "whole.npz").read_bytes())
    for index in range(100, 300):
        raw[index] ^= 0x55
    return _write(folder / "damaged.npz", bytes(raw))


def _npz_missing_keys(folder: Path) -> Path:
    parts = mnist_like()
    np.savez(folder / "half.npz", x_train=parts["x_train"], y_train=parts["y_train"])
    return folder / "half.npz"


def _npz_nan_pixels(folder: Path) -> Path:
    parts = mnist_like()
    x_train = parts["x_train"].astype(float)
    x_train[0, 0, 0] = np.nan
    np.savez(folder / "nan.npz", **{**parts, "x_train": x_train})
    return folder / "nan.npz"


def _npz_label_count(folder: Path) -> Path:
    parts = mnist_like()
    np.savez(folder / "count.npz", **{**parts, "y_train": parts["y_train"][:-1]})
    return folder / "count.npz"


def _npz_unseen_test_label(folder: Path) -> Path:
    parts = mnist_like()
    keep = parts["y_train"] != 9
    y_test = parts["y_test"].copy()
    y_test[0] = 9
    np.savez(
        folder / "unseen.npz",
        x_train=parts["x_train"][keep],
        y_train=parts["y_train"][keep],
        x_test=parts["x_test"],
        y_test=y_test,
    )
    return folder / "unseen.npz"


def _idx_folder(folder: Path, gz: bool = False) -> Path:
    return write_idx_folder(folder / "mnist", mnist_like(), gz=gz)


def _idx_bad_magic(folder: Path) -> Path:
    mnist = _idx_folder(folder)
    path = mnist / IDX_FILES["x_train"]
    _write(path, b"\x12\x34" + path.read_bytes()[2:])
    return mnist


def _idx_truncated(folder: Path) -> Path:
    mnist = _idx_folder(folder)
    path = mnist / IDX_FILES["x_train"]
    _write(path, path.read_bytes()[:-7])
    return mnist


def _idx_truncated_header(folder: Path) -> Path:
    mnist = _idx_folder(folder)
    _write(mnist / IDX_FILES["y_test"], struct.pack(">I", 0x00000803) + b"\x00\x00")
    return mnist


def _idx_corrupt_gzip(folder: Path) -> Path:
    # A valid gzip header and trailer around a damaged deflate stream.
    mnist = _idx_folder(folder, gz=True)
    path = mnist / f"{IDX_FILES['x_train']}.gz"
    raw = bytearray(path.read_bytes())
    for index in range(12, len(raw) - 8):
        raw[index] ^= 0xFF
    _write(path, bytes(raw))
    return mnist


def _idx_missing_file(folder: Path) -> Path:
    mnist = _idx_folder(folder)
    (mnist / IDX_FILES["y_test"]).unlink()
    return mnist


def _empty_folder(folder: Path) -> Path:
    (folder / "nothing").mkdir()
    return folder / "nothing"


BAD_DATA: list[tuple[Callable[[Path], Path], str]] = [
    (_missing, "data path not found"),
    (_unknown_extension, "unknown data format"),
    (_non_numeric_cell, "line 19 has a non-numeric value (got 'x')"),
    (_header_row, "line 1 has a non-numeric value (got 'p0')"),
    (_ragged_rows, "line 19 has 3 columns, expected 17"),
    (_non_integer_labels, "labels must be integers (got 1.5)"),
    (_single_class, "needs at least 2 classes to classify (got 1)"),
    (_too_few_per_class, "class 9 has 1 sample(s)"),
    (_empty_file, "holds no rows"),
    (_binary_garbage, "pass a readable text CSV"),
    (_nan_values, "holds NaN or infinite values"),
    (_negative_pixels, "pixels must be non-negative (got -3.0)"),
    (_corrupt_npz, "as a .npz archive"),
    (_truncated_npz, "as a .npz archive"),
    (_corrupt_compressed_npz, "as a .npz archive"),
    (_npz_missing_keys, "lacks x_test, y_test"),
    (_npz_nan_pixels, "pixels must be finite numbers"),
    (_npz_label_count, "60 train images but 59 train labels"),
    (_npz_unseen_test_label, "test labels [9] never appear in the training part"),
    (_idx_bad_magic, "is not an IDX file (bad magic number 12340803)"),
    (_idx_truncated, "but its header promises"),
    (_idx_truncated_header, "its header is incomplete"),
    (_idx_corrupt_gzip, "is it a valid IDX file?"),
    (_idx_missing_file, "has no t10k-labels-idx1-ubyte[.gz]"),
    (_empty_folder, "has no train-images-idx3-ubyte[.gz]"),
]
BAD_IDS = [make.__name__.strip("_") for make, _ in BAD_DATA]


@pytest.mark.parametrize(("make", "message"), BAD_DATA, ids=BAD_IDS)
def test_bad_data_raises_a_one_line_data_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError) as caught:
        load_dataset(path)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(("make", "message"), BAD_DATA, ids=BAD_IDS)
def test_bad_data_through_the_cli_exits_2_and_writes_nothing(tmp_path, cli_error, make, message):
    data = make(tmp_path)
    run_dir = tmp_path / "run"
    cli_error(
        "baselines", "--data", data, "--run-dir", run_dir, "--models", "knn_k1", match=message
    )
    assert not (run_dir / "leaderboard.csv").exists()
    assert not (run_dir / "run.json").exists()


@pytest.mark.parametrize("test_size", [0.2, 0.9])
def test_a_split_too_small_for_the_number_of_classes_says_so(tmp_path, test_size):
    # Two images of each of ten classes: 2 per class is enough, but a 20% split has only
    # 4 test images for 10 classes (and a 90% split only 2 training images).
    path = _write(tmp_path / "twenty.csv", good_csv_text(n_per_class=2, n_classes=10))
    with pytest.raises(DataError) as caught:
        load_dataset(path, test_size=test_size)
    assert "10 classes" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_too_few_samples_per_class_for_the_folds_exits_2(tmp_path, cli_error):
    # Five images per class load fine, but after the test split four remain for five folds.
    path = _write(tmp_path / "small.csv", good_csv_text(n_per_class=5, n_classes=2))
    assert len(load_dataset(path).y_train) == 8
    run_dir = tmp_path / "run"
    cli_error("baselines", "--data", path, "--run-dir", run_dir, match="fewer than --folds 5")
    assert not run_dir.exists()


# Pixel ranges, label ranges and headers the loaders refuse in one line ------------------------


def test_a_few_pixels_above_16_in_an_optdigits_csv_are_refused(tmp_path):
    table = digits_table()
    # Rows 11, 500 and 900 (lines 12, 501, 901) get one corrupt pixel each.
    table[11, 5], table[500, 0], table[900, 63] = 17, 17, 18
    path = write_table(tmp_path / "corrupt.csv", table)
    with pytest.raises(DataError) as caught:
        load_dataset(path)
    text = one_line_error(caught)
    assert "pixel values must lie in 0..16 (optdigits) or 0..255 (8-bit images)" in text
    assert f"3 of {1797 * 64} values exceed 16, the largest 18 at line 901" in text


def test_a_few_pixels_above_16_are_found_past_a_blank_line(tmp_path):
    table = digits_table()[:200]
    table[150, 3] = 40
    path = write_table(tmp_path / "corrupt.csv", table)
    # A blank line before the bad row: the error names the file's own line number.
    path.write_text("\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DataError, match="the largest 40 at line 152"):
        load_dataset(path)


def test_many_pixels_above_16_are_8_bit_data(tmp_path):
    table = digits_table()[:300]
    table[:, :-1] *= 15  # 0..240: most ink pixels exceed 16
    assert load_dataset(write_table(tmp_path / "grey.csv", table)).pixel_max == 255.0
    table[:, :-1] /= 15
    assert load_dataset(write_table(tmp_path / "counts.csv", table)).pixel_max == 16.0


def test_pixels_above_255_are_refused(tmp_path):
    table = digits_table()[:300]
    table[:, :-1] *= 15
    table[7, 2] = 256
    with pytest.raises(DataError) as caught:
        load_dataset(write_table(tmp_path / "wide.csv", table))
    assert "pixel values must lie in 0..255 (got 256 at line 8)" in one_line_error(caught)


def test_npz_pixels_are_checked_in_full_not_sampled(tmp_path):
    parts = mnist_like()
    # 1,200 training images of 100 pixels: the bad value, in the last one, lies past the
    # first 100,000 values, the sample the range used to be inferred from.
    x_train = np.tile(parts["x_train"], (20, 1, 1)).astype(np.uint16)
    y_train = np.tile(parts["y_train"], 20)
    x_train[-1, 4, 4] = 1000
    np.savez(tmp_path / "wide.npz", **{**parts, "x_train": x_train, "y_train": y_train})
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path / "wide.npz")
    assert "pixel values must lie in 0..255 (got 1000 at x_train[1199])" in one_line_error(caught)


def test_npz_of_0_to_16_images_with_a_few_above_16_is_refused(tmp_path):
    bunch = load_digits()
    x_train = bunch.images[:1500].copy()
    x_train[42, 3, 3] = 17
    np.savez(
        tmp_path / "corrupt.npz",
        x_train=x_train,
        y_train=bunch.target[:1500],
        x_test=bunch.images[1500:],
        y_test=bunch.target[1500:],
    )
    with pytest.raises(DataError, match=r"1 of 115008 values exceed 16, the largest 17 at x_train"):
        load_dataset(tmp_path / "corrupt.npz")


@pytest.mark.parametrize(
    ("label", "shown"), [(1e20, "1e+20"), (2e20, "2e+20"), (-1, "-1"), (MAX_LABEL, "1000000")]
)
def test_csv_labels_outside_0_to_a_million_are_refused(tmp_path, label, shown):
    table = digits_table()[:100]
    table[40, -1] = label
    with pytest.raises(DataError) as caught:
        read_csv_rows(write_table(tmp_path / "labels.csv", table))
    text = one_line_error(caught)
    assert f"labels must be integers in 0..{MAX_LABEL - 1} (got {shown} at line 41)" in text


def test_huge_labels_no_longer_merge_into_one_class(tmp_path):
    # 1e20 and 2e20 used to overflow int64 into one class: a dataset with a single class.
    table = digits_table()[:100]
    table[:, -1] = np.where(np.arange(100) % 2, 1e20, 2e20)
    with pytest.raises(DataError, match=r"labels must be integers in 0\.\.999999 \(got 2e\+20"):
        load_dataset(write_table(tmp_path / "huge.csv", table))


def test_npz_labels_outside_the_range_are_refused_with_their_position(tmp_path):
    parts = mnist_like()
    y_test = parts["y_test"].astype(np.float64)
    y_test[3] = 1e20
    np.savez(tmp_path / "labels.npz", **{**parts, "y_test": y_test})
    with pytest.raises(DataError, match=r"\(got 1e\+20 at y_test\[3\]\)"):
        load_dataset(tmp_path / "labels.npz")


def test_idx_labels_outside_the_range_are_refused_with_their_file(tmp_path):
    parts = mnist_like()
    folder = write_idx_folder(tmp_path / "mnist", parts)
    labels = parts["y_train"].astype(np.int64)
    labels[5] = -7
    # Type 0x0C: big-endian 32-bit integers, which can hold negative labels.
    (folder / IDX_FILES["y_train"]).write_bytes(idx_bytes(labels, 0x0C, ">i4"))
    with pytest.raises(DataError, match=r"\(got -7 at train-labels-idx1-ubyte\[5\]\)"):
        load_dataset(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_train": np.zeros((60, 0)), "x_test": np.zeros((20, 0))}, "x_train images have no"),
        ({"x_train": np.zeros((0, 10, 10)), "y_train": np.zeros(0)}, "x_train holds no images"),
        ({"x_test": np.zeros((0, 10, 10)), "y_test": np.zeros(0)}, "x_test holds no images"),
    ],
    ids=["no-features", "empty-x-train", "empty-x-test"],
)
def test_npz_without_images_or_pixels_is_a_data_error(tmp_path, change, message):
    np.savez(tmp_path / "empty.npz", **{**mnist_like(), **change})
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path / "empty.npz")
    assert message in one_line_error(caught)


def test_idx_header_whose_sizes_overflow_is_a_data_error(tmp_path):
    # 65536**4 bytes wraps to 0 in 64-bit arithmetic: a 20-byte file used to "match" it.
    path = tmp_path / "images-idx4-ubyte"
    path.write_bytes(struct.pack(">I4I", 0x00000804, 65536, 65536, 65536, 65536))
    with pytest.raises(DataError) as caught:
        read_idx(path)
    text = one_line_error(caught)
    assert "holds 20 bytes but its header promises 18446744073709551636" in text


def test_gzipped_idx_header_promising_too_much_is_refused_before_reading(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">I3I", 0x00000803, 65536, 65536, 65536)))
    with pytest.raises(DataError, match="header promises 281474976710672 bytes"):
        read_idx(path)


def test_idx_header_is_checked_against_the_file_size_before_reading(tmp_path):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(struct.pack(">I3I", 0x00000803, 60000, 28, 28) + bytes(100))
    with pytest.raises(DataError, match="holds 116 bytes but its header promises 47040016"):
        read_idx(path)


def test_gzipped_idx_with_more_data_than_its_header_says_is_refused(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">I3I", 0x00000803, 1, 2, 2) + bytes(10)))
    with pytest.raises(DataError, match="holds more than the 20 bytes its header promises"):
        read_idx(path)
