"""The picture recipe's options: slant and stroke thickness matched to the training data, the box."""

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ZooError
from zoo.pictures import MAX_SHEAR, PictureRecipe, image_to_pixels, recipe_from_counts, slants


def _thin_one() -> Image.Image:
    """A 1 drawn with a thin pen: a 2-pixel stroke, 80 pixels tall, dark on white."""
    picture = np.full((100, 60), 255, dtype="uint8")
    picture[10:90, 29:31] = 0
    return Image.fromarray(picture)


def _wide_ring() -> Image.Image:
    """A flat 0 (a ring twice as wide as it is tall), white on black."""
    picture = np.zeros((60, 100), dtype="uint8")
    picture[10:50, 10:90] = 255
    picture[16:44, 16:84] = 0
    return Image.fromarray(picture)


def test_the_empty_recipe_is_the_recipe_as_first_shipped():
    for picture in (_thin_one(), _wide_ring()):
        plain = image_to_pixels(picture, (8, 8), 16)
        assert np.array_equal(image_to_pixels(picture, (8, 8), 16, PictureRecipe()), plain)
        assert np.array_equal(image_to_pixels(picture, (8, 8), 16, None), plain)


def test_ink_fraction_thickens_a_thin_stroke_to_the_training_datas_ink():
    plain = image_to_pixels(_thin_one(), (8, 8), 16)
    matched = image_to_pixels(_thin_one(), (8, 8), 16, PictureRecipe(ink_fraction=0.3))
    # The share of the 32x32 bitmap that is ink: the counts' sum over 1024.
    assert plain.sum() / 1024 < 0.1
    assert 0.25 <= matched.sum() / 1024 <= 0.35
    assert matched.min() >= 0 and matched.max() <= 16
    # Still one centred upright stroke: every row inked, the outer columns empty.
    image = matched.reshape(8, 8)
    assert (image.sum(axis=1) > 0).all()
    assert image[:, [0, 7]].sum() == 0


def test_a_stroke_already_thick_enough_is_left_alone():
    plain = image_to_pixels(_wide_ring(), (8, 8), 16)
    low = PictureRecipe(ink_fraction=0.01)
    assert np.array_equal(image_to_pixels(_wide_ring(), (8, 8), 16, low), plain)


def test_box_fills_its_height_and_squeezes_a_wide_digit_to_its_width():
    plain = image_to_pixels(_wide_ring(), (8, 8), 16).reshape(8, 8)
    boxed = image_to_pixels(_wide_ring(), (8, 8), 16, PictureRecipe(box=(32, 16))).reshape(8, 8)
    # As first shipped the flat ring fills the width and half the height.
    assert plain[:, 0].sum() > 0 and plain[0].sum() == 0
    # In a 32x16 box it fills the height and only the middle 16 columns (blocks 2..5).
    assert (boxed.sum(axis=1) > 0).all()
    assert boxed[:, [0, 1, 6, 7]].sum() == 0


def test_recipe_from_counts_reads_the_training_datas_mean_ink():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 17, size=(50, 64)).astype("float32")
    recipe = recipe_from_counts(counts, (8, 8), 16)
    assert recipe.box is None
    assert recipe.ink_fraction == pytest.approx(float(counts.mean() / 16))
    assert recipe.to_dict() == {
        "box": None, "ink_fraction": recipe.ink_fraction, "slant": recipe.slant
    }  # fmt: skip
    assert recipe.slant == pytest.approx(float(slants(counts.reshape(-1, 8, 8)).mean()))
    # Grey images (0..255) are not counted bitmaps: no recipe to match.
    assert recipe_from_counts(counts, (8, 8), 255) is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"box": (32,)}, "picture box"),
        ({"box": (0, 20)}, "picture box"),
        ({"ink_fraction": 1.5}, "ink_fraction"),
        ({"slant": 1.5}, "slant must lie between"),
        ({"slant": float("nan")}, "slant must lie between"),
    ],
)
def test_bad_recipes_are_refused(arguments, message):
    with pytest.raises(ZooError, match=message):
        PictureRecipe(**arguments)


def _leaning_stroke(lean: float) -> Image.Image:
    """A 3-pixel stroke 80 pixels tall whose column moves ``lean`` per row down, white on black."""
    picture = np.zeros((100, 100), dtype="uint8")
    for row in range(10, 90):
        column = round(50 + lean * (row - 50))
        picture[row, column - 1 : column + 2] = 255
    return Image.fromarray(picture)


def test_slants_reads_the_lean_of_the_ink():
    images = np.zeros((4, 32, 32))
    for row in range(4, 28):
        images[0, row, 16] = 1.0  # upright
        images[1, row, round(16 - 0.5 * (row - 16))] = 1.0  # leaning right
        images[2, row, round(16 + 0.25 * (row - 16))] = 1.0  # leaning left
    images[3, 10, 4:28] = 1.0  # a dash: a single row of ink
    assert slants(images) == pytest.approx([0.0, -0.5, 0.25, 0.0], abs=0.02)


def test_slant_stands_a_leaning_stroke_upright():
    """The recipe shears the picture to the training data's slant before it draws it."""
    upright = image_to_pixels(_leaning_stroke(0.0), (8, 8), 16)
    leaning = image_to_pixels(_leaning_stroke(-0.4), (8, 8), 16)
    deskewed = image_to_pixels(_leaning_stroke(-0.4), (8, 8), 16, PictureRecipe(slant=0.0))
    assert slants(leaning.reshape(1, 8, 8))[0] < -0.2
    assert abs(slants(deskewed.reshape(1, 8, 8))[0]) < 0.05
    # Stood upright, the leaning stroke fills the same middle columns in every row, as the
    # upright one does; leaning, it crosses the bitmap.
    for pixels in (upright, deskewed):
        image = pixels.reshape(8, 8)
        assert (image.sum(axis=1) > 0).all()
        assert image[:, [0, 1, 2, 5, 6, 7]].sum() == 0
    assert leaning.reshape(8, 8)[:, [0, 1, 2, 5, 6, 7]].sum() > 0
    # Sheared to a lean of its own instead.
    leant = image_to_pixels(_leaning_stroke(0.0), (8, 8), 16, PictureRecipe(slant=-0.3))
    assert slants(leant.reshape(1, 8, 8))[0] == pytest.approx(-0.3, abs=0.08)


def test_a_dash_is_sheared_no_further_than_the_steepest_shear():
    """A near-flat scribble has no lean to measure: the shear stops at MAX_SHEAR."""
    picture = np.zeros((60, 100), dtype="uint8")
    picture[29:31, 10:90] = 255
    picture[31, 88:90] = 255  # a hook on the end: a slant of several columns per row
    pixels = image_to_pixels(Image.fromarray(picture), (8, 8), 16, PictureRecipe(slant=0.0))
    assert np.isfinite(pixels).all() and pixels.sum() > 0
    assert MAX_SHEAR == 1.0


def test_grey_images_ignore_the_slant():
    picture = _leaning_stroke(-0.4)
    plain = image_to_pixels(picture, (28, 28), 255)
    assert np.array_equal(image_to_pixels(picture, (28, 28), 255, PictureRecipe(slant=0.0)), plain)
