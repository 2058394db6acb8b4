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


class MethodNotAllowed(RequestError):
    """A route called with a method it does not take (``GET`` on ``:predict``)."""

    status = 405

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.headers = {"Allow": allow}


class RequestTimeout(RequestError):
    """A request body that did not arrive in time; the connection is closed after the answer."""

    status = 408
    headers = {"Connection": "close"}


class ClientGone(RequestError):
    """A client that hung up before sending its whole body: logged in one line, answered to no one."""

    status = 400


class CollectUnavailable(RequestError):
    """The collect file cannot take a row now (removed, replaced, changed by something else)."""

    status = 503


class CollectFull(RequestError):
    """The collect file has reached its size cap."""

    status = 507


class Conflict(RequestError):
    """A request that conflicts with work under way (an adaptation already running)."""

    status = 409
