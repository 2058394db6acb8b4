"""Uploaded pictures, converted in bounded memory.

``digits-zoo predict``'s recipe (:func:`digits_zoo.ship.inputs.image_to_pixels`)
works on the whole picture in float64: a 4096 x 4096 picture costs about 740 MB
while it is converted. A digit needs 8x8 to 28x28 pixels, and the recipe's first
step after finding the digit is to shrink it to 32x32 (or 20x20), so the server
first shrinks a large picture to at most ``MAX_SIDE`` pixels a side, by whole
factors (Pillow's ``reduce``: the mean of each ``f x f`` block; JPEGs are
decoded at the reduced scale directly), in bands of rows, and hands the recipe
that. A picture drawn on the page (under 1024 pixels a side) reaches the recipe
untouched; a larger one gives the same pixels to within the rounding of the
mean (tested on 4096 x 4096 drawings).

Memory per conversion, for the largest picture accepted (4096 x 4096 RGBA):
the decoded picture (64 MiB), one band (4 MiB) and the recipe on 1024 x 1024
(about 60 MiB): under 150 MiB. The server runs at most ``MAX_CONVERSIONS`` at
once (:mod:`digits_zoo.serve.app`).
"""

from __future__ import annotations

import io
import math

import numpy as np

from digits_zoo.ship.inputs import checked_picture, picture_rows
from digits_zoo.ship.load import LoadedExport

# The longest side handed to the recipe; a larger picture is shrunk by a whole factor first.
MAX_SIDE = 1024

# Modes whose pixels Pillow's reduce averages as colours (not palette indices or bits).
_AVERAGED = {"L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr"}

# Rows of the reduced picture made from one band of the decoded one.
_BAND_ROWS = 64

UPLOAD = "the uploaded picture"


def read_upload(body: bytes, export: LoadedExport) -> np.ndarray:
    """Converts an uploaded picture to the rows the export reads it by, in bounded memory.

    The same checks and messages as ``digits-zoo predict``'s pictures
    (:func:`digits_zoo.ship.inputs.checked_picture`): only ``IMAGE_FORMATS`` are
    decoded, and a picture over ``MAX_IMAGE_PIXELS`` is refused from its header,
    before it is decoded.

    Returns:
        float32 ``[n_rows, n_features]`` (:func:`zoo.pictures.picture_rows`): row 0
        is the picture as stored (``digits-zoo predict``'s row), then, when the
        export's recipe records each class's slant, one row per class.

    Raises:
        ZooError: unreadable, corrupt, blank or too large pictures.
    """
    from PIL import ImageOps

    with checked_picture(io.BytesIO(body), UPLOAD) as image:
        width, height = image.size
        factor = _factor(image.size)
        if factor > 1:
            # JPEG decodes at 1/2, 1/4 or 1/8 scale when asked; other formats ignore it.
            image.draft(None, (math.ceil(width / factor), math.ceil(height / factor)))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return picture_rows(
            shrink(image), export.image_shape, export.pixel_max, export.picture_recipe
        )


def shrink(image):
    """The picture shrunk by a whole factor to at most ``MAX_SIDE`` a side (itself if it fits).

    Works a band of rows at a time, so that no full-size copy is made; a
    palette, 1-bit or 16-bit picture is converted (band by band) as the recipe
    converts it, to ``RGBA`` when it has transparency and to ``L`` otherwise,
    before its pixels are averaged.
    """
    from PIL import Image

    factor = _factor(image.size)
    if factor == 1:
        return image
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mode = image.mode if image.mode in _AVERAGED and "transparency" not in image.info else None
    mode = mode or ("RGBA" if transparent else "L")
    width, height = image.size
    reduced = Image.new(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    band = factor * _BAND_ROWS
    for top in range(0, height, band):
        part = image.crop((0, top, width, min(height, top + band)))
        if part.mode != mode:
            part = part.convert(mode)
        reduced.paste(part.reduce(factor), (0, top // factor))
    return reduced


def _factor(size: tuple[int, int]) -> int:
    return max(1, math.ceil(max(size) / MAX_SIDE))
