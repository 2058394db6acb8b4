"""Checks of user-given settings shared by every layer, with the house's one-line errors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zoo.errors import ZooError

# Larger seeds overflow numpy's and keras-tuner's seed arithmetic.
MAX_SEED = 2**31 - 2


def check_integer(
    flag: str, value: Any, low: int, high: int | None = None, limit_reason: str = ""
) -> int:
    """Checks that ``value`` is an integer (not a bool) in ``[low, high]``; returns it as ``int``.

    Args:
        flag: the setting's name as the user typed it (``--workers``).
        value: what was given.
        low: the smallest valid value.
        high: the largest valid value, if any.
        limit_reason: why ``high`` is the limit, appended to the message.

    Raises:
        ZooError: naming ``flag``, what was expected and what was given.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ZooError(f"{flag} must be an integer of at least {low} (got {value!r})")
    if high is not None and value > high:
        raise ZooError(f"{flag} must be at most {high}{limit_reason} (got {value!r})")
    return int(value)


def check_seed(seed: Any) -> int:
    """Checks a ``--seed``: a non-negative integer small enough for every library's seeding."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ZooError(f"--seed must be a non-negative integer (got {seed!r})")
    if seed > MAX_SEED:
        raise ZooError(f"--seed must be at most {MAX_SEED} (got {seed!r})")
    return int(seed)


def square_side(n: Any, minimum: int = 1) -> int | None:
    """The whole side whose square ``n`` is, such as the side of the square image a flat row
    of ``n`` pixels is, or of the square blocks a count range ``n`` counts (16: 4x4).

    Returns:
        The side, or ``None`` when ``n`` is not the square of a whole side of at least
        ``minimum`` (16.5 is not).
    """
    side = math.isqrt(int(n))
    return side if side * side == n and side >= minimum else None
