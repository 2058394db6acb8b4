"""Turning a picture of a digit into the dataset's pixels.

A picture is converted the way the dataset's images were made:

* counted bitmaps (``pixel_max`` a square such as 16, the bundled digits): the
  UCI optdigits recipe. The digit's bounding box is scaled, aspect ratio
  kept, into a ``4 x 8 = 32``-pixel square bitmap, binarised, and the ink
  pixels of each ``4 x 4`` block are counted into an 8x8 image of ``0..16``.
* grey images (``pixel_max`` 255 or 1, MNIST): the digit's bounding box is
  scaled, aspect ratio kept, into a ``20 x 20`` box and placed in the
  ``28 x 28`` image so that its centre of mass is the image's centre.

Both sizes follow the dataset's image shape. The picture may have either
polarity; the background is the colour of its border.

A :class:`PictureRecipe` can match a counted bitmap to the training data's
own statistics (:func:`recipe_from_counts`): its slant (optdigits' digits stand
nearly upright, a slant of 0.04 with a spread of 0.13 columns per row, where
MNIST's SD-3 digits spread 0.23), its ink (optdigits' strokes cover 31% of every
32x32 bitmap, whatever the digit, where a thin pen's 1 covers 13%) and,
optionally, the box the digit is drawn into. Without one, a picture is
converted as above.

One slant for every digit has a price: optdigits' 7s lean right (-0.16) and its
6s left (+0.22), each class within 0.06-0.08 of its own mean, so a plain 7 stood
at the mean slant looks like a 3. A recipe may therefore also record each
class's own mean slant (``class_slants``); a picture read by it
(:func:`picture_rows`, :func:`read_by_class`) is converted once per class,
sheared to that class's slant, and class c's probability comes from the row
sheared to class c's slant. Stored rows (training data, collected digits) keep
the one mean slant: their conversion must not depend on their label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.validation import square_side

# The most steps a stroke is thickened by to reach a recipe's ink fraction: each step
# adds about a pixel on each side, and the box shrinks by as much to leave room for it.
MAX_THICKEN_STEPS = 8
# The steepest shear a picture is deskewed by (columns per row, 45 degrees): a slant
# measured past it comes from a digit with almost no height (a dash), not from a lean.
MAX_SHEAR = 1.0
# Dilation alternates the 4-neighbour cross and the 3x3 square: together, close to a disc.
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
_SQUARE = np.ones((3, 3), dtype=bool)
# The variants of a recorded recipe a person's own pictures choose among (recipe_variants):
# strokes thickened to these shares of the training data's ink, and the digit drawn at the
# bitmap's full height into a box of these shares of its width (None: the recipe's own box).
VARIANT_INK_SCALES = (1.0, 0.8, 0.65, 1.25)
VARIANT_BOX_WIDTHS = (None, 0.875, 0.75)


@dataclass(frozen=True)
class PictureRecipe:
    """How a picture is drawn into a counted bitmap, beyond the dataset's image shape.

    Attributes:
        box: ``(height, width)`` in bitmap pixels (the 32x32 bitmap of 8x8
            optdigits counts): the digit is scaled to the box's height,
            keeping its aspect ratio, squeezed to the box's width when it
            would be wider, and centred. ``None``: the whole bitmap, aspect
            ratio kept, as first shipped.
        ink_fraction: the strokes are thickened, a pixel at a time, until at
            least this share of the bitmap is ink (the nearer of the two
            steps around it). ``None``: strokes as drawn.
        slant: the picture is sheared, rows kept, until its ink's slant (the
            columns its centre line moves per row down, from the ink's second
            moments; negative leans right) is this one, before it is cropped
            and drawn. ``None``: the picture's own slant.
        class_slants: each class's mean slant in the training data, in the
            order of the classes (sorted labels); a picture *read* by the
            recipe is converted once per class (:func:`picture_rows`).
            ``None``: read at ``slant`` alone.
    """

    box: tuple[int, int] | None = None
    ink_fraction: float | None = None
    slant: float | None = None
    class_slants: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.box is not None:
            box = tuple(int(side) for side in self.box)
            if len(box) != 2 or min(box) < 1:
                raise ZooError(f"a picture box is (height, width) in pixels (got {self.box!r})")
            object.__setattr__(self, "box", box)
        if self.ink_fraction is not None:
            fraction = float(self.ink_fraction)
            if not 0.0 < fraction < 1.0:
                raise ZooError(f"ink_fraction must lie between 0 and 1 (got {self.ink_fraction!r})")
            object.__setattr__(self, "ink_fraction", fraction)
        if self.slant is not None:
            object.__setattr__(self, "slant", _checked_slant(self.slant, "slant"))
        if self.class_slants is not None:
            if self.slant is None or len(self.class_slants) < 2:
                raise ZooError(
                    "class_slants needs a slant and at least two classes (got "
                    f"{_short(self.class_slants)} with slant {self.slant!r})"
                )
            object.__setattr__(
                self,
                "class_slants",
                tuple(_checked_slant(each, "class_slants") for each in self.class_slants),
            )

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready values (for an export's metadata)."""
        box = None if self.box is None else list(self.box)
        values = {"box": box, "ink_fraction": self.ink_fraction, "slant": self.slant}
        if self.class_slants is not None:
            values["class_slants"] = list(self.class_slants)
        return values

    @classmethod
    def from_dict(cls, values: Any) -> PictureRecipe:
        """The recipe :meth:`to_dict` wrote, checked as strictly as it was written.

        Args:
            values: ``{"box": None or [height, width], "ink_fraction": None or a number,
                "slant": None or a number, "class_slants": a list of numbers}``;
                without ``slant`` (exports written before it was recorded), the
                picture's own slant; without ``class_slants``, one slant for all.

        Raises:
            ZooError: not such a mapping (another key, a string or a flag where a
                number belongs), or values out of range.
        """
        optional = {"slant", "class_slants"}
        if not isinstance(values, dict) or set(values) - optional != {"box", "ink_fraction"}:
            raise ZooError(
                "a picture recipe is {'box': ..., 'ink_fraction': ..., 'slant': ...} "
                f"(got {_short(values)})"
            )
        box, ink, slant = values["box"], values["ink_fraction"], values.get("slant")
        class_slants = values.get("class_slants")
        if box is not None and not (
            isinstance(box, list) and len(box) == 2 and all(_is_whole(side) for side in box)
        ):
            raise ZooError(f"a picture box is [height, width] in pixels (got {_short(box)})")
        if ink is not None and not _is_number(ink):
            raise ZooError(f"ink_fraction must be a number between 0 and 1 (got {_short(ink)})")
        if slant is not None and not _is_number(slant):
            raise ZooError(f"slant must be a number of columns per row (got {_short(slant)})")
        if class_slants is not None and not (
            isinstance(class_slants, list) and all(_is_number(each) for each in class_slants)
        ):
            raise ZooError(
                "class_slants must be a list of numbers of columns per row, one per class "
                f"(got {_short(class_slants)})"
            )
        return cls(
            box=None if box is None else tuple(box),
            ink_fraction=ink,
            slant=slant,
            class_slants=None if class_slants is None else tuple(class_slants),
        )


