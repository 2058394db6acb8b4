"""What predict and evaluate read (digits_zoo.ship.inputs): empty, undecodable and oversized
inputs, and labels the model never saw."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits_zoo.ship import inputs
from digits_zoo.ship.evaluate import evaluate_export
from digits_zoo.ship.export import export_estimator
from digits_zoo.ship.inputs import MAX_IMAGE_PIXELS, MAX_INPUT_BYTES, read_input
from digits_zoo.ship.load import load_export
from helpers import digits_table, one_line_error, write_table
from zoo import create_model
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def knn_export(small_digits, tmp_path_factory) -> Path:
    """A k-NN trained on the small digits subset (classes 0..9, pixels 0..16), exported."""
    estimator = create_model("knn_k1").fit(
        small_digits.scale(small_digits.x_train), small_digits.y_train
    )
    base = tmp_path_factory.mktemp("export") / "knn_k1"
    export_estimator(estimator, small_digits, base, name="knn_k1", kind="sklearn")
    return base


# Empty, truncated and undecodable inputs -----------------------------------------------------


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


# Caps ----------------------------------------------------------------------------------------


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


# Evaluate with labels the model never saw ----------------------------------------------------


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
