"""Training-set augmentation that respects what digits are: small shifts, turns and rescaling.

An augmentation is precomputed once per fit as a *bank*: copy 0 is the
original rows, copies 1.. are transformed versions of every row, so that row
``i`` of copy ``c`` sits at ``c * n + i``. A trainer then expands each fold's
training indices into all copies of those rows (:func:`expand_rows`) and
leaves its validation indices alone: evaluation always sees the original
images, and a fold never trains on a transformed copy of its own validation
rows. Keras's random image layers do the same work per step, which on 8x8
inputs was far slower than these precomputed copies.

Kinds:
    ``none``: no augmentation.
    ``shift``: the 8 one-pixel shifts (and the original), 9 copies.
    ``affine``: the shifts plus 8 seeded random affine copies (turns of up to
    12 degrees, scaling by 0.9 to 1.1, shifts up to one pixel), 17 copies.
    ``handwriting``: the shifts plus 8 seeded random copies that each combine
    the affine transform with the variation of handwriting: a slant, a
    thicker or thinner stroke and an elastic distortion (Simard et al., 2003),
    17 copies, so an epoch costs what an ``affine`` one does. A search tries
    it (:mod:`zoo.space`), and its strong first trials use it at strength 0.5
    (:data:`search.spec.DENSE_FIRST_TRIALS`): there it reads UCI's 13 new
    writers as well as ``affine`` copies do (0.9891 -> 0.9909 mean test
    accuracy of the three trials), the bundled digits' CV a little better,
    and another population's digits (MNIST's SD-3, k = 0) about 5 points
    better (``benchmarks/RESULTS.md``, "Reading other writers"). At strength 1
    it reads SD-3 best but costs 0.3 points on the 13 writers, and at 2 it
    loses on both.

``strength`` scales the random copies' amounts (turn, scale, shift, slant,
stroke and distortion); the shifts stay one pixel. At strength 1 the
``affine`` bank is the one this module has always made, and at strength 0
the random copies are the originals.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import ZooError
from zoo.validation import square_side

KINDS = ("none", "shift", "affine", "handwriting")
# The transforms of the random copies, in the order their amounts are drawn.
TRANSFORMS = ("affine", "slant", "thickness", "elastic")
KIND_TRANSFORMS = {
    "none": (),
    "shift": (),
    "affine": ("affine",),
    "handwriting": TRANSFORMS,
}
SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
RANDOM_COPIES = 8
MAX_STRENGTH = 3.0
# The amounts at strength 1. Turns, scaling and shifts are those of the first
# affine bank; the rest are kept gentle, since an 8x8 pixel counts the on-bits
# of a 4x4 block of the 32x32 scan.
MAX_TURN_DEGREES = 12.0
SCALE_SPREAD = 0.1
MAX_SHIFT = 1.0
# x += slant * y: 0.3 leans a stroke by about 17 degrees.
MAX_SLANT = 0.3
# The largest step from an image toward its grey dilation (thicker) or erosion (thinner).
MAX_THICKNESS = 0.5
# Simard et al. smooth uniform(-1, 1) fields with sigma 4 and scale them by 34
# on 28x28 digits, moving pixels by 1.75 pixels (root mean square), 1/16 of the
# width; on 8x8, sigma 1 and alpha 2.5 would do the same (0.5 pixels). Alpha 2
# (0.4 pixels) is a little gentler: 8x8 strokes are one or two pixels wide.
ELASTIC_SIGMA = 1.0
ELASTIC_ALPHA = 2.0
# Dilation and erosion reach the 4 neighbours only: a 3x3 square would fill whole strokes.
_CROSS = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], dtype=bool)


def n_copies(kind: str) -> int:
    """Returns how many copies of each row (the original included) ``kind`` trains on."""
    if kind not in KINDS:
        raise ZooError(f"augment must be one of {', '.join(KINDS)} (got {kind!r})")
    if kind == "none":
        return 1
    return 1 + len(SHIFTS) + (RANDOM_COPIES if KIND_TRANSFORMS[kind] else 0)


def square_shape(n_features: int) -> tuple[int, int]:
    """Returns ``(side, side)`` for flat square images.

    Raises:
        ZooError: ``n_features`` is not a perfect square, so the rows are not
            images this module can transform.
    """
    side = square_side(n_features, 2)
    if side is None:
        raise ZooError(
            f"augmentation needs square images, but rows have {n_features} features; "
            "train with augment=none"
        )
    return side, side


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Moves ``(n, h, w)`` images by ``dy`` rows and ``dx`` columns, filling with zeros."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def stroke_images(images: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Thickens (``amount > 0``) or thins (``amount < 0``) each ``(n, h, w)`` image's strokes.

    Image ``i`` moves ``|amount[i]|`` of the way toward its grey dilation or
    erosion over the 4 neighbours; ``amount`` in ``[-1, 1]``.
    """
    from scipy.ndimage import grey_dilation, grey_erosion

    weight = np.abs(amount)[:, None, None]
    target = np.where(
        (amount > 0)[:, None, None],
        grey_dilation(images, footprint=_CROSS),
        grey_erosion(images, footprint=_CROSS),
    )
    return np.clip(images + weight * (target - images), 0.0, 1.0).astype(images.dtype)


