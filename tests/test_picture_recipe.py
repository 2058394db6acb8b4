"""The picture recipe an export records: written at export, read by one reader, used by every
picture path (predict, serve's uploads and collect, adapt), refused when tampered with, and
absent from old exports, which convert pictures as before."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits_zoo.serve.uploads import read_upload
from digits_zoo.ship.export import export_estimator
from digits_zoo.ship.inputs import predict_inputs, read_image, read_picture
from digits_zoo.ship.layout import METADATA
from digits_zoo.ship.load import load_export
from helpers import one_line_error
from zoo import create_model
from zoo.errors import ZooError
from zoo.pictures import (
    PictureRecipe,
    image_to_pixels,
    picture_rows,
    read_by_class,
    recipe_from_counts,
    recipe_variants,
)

# How far a converted picture's ink may sit from the recorded fraction: the strokes grow
# a pixel a side at a time, and the nearer of the two steps around the target is kept.
INK_TOLERANCE = 0.05
# A change that removes the key.
DROP = object()


@pytest.fixture(scope="module")
def recipe_export(small_digits, tmp_path_factory) -> Path:
    """A k-NN on the small digits subset, exported: its version folder."""
    estimator = create_model("knn_k1").fit(
        small_digits.scale(small_digits.x_train), small_digits.y_train
    )
    base = tmp_path_factory.mktemp("export") / "knn_k1"
    return export_estimator(estimator, small_digits, base, name="knn_k1", kind="sklearn").path


def _copy_with(version: Path, tmp_path: Path, **changes) -> Path:
    """A copy of an export's version folder whose metadata has ``changes`` (``DROP``: no key)."""
    copy = tmp_path / "copy" / "1"
    shutil.copytree(version, copy)
    metadata = json.loads((copy / METADATA).read_text())
    for key, value in changes.items():
        if value is DROP:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    (copy / METADATA).write_text(json.dumps(metadata))
    return copy


def _thin_seven() -> Image.Image:
    """A 7 drawn with a thin pen (2 pixels wide, 80 tall), dark on white, as a mouse draws it."""
    picture = np.full((100, 80), 255, dtype="uint8")
    picture[10:12, 15:65] = 0
    for row in range(12, 90):
        column = 63 - (row - 12) * 30 // 78
        picture[row, column : column + 2] = 0
    return Image.fromarray(picture)


def _ink(pixels: np.ndarray, pixel_max: float = 16.0) -> float:
    """A row of counts' share of ink pixels in its bitmap."""
    return float(np.asarray(pixels).mean() / pixel_max)


def test_an_export_records_its_training_datas_ink_and_slants(recipe_export, small_digits):
    metadata = json.loads((recipe_export / METADATA).read_text())
    expected = recipe_from_counts(small_digits.x_train, (8, 8), 16.0, small_digits.y_train)
    assert metadata["picture_recipe"] == expected.to_dict()
    recorded = metadata["picture_recipe"]
    assert 0.25 < recorded["ink_fraction"] < 0.35
    # The bundled digits stand nearly upright, their 7s leaning right and their 6s left.
    assert abs(recorded["slant"]) < 0.1
    assert len(recorded["class_slants"]) == 10
    assert recorded["class_slants"][7] < recorded["slant"] - 0.1
    assert recorded["class_slants"][6] > recorded["slant"] + 0.1
    assert load_export(recipe_export).picture_recipe == expected
    # Rows stored from pictures (picture folders, collected digits) take no labels' slants.
    assert recipe_from_counts(small_digits.x_train, (8, 8), 16.0).class_slants is None


def test_a_thin_picture_is_predicted_through_the_recipe(recipe_export, tmp_path):
    export = load_export(recipe_export)
    recorded = export.picture_recipe.ink_fraction
    path = tmp_path / "seven.png"
    _thin_seven().save(path)
    plain = image_to_pixels(_thin_seven(), (8, 8), 16.0)
    assert _ink(plain) < recorded - 0.1  # the thin pen as drawn: far less ink than trained on
    # predict reads the picture through the recipe: its ink is the training data's.
    pixels = read_image(path, export)
    assert abs(_ink(pixels) - recorded) < INK_TOLERANCE
    np.testing.assert_array_equal(
        pixels[0], image_to_pixels(_thin_seven(), (8, 8), 16.0, export.picture_recipe)
    )
    # It is read class by class: the stored row, then one row per class's own slant.
    rows = read_picture(path, export)
    assert rows.shape == (11, 64)
    np.testing.assert_array_equal(rows[0], pixels[0])
    for label, slant in enumerate(export.picture_recipe.class_slants):
        np.testing.assert_array_equal(
            rows[1 + label],
            image_to_pixels(
                _thin_seven(), (8, 8), 16.0, replace(export.picture_recipe, slant=slant)
            ),
        )
    [row] = predict_inputs(export, [path])
    probabilities, classes = export.predict_pictures(rows[None])
    assert row["class"] == int(classes[0])
    assert row["probability"] == pytest.approx(float(probabilities.max()))
    assert probabilities.sum() == pytest.approx(1.0)
    # serve's page (its drawings, and the rows it collects) converts the same way.
    png = io.BytesIO()
    _thin_seven().save(png, format="PNG")
    np.testing.assert_array_equal(read_upload(png.getvalue(), export), rows)


