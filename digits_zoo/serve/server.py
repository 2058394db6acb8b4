"""The HTTP server around the application: uvicorn, with every connection on a clock.

Three limits keep a slow or silent client from holding a connection for good:

* ``HEADER_TIMEOUT_S``: a connection that completes no request head (request
  line and headers) in a span of this many seconds while no request of it is
  being answered is closed: a head that never ends is cut off after 10 to 20 s.
  uvicorn alone waits for ever on it.
* ``KEEP_ALIVE_S``: an idle keep-alive connection is closed after this many
  seconds (uvicorn's ``timeout_keep_alive``).
* the body: :data:`digits_zoo.serve.app.BODY_TIMEOUT_S`, in the application,
  which answers 408 and closes the connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5.0


def protocol_with_header_timeout(seconds: float, base: type = AutoHTTPProtocol) -> type:
    """uvicorn's HTTP protocol (httptools, or h11), closing a connection that sends no request.

    Both protocols keep the request being answered in ``self.cycle``. Every
    ``seconds`` a connection's clock looks: if no new request head has
    completed since its last look and no request is being answered, the
    connection is closed. A head that never ends, or nothing at all, is cut off
    after ``seconds`` to twice that; one timer a connection, not one a request.
    """

    class HeaderTimeoutProtocol(base):
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm_head_clock()

        def _arm_head_clock(self) -> None:
            self.loop.call_later(seconds, self._look, self.cycle)

        def _look(self, cycle: Any) -> None:
            if self.transport.is_closing():
                return
            idle = self.cycle is cycle and (cycle is None or cycle.response_complete)
            if idle:
                self.transport.close()
            else:
                self._arm_head_clock()

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{base.__name__}"
    return HeaderTimeoutProtocol


def make_server(
    app: Any,
    *,
    header_timeout: float = HEADER_TIMEOUT_S,
    keep_alive: float = KEEP_ALIVE_S,
    **options: Any,
) -> uvicorn.Server:
    """The uvicorn server ``digits-zoo serve`` runs the application in.

    Args:
        app: the ASGI application (:func:`digits_zoo.serve.app.create_app`).
        header_timeout: seconds a connection has to send a request's head.
        keep_alive: seconds an idle keep-alive connection is kept.
        **options: more ``uvicorn.Config`` options (``log_config=None`` in tests).

    Returns:
        The server; ``server.run(sockets=[listener])`` serves until stopped.
    """
    settings = {
        "log_level": "warning",
        "access_log": False,
        "lifespan": "off",
        "server_header": False,
        "timeout_graceful_shutdown": 5,
        **options,
    }
    config = uvicorn.Config(
        app,
        http=protocol_with_header_timeout(header_timeout),
        timeout_keep_alive=keep_alive,
        **settings,
    )
    return uvicorn.Server(config)