def random_images(
    images: np.ndarray,
    rng: np.random.Generator,
    strength: float = 1.0,
    transforms: tuple[str, ...] = ("affine",),
) -> np.ndarray:
    """Returns one random copy of each ``(n, h, w)`` image: ``transforms`` with their own amounts.

    The amounts are drawn in :data:`TRANSFORMS` order, one draw per image for
    each transform used, so that the affine-only copies are those of the
    first affine bank. The geometric transforms (affine, slant, elastic) are
    composed into one bilinear resampling about the image centre, pixels from
    outside being zero; the stroke change comes before it.

    Args:
        images: ``(n, h, w)`` images in ``[0, 1]``.
        rng: the source of every random amount.
        strength: scales every amount; 0 gives the images back.
        transforms: which of :data:`TRANSFORMS` to apply.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    n, h, w = images.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    angle, scale, shift = np.zeros(n), np.ones(n), np.zeros((n, 2))
    if "affine" in transforms:
        turn = MAX_TURN_DEGREES * strength
        angle = np.deg2rad(rng.uniform(-turn, turn, n))
        scale = rng.uniform(1.0 - SCALE_SPREAD * strength, 1.0 + SCALE_SPREAD * strength, n)
        shift = rng.uniform(-MAX_SHIFT * strength, MAX_SHIFT * strength, (n, 2))
    if "slant" in transforms:
        slant = rng.uniform(-MAX_SLANT * strength, MAX_SLANT * strength, n)
    if "thickness" in transforms:
        amount = rng.uniform(-MAX_THICKNESS * strength, MAX_THICKNESS * strength, n)
        images = stroke_images(images, amount)
    # For each output pixel, the input point it samples (the inverse transforms):
    # first the elastic displacement, then the slant, then the affine map.
    if "elastic" in transforms:
        field = gaussian_filter(
            rng.uniform(-1.0, 1.0, (2, n, h, w)), sigma=(0, 0, ELASTIC_SIGMA, ELASTIC_SIGMA)
        )
        yy, xx = yy + ELASTIC_ALPHA * strength * field[0], xx + ELASTIC_ALPHA * strength * field[1]
    if "slant" in transforms:
        xx = xx - slant[:, None, None] * yy
    cos, sin = (np.cos(angle) / scale)[:, None, None], (np.sin(angle) / scale)[:, None, None]
    src_y = cos * yy - sin * xx + cy - shift[:, 0, None, None]
    src_x = sin * yy + cos * xx + cx - shift[:, 1, None, None]
    index = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], src_y.shape)
    out = map_coordinates(images, [index, src_y, src_x], order=1, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(images.dtype)


def random_rows(
    x_raw: np.ndarray,
    pixel_max: float,
    image_shape: tuple[int, ...],
    rng: np.random.Generator,
    strength: float,
    transforms: tuple[str, ...],
) -> np.ndarray | None:
    """One random copy (:func:`random_images`) of each flat image row, in raw pixels.

    Args:
        x_raw: ``(n, side * side)`` raw pixel rows, ``pixel_max`` their largest value.
        image_shape: the rows' image shape, which must be ``(side, side)``.
        rng, strength, transforms: as :func:`random_images` takes them.

    Returns:
        ``(n, side * side)`` float32 rows, or ``None`` when the rows are not square
        images of ``image_shape`` (nothing to transform) or there are none.
    """
    x_raw = np.asarray(x_raw, dtype="float32")
    if x_raw.ndim != 2 or not len(x_raw):
        return None
    try:
        shape = square_shape(x_raw.shape[1])
    except ZooError:
        return None
    if tuple(image_shape) != shape:
        return None
    images = (x_raw / np.float32(pixel_max)).reshape(len(x_raw), *shape)
    copies = random_images(images, rng, strength, transforms)
    return (copies * np.float32(pixel_max)).reshape(len(x_raw), -1).astype("float32")


def augment_bank(
    features: np.ndarray,
    kind: str,
    seed: int,
    strength: float = 1.0,
    *,
    transforms: tuple[str, ...] | None = None,
) -> np.ndarray:
    """Returns the bank of ``features`` (flat square images in ``[0, 1]``) for ``kind``.

    Row ``c * n + i`` is copy ``c`` of row ``i``; copy 0 is ``features`` itself.

    Args:
        features: ``(n, side * side)`` rows in ``[0, 1]``.
        kind: one of :data:`KINDS`.
        seed: seeds the random copies.
        strength: scales the random copies' amounts, in ``[0, MAX_STRENGTH]``.
        transforms: the random copies' transforms instead of the kind's own
            (a subset of :data:`TRANSFORMS`); for benchmarks that measure one
            transform at a time, never searched.

    Raises:
        ZooError: an unknown kind or transform, a strength out of range, or
            rows that are not square images.
    """
    copies = n_copies(kind)
    if isinstance(strength, bool) or not 0.0 <= float(strength) <= MAX_STRENGTH:
        raise ZooError(
            f"augment_strength must be a number in [0.0, {MAX_STRENGTH}] (got {strength!r})"
        )
    transforms = KIND_TRANSFORMS[kind] if transforms is None else tuple(transforms)
    unknown = [name for name in transforms if name not in TRANSFORMS]
    if unknown or (transforms and not KIND_TRANSFORMS[kind]):
        raise ZooError(
            f"transforms must be a subset of {', '.join(TRANSFORMS)} for a kind with random "
            f"copies (affine or handwriting) (got {transforms!r} with augment={kind!r})"
        )
    features = np.asarray(features, dtype="float32")
    if copies == 1:
        return features
    n, n_features = features.shape
    images = features.reshape(n, *square_shape(n_features))
    parts = [images] + [shift_images(images, dy, dx) for dy, dx in SHIFTS]
    if KIND_TRANSFORMS[kind]:
        rng = np.random.default_rng(seed)
        parts += [
            random_images(images, rng, float(strength), transforms) for _ in range(RANDOM_COPIES)
        ]
    return np.concatenate(parts).reshape(copies * n, n_features)


def expand_rows(rows: np.ndarray, n: int, copies: int) -> np.ndarray:
    """Returns the bank indices of every copy of ``rows`` (of ``n`` originals)."""
    rows = np.asarray(rows)
    return (rows[None, :] + n * np.arange(copies)[:, None]).reshape(-1)
