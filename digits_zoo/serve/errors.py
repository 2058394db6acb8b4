"""The errors a request can get: each a :class:`~zoo.errors.ZooError` with its HTTP status."""

from __future__ import annotations

from zoo.errors import ZooError


class RequestError(ZooError):
    """A request the server refuses; the client gets ``status`` and ``{"error": message}``.

    Any other :class:`~zoo.errors.ZooError` raised while handling a request (a
    wrong-shaped array, a picture with no digit) is a bad request too (400).
    """

    status = 400


class NotFound(RequestError):
    """An unknown model, version or route."""

    status = 404


class BodyTooLarge(RequestError):
    """A request body over the server's limit."""

    status = 413


class UnsupportedMediaType(RequestError):
    """An upload that does not say it is a picture."""

    status = 415