def test_an_export_without_a_recipe_loads_and_converts_as_before(recipe_export, tmp_path):
    for old in (
        _copy_with(recipe_export, tmp_path / "without", picture_recipe=DROP),
        # adapt writes null for a version adapted from such an export.
        _copy_with(recipe_export, tmp_path / "null", picture_recipe=None),
    ):
        export = load_export(old)
        assert export.picture_recipe is None
        path = tmp_path / "seven.png"
        _thin_seven().save(path)
        np.testing.assert_array_equal(
            read_image(path, export)[0], image_to_pixels(_thin_seven(), (8, 8), 16.0)
        )
        np.testing.assert_array_equal(read_picture(path, export), read_image(path, export))


@pytest.mark.parametrize(
    ("recipe", "match"),
    [
        ({"box": None, "ink_fraction": 1.5}, "between 0 and 1 (got 1.5)"),
        ({"box": None, "ink_fraction": "0.3"}, "must be a number between 0 and 1 (got '0.3')"),
        ({"box": None, "ink_fraction": True}, "(got True)"),
        ({"box": [32], "ink_fraction": 0.3}, "[height, width] in pixels (got [32])"),
        ({"box": [0, 20], "ink_fraction": None}, "(height, width) in pixels"),
        ({"ink_fraction": 0.3}, "{'box': ..., 'ink_fraction': ..., 'slant': ...}"),
        ({"box": None, "ink_fraction": 0.3, "run": "x"}, "{'box': ..., 'ink_fraction': ..."),
        (
            {"box": None, "ink_fraction": 0.3, "slant": "0"},
            "slant must be a number of columns per row (got '0')",
        ),
        ({"box": None, "ink_fraction": 0.3, "slant": 2.0}, "slant must lie between -1 and 1"),
        (
            {"box": None, "ink_fraction": 0.3, "slant": 0.04, "class_slants": [0.1, 0.2, 0.3]},
            "it has 3 class_slants for 10 classes",
        ),
        (
            {"box": None, "ink_fraction": 0.3, "slant": 0.04, "class_slants": "0.1"},
            "class_slants must be a list of numbers",
        ),
        (
            {"box": None, "ink_fraction": 0.3, "slant": 0.04, "class_slants": [0.1] * 9 + [3]},
            "class_slants must lie between -1 and 1",
        ),
        (
            {"box": None, "ink_fraction": 0.3, "class_slants": [0.1] * 10},
            "class_slants needs a slant",
        ),
        ([0.3], "(got [0.3])"),
    ],
)
def test_a_tampered_recipe_is_refused_in_one_line(recipe_export, tmp_path, recipe, match):
    copy = _copy_with(recipe_export, tmp_path, picture_recipe=recipe)
    with pytest.raises(ZooError) as error:
        load_export(copy)
    message = one_line_error(error)
    assert message.startswith(f"the picture_recipe in {str(copy / METADATA)!r}"), message
    assert match in message
    assert message.endswith("the metadata was changed or damaged: export again")


def test_a_tampered_recipe_stops_predict_with_exit_2(recipe_export, tmp_path, cli_error):
    copy = _copy_with(recipe_export, tmp_path, picture_recipe={"box": None, "ink_fraction": -1})
    path = tmp_path / "seven.png"
    _thin_seven().save(path)
    cli_error("predict", copy, path, match="picture_recipe")


