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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zoo.errors import ZooError


def image_to_pixels(image: Any, image_shape: tuple[int, ...], pixel_max: float) -> np.ndarray:
    """Converts a picture of one digit to a flat row of the dataset's raw pixels.

    The picture may have any size and either polarity (dark ink on a light
    background or light on dark); the background is the colour of the
    border. See the module docstring for the two recipes.

    Args:
        image: a ``PIL.Image.Image``.
        image_shape: the dataset's image shape, such as ``(8, 8)`` or ``(28, 28)``.
        pixel_max: the dataset's largest pixel value (16 or 255).

    Returns:
        float32 ``[prod(image_shape)]`` values in ``0..pixel_max``.

    Raises:
        ZooError: the dataset's images are not 2-D, or the picture is blank.
    """
    if len(image_shape) != 2:
        raise ZooError(
            f"this export's data are not 2-D images (image shape {list(image_shape)}); "
            "pass a .npy array or a .csv of pixel rows instead"
        )
    ink = _ink(image)
    rows, columns = np.nonzero(ink >= 0.5)
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = image_shape
    block = math.isqrt(int(pixel_max))
    if block > 1 and block * block == pixel_max:
        # optdigits: a (4*8)x(4*8) bitmap, ink pixels counted in 4x4 blocks into 0..16.
        bitmap = _fit(crop, (height * block, width * block)) >= 0.5
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
    from PIL import Image

    height, width = size
    scale = min(height / crop.shape[0], width / crop.shape[1])
    new_height = max(1, min(height, round(crop.shape[0] * scale)))
    new_width = max(1, min(width, round(crop.shape[1] * scale)))
    picture = Image.fromarray(np.round(crop * 255).astype("uint8"), mode="L")
    scaled = (
        np.asarray(
            picture.resize((new_width, new_height), Image.Resampling.LANCZOS), dtype="float64"
        )
        / 255.0
    )
    if not centred:
        return scaled
    canvas = np.zeros(size)
    top, left = (height - new_height) // 2, (width - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = scaled
    return canvas
