"""Hardening of the data and input readers (issue 14): ranges, labels, empty and huge inputs."""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from digits_zoo.ship import inputs
from digits_zoo.ship.evaluate import evaluate_export
from digits_zoo.ship.export import export_estimator
from digits_zoo.ship.inputs import MAX_IMAGE_PIXELS, MAX_INPUT_BYTES, read_input
from digits_zoo.ship.load import load_export
from zoo import create_model, load_dataset
from zoo.data import MAX_LABEL, read_csv_rows, read_idx
from zoo.errors import DataError, ZooError

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# Helpers ------------------------------------------------------------------------------------


def write_table(path: Path, table: np.ndarray) -> Path:
    """Writes rows of numbers, no header; whole numbers without a decimal point."""
    lines = (",".join(f"{value:g}" for value in row) for row in np.asarray(table, dtype=float))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def digits_table() -> np.ndarray:
    """The bundled digits as one optdigits table: 64 pixels of 0..16, then the label."""
    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


def idx_bytes(array: np.ndarray, type_code: int = 0x08, dtype: str = ">u1") -> bytes:
    array = np.asarray(array)
    header = struct.pack(">I", (type_code << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def mnist_parts() -> dict[str, np.ndarray]:
    """Small MNIST-style parts: 10x10 uint8 images of 0..240 (the bundled digits, padded)."""
    bunch = load_digits()
    images = (np.pad(bunch.images, ((0, 0), (1, 1), (1, 1))) * 15).astype(np.uint8)
    return {
        "x_train": images[:60],
        "y_train": bunch.target[:60].astype(np.uint8),
        "x_test": images[60:80],
        "y_test": bunch.target[60:80].astype(np.uint8),
    }


def write_idx_folder(folder: Path, parts: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_FILES.items():
        (folder / name).write_bytes(idx_bytes(parts[key]))
    return folder


def one_line_error(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


@pytest.fixture(scope="module")
def knn_export(small_digits, tmp_path_factory) -> Path:
    """A k-NN trained on the small digits subset (classes 0..9, pixels 0..16), exported."""
    estimator = create_model("knn_k1").fit(
        small_digits.scale(small_digits.x_train), small_digits.y_train
    )
    base = tmp_path_factory.mktemp("export") / "knn_k1"
    export_estimator(estimator, small_digits, base, name="knn_k1", kind="sklearn")
    return base


# 1. The pixel range --------------------------------------------------------------------------


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
    parts = mnist_parts()
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


# 2. Labels -----------------------------------------------------------------------------------


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
    parts = mnist_parts()
    y_test = parts["y_test"].astype(np.float64)
    y_test[3] = 1e20
    np.savez(tmp_path / "labels.npz", **{**parts, "y_test": y_test})
    with pytest.raises(DataError, match=r"\(got 1e\+20 at y_test\[3\]\)"):
        load_dataset(tmp_path / "labels.npz")


def test_idx_labels_outside_the_range_are_refused_with_their_file(tmp_path):
    parts = mnist_parts()
    folder = write_idx_folder(tmp_path / "mnist", parts)
    labels = parts["y_train"].astype(np.int64)
    labels[5] = -7
    # Type 0x0C: big-endian 32-bit integers, which can hold negative labels.
    (folder / IDX_FILES["y_train"]).write_bytes(idx_bytes(labels, 0x0C, ">i4"))
    with pytest.raises(DataError, match=r"\(got -7 at train-labels-idx1-ubyte\[5\]\)"):
        load_dataset(folder)


# 3. Tracebacks that are now one-line errors -------------------------------------------------


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
    np.savez(tmp_path / "empty.npz", **{**mnist_parts(), **change})
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


@pytest.mark.parametrize("shape", [(0, 64), (0, 8, 8), (0, 8, 8, 1)])
def test_empty_npy_given_to_predict_is_a_one_line_error(knn_export, tmp_path, cli_error, shape):
    np.save(tmp_path / "empty.npy", np.zeros(shape, dtype=np.float32))
    cli_error("predict", knn_export, tmp_path / "empty.npy", match="holds no images")


def test_npy_whose_header_promises_more_than_the_file_holds_is_refused(
    knn_export, tmp_path, cli_error
):
    # A 128-byte file whose header promises a 477 GiB array: it used to try to allocate it.
    path = tmp_path / "huge.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 64)}
        )
    cli_error("predict", knn_export, path, match="(shape [1000000000, 64], dtype float64)")


@pytest.mark.parametrize("content", [b"", b"not a picture at all", b"\x89PNG\r\n\x1a\n" + bytes(9)])
def test_a_file_that_is_not_an_image_is_a_one_line_error(knn_export, tmp_path, cli_error, content):
    (tmp_path / "digit.png").write_bytes(content)
    cli_error("predict", knn_export, tmp_path / "digit.png", match="as an image")


def test_a_picture_in_a_format_outside_the_list_is_not_decoded(knn_export, tmp_path, cli_error):
    # A valid PPM named .png: Pillow would read it; only the listed decoders may run.
    image = Image.new("L", (40, 40), 255)
    image.paste(0, (15, 5, 25, 35))
    image.save(tmp_path / "digit.png", format="PPM")
    cli_error(
        "predict", knn_export, tmp_path / "digit.png", match="as an image (UnidentifiedImageError)"
    )


# 4. Caps -------------------------------------------------------------------------------------


def test_a_12000x12000_png_is_refused_before_it_is_decoded(knn_export, tmp_path, cli_error):
    path = tmp_path / "huge.png"
    Image.new("L", (12000, 12000), 255).save(path)
    assert path.stat().st_size < 1_000_000
    export = load_export(knn_export)
    start = time.perf_counter()
    with pytest.raises(ZooError) as caught:
        read_input(path, export)
    assert time.perf_counter() - start < 2.0
    assert "picture too large" in one_line_error(caught)
    cli_error("predict", knn_export, path, match="picture too large")


def test_a_picture_above_the_cap_but_below_pillows_limit_is_refused(knn_export, tmp_path):
    # 5000x5000 = 25 M pixels: Pillow says nothing below 89 M, the zoo refuses above 16.8 M.
    path = tmp_path / "large.png"
    Image.new("L", (5000, 5000), 255).save(path)
    with pytest.raises(ZooError) as caught:
        read_input(path, load_export(knn_export))
    text = one_line_error(caught)
    assert (
        f"picture too large (got 5000x5000 = 25,000,000 pixels; at most {MAX_IMAGE_PIXELS:,}"
        in (text)
    )


@pytest.mark.parametrize("name", ["big.npy", "big.csv", "big.png"])
def test_predict_inputs_above_the_size_cap_are_refused_unread(
    knn_export, tmp_path, cli_error, name
):
    path = tmp_path / name
    with open(path, "wb") as handle:
        handle.truncate(MAX_INPUT_BYTES + 1)  # sparse: no disk used, never read
    cli_error(
        "predict", knn_export, path, match=f"is too large to read (got {MAX_INPUT_BYTES + 1:,}"
    )


def test_evaluate_data_above_the_size_cap_is_refused_unread(knn_export, tmp_path, monkeypatch):
    path = write_table(tmp_path / "data.csv", digits_table()[:50])
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 1000)
    with pytest.raises(ZooError, match="is too large to read"):
        evaluate_export(load_export(knn_export), path)


# 5. Evaluate with labels the model never saw -------------------------------------------------


def test_evaluate_refuses_labels_the_model_has_never_seen(knn_export, tmp_path, cli_error):
    table = digits_table()[:50]
    table[[3, 9], -1] = [42, 17]
    path = write_table(tmp_path / "unknown.csv", table)
    with pytest.raises(ZooError) as caught:
        evaluate_export(load_export(knn_export), path)
    text = one_line_error(caught)
    assert "labels [17, 42] are not classes of this model" in text
    assert "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in text
    cli_error("evaluate", knn_export, "--data", path, match="labels [17, 42] are not classes")