def test_the_recipe_round_trips_through_its_dict():
    for recipe in (
        PictureRecipe(),
        PictureRecipe((32, 24), 0.308),
        PictureRecipe(None, 0.25),
        PictureRecipe(None, 0.308, 0.043),
        PictureRecipe(slant=-0.2),
        PictureRecipe(None, 0.308, 0.043, (0.1, -0.16, 0.22)),
    ):
        assert PictureRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_a_recipe_offers_other_strokes_and_narrower_boxes_to_choose_from():
    recorded = PictureRecipe(None, 0.3, 0.04, (0.0, 0.1))
    variants = recipe_variants(recorded, (8, 8), 16.0)
    # The recorded recipe first (a tie keeps it), then every other ink and box.
    assert variants[0] == recorded and len(variants) == len(set(variants)) == 12
    assert sorted({v.ink_fraction for v in variants}) == pytest.approx([0.195, 0.24, 0.3, 0.375])
    assert {v.box for v in variants} == {None, (32, 28), (32, 24)}
    assert {(v.slant, v.class_slants) for v in variants} == {(0.04, (0.0, 0.1))}
    # Nothing to vary: the plain recipe, a recipe with a box of its own, grey images.
    assert recipe_variants(None, (8, 8), 16.0) == [None]
    boxed = PictureRecipe((32, 24), 0.3)
    assert recipe_variants(boxed, (8, 8), 16.0) == [boxed]
    assert recipe_variants(recorded, (28, 28), 255.0) == [recorded]


def test_an_export_recorded_before_the_slant_keeps_its_pictures_slant(recipe_export, tmp_path):
    recorded = json.loads((recipe_export / METADATA).read_text())["picture_recipe"]
    older = {"box": recorded["box"], "ink_fraction": recorded["ink_fraction"]}
    export = load_export(_copy_with(recipe_export, tmp_path, picture_recipe=older))
    assert export.picture_recipe == PictureRecipe(ink_fraction=recorded["ink_fraction"])
    path = tmp_path / "seven.png"
    _thin_seven().save(path)
    unsheared = image_to_pixels(_thin_seven(), (8, 8), 16.0, export.picture_recipe)
    np.testing.assert_array_equal(read_image(path, export)[0], unsheared)
    # The current recipe stands the leaning 7 up: a different bitmap.
    current = image_to_pixels(_thin_seven(), (8, 8), 16.0, PictureRecipe.from_dict(recorded))
    assert not np.array_equal(current, unsheared)


def test_an_export_recorded_before_the_class_slants_reads_a_picture_once(recipe_export, tmp_path):
    recorded = json.loads((recipe_export / METADATA).read_text())["picture_recipe"]
    older = {key: value for key, value in recorded.items() if key != "class_slants"}
    export = load_export(_copy_with(recipe_export, tmp_path, picture_recipe=older))
    assert export.picture_recipe.class_slants is None
    path = tmp_path / "seven.png"
    _thin_seven().save(path)
    rows = read_picture(path, export)
    np.testing.assert_array_equal(rows, read_image(path, export))
    [row] = predict_inputs(export, [path])
    probabilities, classes = export.predict_proba(rows)
    assert row["class"] == int(classes[0])
    assert row["probability"] == pytest.approx(float(probabilities.max()))


def test_reading_class_by_class_takes_each_class_from_its_own_row():
    # Two pictures, two classes: rows [stored, as class 0, as class 1].
    probabilities = np.array(
        [
            [[0.2, 0.8], [0.9, 0.1], [0.7, 0.3]],  # read as a 0 it is a 0 at 0.9; as a 1, 0.3
            [[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]],  # every class row rules its class out
        ]
    )
    read = read_by_class(probabilities)
    np.testing.assert_allclose(read[0], [0.9 / 1.2, 0.3 / 1.2], rtol=1e-6)
    # Nothing to renormalise: the stored row's reading.
    np.testing.assert_allclose(read[1], [0.5, 0.5])
    np.testing.assert_allclose(read_by_class(probabilities[:, :1]), probabilities[:, 0])
    with pytest.raises(ZooError, match="1 \\+ 2 rows \\(got 2\\)"):
        read_by_class(probabilities[:, :2])


def test_picture_rows_shear_only_counted_bitmaps_by_class():
    recipe = PictureRecipe(None, 0.308, 0.043, (-0.16, 0.22))
    rows = picture_rows(_thin_seven(), (8, 8), 16.0, recipe)
    assert rows.shape == (3, 64)
    np.testing.assert_array_equal(rows[0], image_to_pixels(_thin_seven(), (8, 8), 16.0, recipe))
    assert not np.array_equal(rows[1], rows[2])
    # Grey images have no slant: one row.
    assert picture_rows(_thin_seven(), (28, 28), 255.0, recipe).shape == (1, 784)
