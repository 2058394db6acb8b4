"""Subcommand ``serve``: exports over TensorFlow Serving's REST API, and a page to draw on."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from digits_zoo.serve.adapting import Adaptations
from digits_zoo.serve.app import (
    BODY_TIMEOUT_S,
    DEFAULT_MIN_CONFIDENCE,
    MAX_BODY_BYTES,
    MAX_CONVERSIONS,
    create_app,
)
from digits_zoo.serve.batching import warm_up
from digits_zoo.serve.collect import MAX_COLLECT_BYTES
from digits_zoo.serve.models import load_models
from digits_zoo.serve.reload import DEFAULT_POLL_SECONDS, VersionPoller
from digits_zoo.ship.inputs import check_min_confidence
from search.distributed import thread_environment
from zoo.errors import ZooError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def register(subparsers) -> None:
    """Adds the ``serve`` subcommand."""
    serve = subparsers.add_parser(
        "serve",
        help="serve exports over TensorFlow Serving's REST API, with a page to draw digits on",
        description="Serves exports over TensorFlow Serving's REST API "
        "(/v1/models/NAME:predict, newest version by default) and, at /, a page where you "
        "draw a digit and see what the model reads; the digits you mark right or wrong are "
        "appended to a CSV that 'evaluate --data' and 'search --data' read. No authentication: "
        "it listens on this machine only unless --host says otherwise.",
    )
    serve.add_argument(
        "exports",
        metavar="EXPORT_DIR",
        nargs="+",
        help="an export's base folder (each model is named by it), one version folder, a "
        "run's export/ folder or the run directory",
    )
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"the address to listen on (default {DEFAULT_HOST}, this machine only, IPv4; ::1 "
        "for this machine over IPv6; 0.0.0.0 lets any machine that reaches this one use the "
        "server)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the port (default {DEFAULT_PORT}, TensorFlow Serving's REST port; 0 picks a "
        "free one)",
    )
    serve.add_argument(
        "--collect",
        metavar="FILE",
        default=None,
        help="the CSV that digits marked on the page are appended to (default: collected.csv "
        "in the export's base folder, or in the run directory)",
    )
    serve.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        metavar="P",
        help="the page says it is unsure of a drawing whose calibrated probability is below P "
        f"(0..1; default {DEFAULT_MIN_CONFIDENCE:g}), showing its best guess small, as predict "
        "--min-confidence answers 'unsure'",
    )
    serve.add_argument(
        "--poll-seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        metavar="S",
        help="look for a newer version in each export's base folder every S seconds and serve "
        "it once it has loaded, as TensorFlow Serving's --file_system_poll_wait_seconds does "
        f"(default {DEFAULT_POLL_SECONDS:g}; 0: never)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from digits_zoo.serve.server import HEADER_TIMEOUT_S, KEEP_ALIVE_S, make_server

    if not 0 <= args.port <= 65535:
        raise ZooError(f"--port must be between 0 and 65535 (got {args.port})")
    check_min_confidence(args.min_confidence)
    if not 0 <= args.poll_seconds <= 86400:
        raise ZooError(
            f"--poll-seconds must be from 0 (never) to 86400 (got {args.poll_seconds:g}); "
            f"pass, for example, {DEFAULT_POLL_SECONDS:g}"
        )
    # 'digits-zoo adapt', started from the page, trains with the thread pools the user had.
    adaptations = Adaptations(dict(os.environ))
    # Requests are predicted one call at a time on the event loop: TensorFlow's thread pools
    # only add hand-offs for models this small (measured: half the CPU time per call). Set
    # before TensorFlow is first imported, which reads them; a value set by the user stays.
    for name, value in thread_environment(1).items():
        os.environ.setdefault(name, value)
    # The port first: a taken one is told at once, not after the models have loaded.
    listener = bind(args.host, args.port)
    try:
        models = load_models(args.exports, collect=args.collect)
        for model in models.values():
            for export in model.versions.values():
                warm_up(export)
    except BaseException:
        listener.close()
        raise
    loopback = _is_loopback(args.host)
    address, port = listener.getsockname()[:2]
    reloading = args.poll_seconds > 0
    app = create_app(
        models,
        allowed_hosts=allowed_hosts(args.host, address) if loopback else None,
        min_confidence=args.min_confidence,
        adaptations=adaptations,
        reloading=reloading,
    )
    url = _url(args.host, port)
    collect_files = sorted({str(model.collect.path) for model in models.values()})
    print(f"serving {len(models)} model{'s' if len(models) > 1 else ''} at {url}")
    print(f"  draw a digit:    {url}")
    for name in models:
        print(f"  predict:         POST {url}v1/models/{name}:predict")
    print(f"  digits marked:   appended to {', '.join(collect_files)}")
    print(f"  unsure:          below {args.min_confidence:.0%} calibrated probability")
    watched = [str(model.base) for model in models.values() if model.base is not None]
    if reloading and watched:
        print(
            f"  new versions:    served as they appear (looked for every {args.poll_seconds:g} s)"
        )
    print(
        f"  limits:          request bodies at most {MAX_BODY_BYTES // 2**20} MiB, within "
        f"{BODY_TIMEOUT_S:g} s; heads within {HEADER_TIMEOUT_S:g} s; idle {KEEP_ALIVE_S:g} s"
    )
    print(
        f"                   {MAX_CONVERSIONS} pictures converted at once; collect file at most "
        f"{MAX_COLLECT_BYTES // 2**20} MiB"
    )
    print("  Ctrl-C stops")
    if not loopback:
        print(
            f"  warning: listening on {args.host}: anyone who can reach this machine can use the "
            "server and append to the collect file; there is no authentication"
        )
    print(flush=True)
    poller = VersionPoller(
        models,
        progress=lambda line: print(line, flush=True),
        warn=lambda line: print(f"digits-zoo serve: {line}", file=sys.stderr, flush=True),
    )
    poller.start(args.poll_seconds)
    try:
        make_server(app).run(sockets=[listener])
    except KeyboardInterrupt:
        # uvicorn stops serving on Ctrl-C, then hands the signal back.
        pass
    finally:
        listener.close()
        poller.stop()
        adaptations.stop()
    print("digits-zoo serve: stopped", flush=True)
    return 0


def bind(host: str, port: int) -> socket.socket:
    """Opens the listening socket, so that a taken port is a one-line error before serving.

    Raises:
        ZooError: the host is unknown or the port is taken or not allowed.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server(address, family=family, backlog=2048)
    except OSError as error:
        raise ZooError(
            f"cannot listen on {host} port {port} ({error.strerror or error}); pass another "
            "--port (0 picks a free one) or --host"
        ) from None


def allowed_hosts(host: str, address: str) -> list[str]:
    """The host names a loopback server answers to: ``localhost`` and the address it listens on.

    A server on 127.0.0.1 cannot be reached at ``[::1]`` (nor one on ::1 at
    127.0.0.1), so each answers to its own address and to ``localhost``, which
    a browser tries on both.

    Args:
        host: ``--host`` as given.
        address: the address the listening socket is bound to.
    """
    return sorted({"localhost", host, address})


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