def _checked_slant(value: Any, name: str) -> float:
    slant = float(value)
    if not abs(slant) <= MAX_SHEAR:
        raise ZooError(
            f"{name} must lie between -{MAX_SHEAR:g} and {MAX_SHEAR:g} columns per row "
            f"(got {value!r})"
        )
    return slant


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    """``repr(value)``, cut to a length an error line can hold."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def recipe_from_counts(
    x_train: np.ndarray,
    image_shape: tuple[int, ...],
    pixel_max: float,
    y_train: np.ndarray | None = None,
) -> PictureRecipe | None:
    """The recipe matching a counted-bitmap training set's own slant and stroke thickness.

    ``ink_fraction`` is the training images' mean share of ink pixels (the
    mean count over ``pixel_max``: 0.308 for optdigits); ``slant`` is their
    mean slant (:func:`slants`; 0.043 for optdigits, whose digits stand
    nearly upright: a picture is deskewed to it); with labels, ``class_slants``
    are each class's mean slant (optdigits' 7s -0.16, its 6s +0.22). The box stays the
    whole bitmap: a box matched to the training images' extent (their digits
    fill the height and about 18 to 21 of the 32 columns) read other
    writers' digits worse, not better (``benchmarks/RESULTS.md``).

    Args:
        x_train: ``[n, n_features]`` raw counts, ``0..pixel_max``.
        image_shape: the 2-D image shape, such as ``(8, 8)``.
        pixel_max: a square count range, such as 16 (4x4 blocks).
        y_train: the rows' labels, for ``class_slants`` (``None``: not recorded).

    Returns:
        A :class:`PictureRecipe`, or ``None`` for data that are not counted bitmaps.
    """
    if len(image_shape) != 2 or not _is_counted(pixel_max):
        return None
    counts = np.asarray(x_train, dtype="float64")
    ink = float(counts.mean() / pixel_max)
    own = slants(counts.reshape(-1, *image_shape))

    def mean(values: np.ndarray) -> float:
        return float(np.clip(np.mean(values), -MAX_SHEAR, MAX_SHEAR))

    class_slants = None
    if y_train is not None:
        y_train = np.asarray(y_train)
        labels = np.unique(y_train)
        if len(labels) >= 2:
            class_slants = tuple(mean(own[y_train == label]) for label in labels)
    return PictureRecipe(ink_fraction=ink, slant=mean(own), class_slants=class_slants)


def recipe_variants(
    recipe: PictureRecipe | None, image_shape: tuple[int, ...], pixel_max: float
) -> list[PictureRecipe | None]:
    """The recorded recipe, then the variants of it a person's own pictures may choose among.

    A recipe matched to the training data (:func:`recipe_from_counts`) draws
    every writer's digits alike; a person whose pen is thinner, or whose digits
    are wider, than that data's writers' may be read better with thinner (or thicker) strokes
    (``VARIANT_INK_SCALES`` of the recorded ink) or a narrower box at full height
    (``VARIANT_BOX_WIDTHS`` of the bitmap's width). ``digits-zoo adapt`` keeps the
    variant that the export reads the person's labelled pictures best through
    (:func:`digits_zoo.ship.adapt.recipe_choice`). The slants are kept.

    Returns:
        ``[recipe]`` alone for a recipe without an ink fraction or a box of its own, or
        data that are not counted bitmaps; otherwise the recorded recipe first, then
        the other combinations of the ink scales and box widths.
    """
    block = square_side(pixel_max, 2)
    if recipe is None or recipe.ink_fraction is None or recipe.box is not None or block is None:
        return [recipe]
    if len(image_shape) != 2:
        return [recipe]
    height, width = image_shape[0] * block, image_shape[1] * block
    variants: list[PictureRecipe | None] = []
    for scale in VARIANT_INK_SCALES:
        for share in VARIANT_BOX_WIDTHS:
            box = None if share is None else (height, max(1, round(width * share)))
            variants.append(replace(recipe, ink_fraction=recipe.ink_fraction * scale, box=box))
    return variants


def slants(images: np.ndarray) -> np.ndarray:
    """Each image's slant: the columns its ink's centre line moves per row down.

    From the ink's second moments, ``cov(row, column) / var(row)``; negative
    leans right (the top to the right of the bottom). An image with no ink,
    or ink in a single row, has slant 0.

    Args:
        images: ``[n, height, width]`` ink, any non-negative scale.

    Returns:
        float64 ``[n]``.
    """
    images = np.asarray(images)
    columns = np.arange(images.shape[2], dtype="float64")
    # Per-row sums only ([n, height]): no temporary the size of the images.
    row_mass = images.sum(axis=2, dtype="float64")
    row_columns = images @ columns
    return _slant(row_mass, row_columns)[0]


def _slant(row_mass: np.ndarray, row_columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slants and mean rows from each image's per-row ink (``[n, height]``) and column sums."""
    rows = np.arange(row_mass.shape[1], dtype="float64")
    mass = row_mass.sum(axis=1)
    safe = np.where(mass > 0, mass, 1.0)
    mean_row = row_mass @ rows / safe
    mean_column = row_columns.sum(axis=1) / safe
    offsets = rows[None, :] - mean_row[:, None]
    variance = (row_mass * offsets**2).sum(axis=1) / safe
    covariance = (offsets * (row_columns - mean_column[:, None] * row_mass)).sum(axis=1) / safe
    flat = variance <= 1e-9
    return np.where(flat, 0.0, covariance / np.where(flat, 1.0, variance)), mean_row


def _upright(ink: np.ndarray, slant: float) -> np.ndarray:
    """``ink`` sheared, rows kept, so that its slant becomes ``slant``.

    The shear is at most :data:`MAX_SHEAR` columns per row either way; the
    canvas widens so that no ink is cut off. Each row is shifted on its own
    (linear interpolation into a float32 canvas), so a 1024 x 1024 picture
    needs a canvas of at most 12 MiB and no larger temporary.
    """
    height, width = ink.shape
    columns = np.arange(width, dtype="float64")
    row_mass = ink.sum(axis=1)
    own, mean_row = _slant(row_mass[None], (ink @ columns)[None])
    shear = float(np.clip(own[0] - slant, -MAX_SHEAR, MAX_SHEAR))
    if abs(shear) < 1e-3:
        return ink
    # Row r moves by -shear * (r - mean_row) columns: its centre line stands at ``slant``.
    shifts = -shear * (np.arange(height) - mean_row[0])
    pad = math.ceil(float(np.abs(shifts).max())) + 1
    sheared = np.zeros((height, width + 2 * pad), dtype="float32")
    positions = np.arange(width + 2 * pad, dtype="float64")
    for row in np.flatnonzero(row_mass > 0):
        sheared[row] = np.interp(positions, columns + pad + shifts[row], ink[row], 0.0, 0.0)
    return sheared


def image_to_pixels(
    image: Any,
    image_shape: tuple[int, ...],
    pixel_max: float,
    recipe: PictureRecipe | None = None,
) -> np.ndarray:
    """Converts a picture of one digit to a flat row of the dataset's raw pixels.

    The picture may have any size and either polarity (dark ink on a light
    background or light on dark); the background is the colour of the
    border. See the module docstring for the two recipes. This is the row a
    picture is stored as (training data, collected digits); a picture read
    for a prediction is converted by :func:`picture_rows`.

    Args:
        image: a ``PIL.Image.Image``.
        image_shape: the dataset's image shape, such as ``(8, 8)`` or ``(28, 28)``.
        pixel_max: the dataset's largest pixel value (16 or 255).
        recipe: the slant, box and ink of a counted bitmap (see
            :class:`PictureRecipe`); grey images ignore it.

    Returns:
        float32 ``[prod(image_shape)]`` values in ``0..pixel_max``.

    Raises:
        ZooError: the dataset's images are not 2-D, or the picture is blank.
    """
    _check_images(image_shape)
    slant = None if recipe is None else recipe.slant
    return _pixels(_ink(image), image_shape, pixel_max, recipe, slant)


def picture_rows(
    image: Any,
    image_shape: tuple[int, ...],
    pixel_max: float,
    recipe: PictureRecipe | None = None,
) -> np.ndarray:
    """A picture of one digit as the rows it is read by: the stored row, then one per class.

    Row 0 is :func:`image_to_pixels`'s. With a counted-bitmap recipe that
    records ``class_slants``, row ``1 + c`` is the picture sheared to class
    ``c``'s own slant instead of the mean one; :func:`read_by_class` turns the
    model's probabilities for these rows into the picture's.

    Returns:
        float32 ``[1, n_features]``, or ``[1 + n_classes, n_features]``.

    Raises:
        ZooError: as :func:`image_to_pixels`.
    """
    _check_images(image_shape)
    ink = _ink(image)
    slants_read = [None if recipe is None else recipe.slant]
    if recipe is not None and recipe.class_slants is not None and _is_counted(pixel_max):
        slants_read += list(recipe.class_slants)
    return np.stack([_pixels(ink, image_shape, pixel_max, recipe, s) for s in slants_read])


def read_by_class(probabilities: np.ndarray) -> np.ndarray:
    """Each picture's probabilities from those of its rows (:func:`picture_rows`).

    With one row per picture, that row's. With class rows, class ``c``'s score
    is row ``1 + c``'s probability of ``c`` (the picture read as a ``c``
    leaning as the training data's ``c`` lean), and the scores are
    renormalised to sum to 1.

    Args:
        probabilities: ``[n_pictures, n_rows, n_classes]``, ``n_rows`` 1 or
            ``1 + n_classes``.

    Returns:
        float32 ``[n_pictures, n_classes]``.
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    n_rows, n_classes = probabilities.shape[1], probabilities.shape[2]
    if n_rows == 1:
        return probabilities[:, 0].astype("float32")
    if n_rows != 1 + n_classes:
        raise ZooError(
            f"a picture read class by class has 1 + {n_classes} rows (got {n_rows}); convert "
            "it with picture_rows and the export's own recipe"
        )
    scores = probabilities[:, 1 + np.arange(n_classes), np.arange(n_classes)]
    total = scores.sum(axis=1, keepdims=True)
    # Every class row sure it is not its class (underflow): the stored row's reading.
    read = np.where(total > 0, scores / np.where(total > 0, total, 1.0), probabilities[:, 0])
    return read.astype("float32")


def _check_images(image_shape: tuple[int, ...]) -> None:
    if len(image_shape) != 2:
        raise ZooError(
            f"this export's data are not 2-D images (image shape {list(image_shape)}); "
            "pass a .npy array or a .csv of pixel rows instead"
        )


def _is_counted(pixel_max: float) -> bool:
    """Counted bitmaps: ``pixel_max`` a square of whole blocks (16: 4x4 blocks)."""
    return square_side(pixel_max, 2) is not None


def _pixels(
    ink: np.ndarray,
    image_shape: tuple[int, ...],
    pixel_max: float,
    recipe: PictureRecipe | None,
    slant: float | None,
) -> np.ndarray:
    """The row of ``ink`` by the recipe, sheared to ``slant`` (counted bitmaps only)."""
    height, width = image_shape
    block = square_side(pixel_max, 2)
    counted = block is not None
    if counted and slant is not None:
        # The ink's peak (1) lands between two canvas pixels, one of which keeps half of it
        # or more: the sheared ink still has pixels to crop to.
        ink = _upright(ink, slant)
    rows, columns = np.nonzero(ink >= 0.5)
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    if counted:
        # optdigits: a (4*8)x(4*8) bitmap, ink pixels counted in 4x4 blocks into 0..16.
        size = (height * block, width * block)
        if recipe is None or recipe == PictureRecipe():
            bitmap = _fit(crop, size) >= 0.5
        else:
            bitmap = _draw(crop, size, recipe)
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


def _draw(crop: np.ndarray, size: tuple[int, int], recipe: PictureRecipe) -> np.ndarray:
    """The binary bitmap of ``crop`` drawn into ``size`` by ``recipe`` (box, then ink)."""
    from scipy.ndimage import binary_dilation

    box_height, box_width = recipe.box or size
    box_height, box_width = min(box_height, size[0]), min(box_width, size[1])
    steps = MAX_THICKEN_STEPS if recipe.ink_fraction is not None else 0
    best: tuple[float, np.ndarray] | None = None
    for step in range(min(steps, (min(box_height, box_width) - 1) // 2) + 1):
        # The box shrinks by a pixel on each side for each step the strokes grow.
        height, width = box_height - 2 * step, box_width - 2 * step
        if recipe.box is None:
            digit = _fit(crop, (height, width), centred=False) >= 0.5
        else:
            scale = height / crop.shape[0]
            scaled_width = max(1, min(width, round(crop.shape[1] * scale)))
            digit = _resize(crop, (height, scaled_width)) >= 0.5
        bitmap = np.zeros(size, dtype=bool)
        top, left = (size[0] - digit.shape[0]) // 2, (size[1] - digit.shape[1]) // 2
        bitmap[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
        for each in range(step):
            bitmap = binary_dilation(bitmap, _CROSS if each % 2 == 0 else _SQUARE)
        if recipe.ink_fraction is None:
            return bitmap
        miss = abs(float(bitmap.mean()) - recipe.ink_fraction)
        if best is None or miss < best[0]:
            best = (miss, bitmap)
        if bitmap.mean() >= recipe.ink_fraction:
            break
    return best[1]


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
    height, width = size
    scale = min(height / crop.shape[0], width / crop.shape[1])
    new_height = max(1, min(height, round(crop.shape[0] * scale)))
    new_width = max(1, min(width, round(crop.shape[1] * scale)))
    scaled = _resize(crop, (new_height, new_width))
    if not centred:
        return scaled
    canvas = np.zeros(size)
    top, left = (height - new_height) // 2, (width - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = scaled
    return canvas


def _resize(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``crop`` (values in ``[0, 1]``) resampled to ``size`` with Lanczos, as 8-bit grey."""
    from PIL import Image

    picture = Image.fromarray(np.round(crop * 255).astype("uint8"), mode="L")
    resized = picture.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype="float64") / 255.0
