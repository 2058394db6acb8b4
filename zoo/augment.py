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
"""

from __future__ import annotations

import math

import numpy as np

from zoo.errors import ZooError

KINDS = ("none", "shift", "affine")
SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
AFFINE_COPIES = 8
MAX_TURN_DEGREES = 12.0
SCALE_RANGE = (0.9, 1.1)


def n_copies(kind: str) -> int:
    """Returns how many copies of each row (the original included) ``kind`` trains on."""
    if kind not in KINDS:
        raise ZooError(f"augment must be one of {', '.join(KINDS)} (got {kind!r})")
    return {"none": 1, "shift": 1 + len(SHIFTS), "affine": 1 + len(SHIFTS) + AFFINE_COPIES}[kind]


def square_shape(n_features: int) -> tuple[int, int]:
    """Returns ``(side, side)`` for flat square images.

    Raises:
        ZooError: ``n_features`` is not a perfect square, so the rows are not
            images this module can transform.
    """
    side = math.isqrt(int(n_features))
    if side * side != n_features or side < 2:
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


def affine_images(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turns, rescales and shifts each ``(n, h, w)`` image by its own random amount.

    Bilinear interpolation about the image centre; pixels from outside are zero.
    """
    from scipy.ndimage import map_coordinates

    n, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-MAX_TURN_DEGREES, MAX_TURN_DEGREES, n))
    scale = rng.uniform(*SCALE_RANGE, n)
    shift = rng.uniform(-1.0, 1.0, (n, 2))
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    cos, sin = (np.cos(angle) / scale)[:, None, None], (np.sin(angle) / scale)[:, None, None]
    # For each output pixel, the input point it samples (the inverse transform).
    src_y = cos * yy - sin * xx + cy - shift[:, 0, None, None]
    src_x = sin * yy + cos * xx + cx - shift[:, 1, None, None]
    index = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], src_y.shape)
    out = map_coordinates(images, [index, src_y, src_x], order=1, mode="constant", cval=0.0)
    return out.astype(images.dtype)


def augment_bank(features: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """Returns the bank of ``features`` (flat square images in ``[0, 1]``) for ``kind``.

    Row ``c * n + i`` is copy ``c`` of row ``i``; copy 0 is ``features`` itself.
    """
    copies = n_copies(kind)
    features = np.asarray(features, dtype="float32")
    if copies == 1:
        return features
    n, n_features = features.shape
    images = features.reshape(n, *square_shape(n_features))
    parts = [images] + [shift_images(images, dy, dx) for dy, dx in SHIFTS]
    if kind == "affine":
        rng = np.random.default_rng(seed)
        parts += [affine_images(images, rng) for _ in range(AFFINE_COPIES)]
    return np.concatenate(parts).reshape(copies * n, n_features)


def expand_rows(rows: np.ndarray, n: int, copies: int) -> np.ndarray:
    """Returns the bank indices of every copy of ``rows`` (of ``n`` originals)."""
    rows = np.asarray(rows)
    return (rows[None, :] + n * np.arange(copies)[:, None]).reshape(-1)
