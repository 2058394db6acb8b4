"""The ASGI application: TensorFlow Serving's REST API, the drawing page and its endpoints.

Routes:

* ``GET /v1/models/NAME[/versions/N]``: the model's version status (a version
  that failed to load while serving is reported ``END``, with its error);
* ``GET /v1/models/NAME[/versions/N]/metadata``: its ``serving_default`` signature;
* ``POST /v1/models/NAME[/versions/N]:predict``: TensorFlow Serving's predict
  (see :mod:`digits_zoo.serve.tfserving`); without a version, the newest; another
  method gets 405;
* ``GET /``: the drawing page (``static/``, nothing fetched from elsewhere);
* ``GET /api/models``: the served models, for the page: each one's newest
  version, its collect file and the digits in it, and the command that adapts
  the model to them;
* ``POST /api/models/NAME/draw``: a picture (``image/*`` body) converted as
  ``digits-zoo predict`` converts and reads it, and the prediction: the
  picture's pixels as stored (the row collect appends), the class, the ten
  probabilities, and ``unsure`` when the class's
  calibrated probability is below the server's ``min_confidence``;
* ``POST /api/models/NAME/collect?label=L``: the same picture appended, with
  its true label, to the model's collect file (:mod:`digits_zoo.serve.collect`);
* ``POST /api/models/NAME/adapt``: starts ``digits-zoo adapt`` on the collect
  file in the background (409 while one runs); ``GET`` the same address for
  its state (:mod:`digits_zoo.serve.adapting`).

Predict requests that arrive together share one model call
(:mod:`digits_zoo.serve.batching`). Every refusal is a 4xx with
``{"error": "<what>"}``, as TensorFlow Serving answers (a collect file that
cannot take a row now: 503, or 507 when full); a request body may hold at most
``MAX_BODY_BYTES`` and must arrive within ``BODY_TIMEOUT_S`` (else 408, and the
connection is closed). A client that hangs up before its whole body has arrived
is logged in one line. A bug inside the server gets a 500 with the same shape of
body and no traceback (the traceback goes to the server's log).

Memory: an uploaded picture is converted in at most about 150 MiB
(:mod:`digits_zoo.serve.uploads`), and at most ``MAX_CONVERSIONS`` are converted
at once, so conversions hold at most ``MAX_CONVERSIONS x 150 MiB`` beside the
bodies being received (each at most ``MAX_BODY_BYTES``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from digits_zoo.serve.adapting import Adaptations, shown_command
from digits_zoo.serve.batching import predict_padded
from digits_zoo.serve.errors import (
    BodyTooLarge,
    ClientGone,
    MethodNotAllowed,
    NotFound,
    RequestError,
    RequestTimeout,
    UnsupportedMediaType,
)
from digits_zoo.serve.models import ServedModel, lookup
from digits_zoo.serve.tfserving import (
    metadata_response,
    parse_predict,
    predict_response,
    refuse_booleans,
    version_status,
)
from digits_zoo.serve.uploads import read_upload
from digits_zoo.ship.inputs import check_min_confidence
from digits_zoo.ship.load import LoadedExport
from zoo.errors import ZooError

# The largest request body read: 4 MiB holds about 16,000 bundled-digit images in JSON
# (or 1,000 of MNIST's), and a drawn digit's PNG is a few KiB.
MAX_BODY_BYTES = 4 * 2**20

# The longest a request body may take to arrive once its headers have (4 MiB at 1 Mbit/s).
BODY_TIMEOUT_S = 40.0

# Pictures converted at once; others wait their turn holding only their body.
MAX_CONVERSIONS = 2

# Below this calibrated probability the page says it is unsure (as predict --min-confidence
# does): the top class is then less likely than all the others together.
DEFAULT_MIN_CONFIDENCE = 0.5

STATIC = Path(__file__).resolve().parent / "static"

# The page loads nothing from elsewhere, runs no inline script and may not be framed.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_log = logging.getLogger("digits_zoo.serve")

# Starlette's routes take GET only unless told.
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(
    models: dict[str, ServedModel],
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts: list[str] | None = None,
    body_timeout: float = BODY_TIMEOUT_S,
    max_conversions: int = MAX_CONVERSIONS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    adaptations: Adaptations | None = None,
    reloading: bool = False,
) -> ASGIApp:
    """Builds the server's ASGI application.

    Args:
        models: the served models, by name (see :func:`digits_zoo.serve.models.load_models`).
        max_body_bytes: the largest request body accepted.
        allowed_hosts: the host names requests may be addressed to (their
            ``Host`` header); ``None`` accepts any. A server on loopback passes
            its loopback names, so that a web page elsewhere cannot reach it
            through a DNS name it controls (DNS rebinding).
        body_timeout: seconds a request body may take to arrive.
        max_conversions: pictures converted at once.
        min_confidence: the calibrated probability below which a drawing's
            reading is ``unsure``.
        adaptations: where the page's adaptations run (default: a new one,
            whose children inherit this process's environment).
        reloading: whether new versions in the base folders are served while
            running (:mod:`digits_zoo.serve.reload`), for the page to say so.

    Returns:
        The application, for uvicorn or Starlette's ``TestClient``.
    """
    if not models:
        raise ZooError("no model to serve; pass at least one export folder")
    check_min_confidence(min_confidence)
    handlers = _Handlers(
        models,
        max_body_bytes,
        body_timeout,
        max_conversions,
        float(min_confidence),
        adaptations if adaptations is not None else Adaptations(),
        reloading,
    )
    # The predict routes first: they are the ones a client calls thousands of times.
    routes = [
        Route("/v1/models/{name}:predict", handlers.predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version}:predict", handlers.predict, methods=["POST"]),
        # Any method: a GET on :predict is told 405, not taken for a model named "NAME:predict".
        Route("/v1/models/{name}:{verb}", handlers.other_verb, methods=_ANY_METHOD),
        Route(
            "/v1/models/{name}/versions/{version}:{verb}",
            handlers.other_verb,
            methods=_ANY_METHOD,
        ),
        Route("/v1/models/{name}/metadata", handlers.metadata, methods=["GET"]),
        Route("/v1/models/{name}/versions/{version}/metadata", handlers.metadata, methods=["GET"]),
        Route("/v1/models/{name}", handlers.status, methods=["GET"]),
        Route("/v1/models/{name}/versions/{version}", handlers.status, methods=["GET"]),
        Route("/", handlers.page, methods=["GET"]),
        Route("/api/models", handlers.list_models, methods=["GET"]),
        Route("/api/models/{name}/draw", handlers.draw, methods=["POST"]),
        Route("/api/models/{name}/collect", handlers.collect, methods=["POST"]),
        Route("/api/models/{name}/adapt", handlers.adapt_status, methods=["GET"]),
        Route("/api/models/{name}/adapt", handlers.adapt, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app: ASGIApp = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_error,
            ZooError: _request_error,
            Exception: _server_error,
        },
    )
    if allowed_hosts is not None:
        app = _HostGuard(app, allowed_hosts)
    return app


class _Handlers:
    """The route handlers, over one set of served models."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        max_body_bytes: int,
        body_timeout: float,
        max_conversions: int,
        min_confidence: float,
        adaptations: Adaptations,
        reloading: bool,
    ) -> None:
        self.models = models
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.conversions = anyio.CapacityLimiter(max_conversions)
        self.min_confidence = min_confidence
        self.adaptations = adaptations
        self.reloading = reloading

    # TensorFlow Serving's REST API.

    async def status(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        version = _version(request)
        if version is None:
            return JSONResponse(version_status(list(model.versions), model.failed))
        if version in model.failed and version not in model.versions:
            return JSONResponse(version_status([], {version: model.failed[version]}))
        return JSONResponse(version_status([model.get(version)[0]]))

    async def metadata(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        number, _ = model.get(_version(request))
        return JSONResponse(metadata_response(model.name, number, model.signature_defs[number]))

    async def predict(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        number, export = model.get(_version(request))
        body = await self._body(request)
        try:
            parsed = json.loads(body)
        except RecursionError:
            raise RequestError(
                "the request body's JSON nests too deeply to hold images (more than 1,000 levels)"
            ) from None
        except ValueError as error:
            # JSONDecodeError, or bytes that are not UTF-8.
            raise RequestError(f"the request body is not valid JSON ({error})") from None
        if b"true" in body or b"false" in body:
            # json.loads reads true as True, which numpy takes for 1 among numbers.
            refuse_booleans(parsed)
        rows, columnar = parse_predict(parsed, export)
        probabilities, classes = await model.batchers[number].predict_proba(rows)
        return JSONResponse(predict_response(probabilities, classes, columnar))

    async def other_verb(self, request: Request) -> Response:
        if request.path_params["verb"] == "predict":
            raise MethodNotAllowed(
                f":predict takes POST (got {request.method}); send the images as JSON in a POST "
                "body, or GET /v1/models/NAME for the model's status",
                allow="POST",
            )
        raise NotFound(
            f"this server answers :predict only (got :{request.path_params['verb']}); "
            "classify and regress need a signature these exports do not have"
        )

    # The drawing page.

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def list_models(self, request: Request) -> Response:
        described = [
            await run_in_threadpool(self._describe, model) for model in self.models.values()
        ]
        return JSONResponse({"models": described})

    async def draw(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        number, export = model.get()
        pixels = await self._picture(request, export)
        probabilities, classes = export.predict_pictures(
            pixels[None], predict=lambda rows: predict_padded(export, rows)
        )
        probability = float(probabilities[0].max())
        return JSONResponse(
            {
                "model": model.name,
                "version": number,
                "class": int(classes[0]),
                "probability": probability,
                "unsure": probability < self.min_confidence,
                "min_confidence": self.min_confidence,
                "classes": [int(label) for label in export.classes],
                "probabilities": probabilities[0].tolist(),
                "pixels": pixels[0].tolist(),
                "image_shape": list(export.image_shape),
                "pixel_max": export.pixel_max,
            }
        )

    async def collect(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        _, export = model.get()
        label = _label(request.query_params.get("label"), export)
        pixels = await self._picture(request, export)
        # An fsync takes milliseconds: off the event loop.
        rows = await run_in_threadpool(model.collect.append, pixels[0], label)
        return JSONResponse({"label": label, "rows": rows, "file": model.collect.path.name})

    async def adapt(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        await run_in_threadpool(model.collect.recount)
        # Starting a process takes a few milliseconds: off the event loop.
        job = await run_in_threadpool(self.adaptations.start, model)
        return JSONResponse(job.describe(model.newest), status_code=202)

    async def adapt_status(self, request: Request) -> Response:
        model = lookup(self.models, request.path_params["name"])
        job = self.adaptations.get(model.name)
        if job is None:
            return JSONResponse({"state": "none", "serving": model.newest})
        return JSONResponse(job.describe(model.newest))

    def _describe(self, model: ServedModel) -> dict[str, Any]:
        export = model.versions[model.newest]
        try:
            rows, collect_error = model.collect.recount(), None
        except ZooError as error:
            rows, collect_error = model.collect.rows, str(error)
        job = self.adaptations.get(model.name)
        return {
            "name": model.name,
            "version": model.newest,
            "versions": sorted(model.versions),
            "format": export.format,
            "image_shape": list(export.image_shape),
            "pixel_max": export.pixel_max,
            "classes": [int(label) for label in export.classes],
            "collect": model.collect.path.name,
            "collect_path": str(model.collect.path),
            "collected": rows,
            "collect_error": collect_error,
            "adapt_command": shown_command(model),
            "adapting": job is not None and job.running,
            "reloads": self.reloading and model.base is not None,
            "min_confidence": self.min_confidence,
        }

    # Reading request bodies.

    async def _body(self, request: Request) -> bytes:
        """The request body, refused as soon as it is known to exceed the limit or to be late.

        Raises:
            BodyTooLarge: over ``max_body_bytes``.
            RequestTimeout: not all there within ``body_timeout`` seconds.
            ClientGone: the client hung up before sending all of it.
        """
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        declared = _whole_number(declared)
        if declared is not None and declared > limit:
            raise BodyTooLarge(_too_large(f"{declared:,} bytes", limit))
        chunks = []
        size = 0
        try:
            # asyncio's own timeout: a fifth of anyio.fail_after's cost on every request.
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise BodyTooLarge(_too_large(f"more than {limit:,} bytes", limit))
                    chunks.append(chunk)
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.body_timeout:g} s (got {size:,} "
                "bytes); send it at once"
            ) from None
        except ClientDisconnect:
            expected = f" of {declared:,}" if declared is not None else ""
            raise ClientGone(
                f"the client hung up after sending {size:,}{expected} bytes of its body"
            ) from None
        return b"".join(chunks)

    async def _picture(self, request: Request, export: LoadedExport) -> np.ndarray:
        """The uploaded picture as the rows the export reads it by (``[n_rows, n_features]``;
        row 0 is the picture as stored, :func:`digits_zoo.serve.uploads.read_upload`)."""
        kind = request.headers.get("content-type", "")
        if not kind.startswith("image/"):
            raise UnsupportedMediaType(
                f"upload a picture with its image type (got Content-Type {kind or 'none'!r}); "
                "send the PNG bytes with Content-Type: image/png"
            )
        body = await self._body(request)
        return await anyio.to_thread.run_sync(read_upload, body, export, limiter=self.conversions)


def _version(request: Request) -> int | None:
    text = request.path_params.get("version")
    if text is None:
        return None
    number = _whole_number(text)
    if number is None:
        raise NotFound(f"a version is a whole number (got {text!r}); see /v1/models/NAME")
    return number


def _label(text: str | None, export: LoadedExport) -> int:
    classes = [int(label) for label in export.classes]
    label = _whole_number(text)
    if label not in classes:
        raise RequestError(
            f"?label= must be one of the model's classes {classes} (got {text!r}): the digit "
            "the picture shows"
        )
    return label


def _whole_number(text: str | None) -> int | None:
    """``text`` as a whole number if it is one written in ASCII digits (at most 18 of them)."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _too_large(got: str, limit: int) -> str:
    return f"request body too large (got {got}; at most {limit:,}); send fewer images per request"


async def _http_error(request: Request, error: Exception) -> Response:
    # Starlette's own refusals: an unknown route (404), a wrong method (405).
    status = getattr(error, "status_code", 400)
    got = f"(got {request.method} {request.url.path})"
    detail = f"no such route {got}" if status == 404 else f"{getattr(error, 'detail', '')} {got}"
    return JSONResponse(
        {"error": detail}, status_code=status, headers=getattr(error, "headers", None)
    )


async def _request_error(request: Request, error: Exception) -> Response:
    if isinstance(error, ClientGone):
        # No one reads the answer; one line in the log instead of two tracebacks.
        _log.warning("%s %s: %s", request.method, request.url.path, error)
    status = getattr(error, "status", 400)
    return JSONResponse(
        {"error": str(error)}, status_code=status, headers=getattr(error, "headers", None)
    )


async def _server_error(request: Request, error: Exception) -> Response:
    _log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse(
        {"error": f"internal error ({error.__class__.__name__}); see the server's log"},
        status_code=500,
    )


class _HostGuard:
    """Refuses requests addressed to a host name the server does not answer to.

    Args:
        app: the application to guard.
        hosts: the host names accepted in the ``Host`` header (without port).
    """

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.hosts = {host.lower().strip("[]") for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = b""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value
                    break
            name = _host_name(host.decode("latin-1"))
            if name not in self.hosts:
                response = JSONResponse(
                    {
                        "error": f"this server does not answer to the host {name!r}; address it "
                        f"as {' or '.join(sorted(self.hosts))}, or start it with --host"
                    },
                    status_code=400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port: ``[::1]:8501`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
