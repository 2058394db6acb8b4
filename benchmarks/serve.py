"""Serving speed: ``digits-zoo serve`` on loopback against the in-process call of the same export.

Measures, on the bundled digits' raw pixels (1,797 rows, 0..16), with one export:

* the floor: ``LoadedExport.predict_proba`` in this process, one image per call
  and 64 per call, as ``digits-zoo predict`` calls it;
* the server: ``digits-zoo serve`` in its own process (one uvicorn worker),
  called with TensorFlow Serving's JSON (``{"instances": [...]}``) over
  keep-alive HTTP/1.1 connections on 127.0.0.1:

  - one client, one request at a time: the latency a caller sees, and the
    overhead (server p50 minus the floor's p50);
  - 32 concurrent clients sending N single-image requests between them:
    requests per second, and p50/p99 latency under that load;
  - the same with batches of 64 images per request;
  - memory: the server process's peak resident memory (psutil, sampled every
    10 ms) while 40 clients upload a 4096 x 4096 RGBA PNG each at once to the
    drawing page's ``/api/models/NAME/draw``, against its resident memory
    before.

Every answer is checked: status 200 and, for every image, the class the
in-process call gives. An error, a wrong class or a request left unanswered
counts against the target: overhead at p50 at most 1 ms, at least 1,000
single-image requests per second, no error, no lost request. The load is
bounded (a fixed number of requests, 60 s at most per phase) and goes to
127.0.0.1 only. Client and server share the machine's cores.

Usage::

    python benchmarks/serve.py [--quick] [--json] [--export EXPORT_DIR] [--clients N]
        [--uploads N]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# Runs from a checkout without installing: the repository root holds zoo/ and search/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.environment import set_process_defaults  # noqa: E402

set_process_defaults()

NETWORK = "dense_2x256"
BATCH = 64
FULL = {"floor": 3000, "sequential": 2000, "singles": 20000, "batches": 2000}
QUICK = {"floor": 500, "sequential": 300, "singles": 2000, "batches": 200}
PHASE_LIMIT_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument(
        "--export",
        default=None,
        help="an export of a bundled-digits model (default: train and export "
        f"{NETWORK} into a temporary folder)",
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument(
        "--uploads",
        type=int,
        default=40,
        help="concurrent 4096x4096 picture uploads in the memory phase (default 40)",
    )
    return parser.parse_args(argv)


def make_export(folder: Path, epochs: int) -> Path:
    """Trains the zoo's ``dense_2x256`` on the bundled digits' training part and exports it."""
    from digits_zoo.ship.export import export_estimator
    from zoo import create_model, load_dataset

    dataset = load_dataset()
    network = create_model(NETWORK, epochs=epochs)
    network.fit(dataset.scale(dataset.x_train), dataset.y_train)
    return export_estimator(network, dataset, folder, name=NETWORK).path.parent


# The server ----------------------------------------------------------------------------------


def start_server(export: Path) -> tuple[subprocess.Popen, str, int]:
    """Starts ``digits-zoo serve EXPORT --port 0``; returns the process, host and port."""
    command = [sys.executable, "-m", "digits_zoo.cli", "serve", str(export), "--port", "0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    for line in process.stdout:
        if line.startswith("serving "):
            url = line.split(" at ", 1)[1].strip()
            host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
            return process, host, int(port)
    process.wait(timeout=30)
    raise RuntimeError(f"digits-zoo serve did not start (exit status {process.returncode})")


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    """One HTTP/1.1 POST of a JSON body on a keep-alive connection."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def exchange(reader, writer, request: bytes) -> tuple[int, bytes]:
    """Sends one request and reads its whole response: ``(status, body)``."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(
    host: str,
    port: int,
    requests: list[bytes],
    expected: list[list[int]],
    total: int,
    clients: int,
) -> dict:
    """Sends ``total`` requests (cycling through ``requests``) from ``clients`` connections.

    Returns the figures: ``seconds``, ``latencies`` (s), ``ok``, ``errors``, ``wrong``, ``lost``.
    """
    next_index = 0
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0, "wrong": 0}
    deadline = time.perf_counter() + PHASE_LIMIT_S

    async def client() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_index < total and time.perf_counter() < deadline:
                index = next_index
                next_index += 1
                which = index % len(requests)
                started = time.perf_counter()
                try:
                    status, body = await exchange(reader, writer, requests[which])
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    counts["errors"] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    counts["errors"] += 1
                    continue
                classes = [item["class"] for item in json.loads(body)["predictions"]]
                counts["ok" if classes == expected[which] else "wrong"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    answered = counts["ok"] + counts["errors"] + counts["wrong"]
    return {"seconds": seconds, "latencies": latencies, **counts, "lost": total - answered}


def large_drawing(side: int = 4096) -> bytes:
    """A PNG of a digit-like stroke, ``side`` pixels square, RGBA on a transparent sheet."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    points = [(0.35 * side, 0.2 * side), (0.6 * side, 0.25 * side), (0.45 * side, 0.8 * side)]
    ImageDraw.Draw(image).line(points, fill=(0, 0, 0, 255), width=side // 15)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def upload_all(host: str, port: int, path: str, body: bytes, uploads: int) -> list[int]:
    """``uploads`` clients each POST ``body`` as ``image/png`` at once; returns their statuses."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")

    async def one() -> int:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            status, _ = await exchange(reader, writer, head + body)
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return 0
        finally:
            writer.close()

    return list(await asyncio.gather(*(one() for _ in range(uploads))))


def memory_phase(pid: int, host: str, port: int, path: str, uploads: int) -> dict:
    """Peak resident memory of the server while ``uploads`` large pictures arrive at once."""
    import psutil

    server = psutil.Process(pid)
    body = large_drawing()
    idle = server.memory_info().rss
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        statuses = asyncio.run(upload_all(host, port, path, body, uploads))
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    return {
        "uploads": uploads,
        "png_bytes": len(body),
        "seconds": seconds,
        "ok": sum(status == 200 for status in statuses),
        "idle_mib": idle / 2**20,
        "peak_mib": peak / 2**20,
        "after_mib": server.memory_info().rss / 2**20,
    }


def run_load(*args) -> dict:
    """:func:`load` on uvloop where it is installed (as uvicorn runs), else asyncio's loop."""
    try:
        import uvloop

        return uvloop.run(load(*args))
    except ImportError:
        return asyncio.run(load(*args))


# The figures ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from ``/proc`` (0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields 14 and 15 of stat(5), counted after the command's closing parenthesis.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def floor(export, rows: list[np.ndarray], calls: int) -> dict:
    """The in-process call: ``calls`` calls of ``predict_proba`` cycling through ``rows``."""
    export.predict_proba(rows[0])
    latencies = np.empty(calls)
    cpu = time.process_time()
    for index in range(calls):
        started = time.perf_counter()
        export.predict_proba(rows[index % len(rows)])
        latencies[index] = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return summary(latencies, float(latencies.sum()), calls, 0, 0, 0, len(rows[0]), cpu)


def summary(latencies, seconds, requests, errors, wrong, lost, images, cpu) -> dict:
    """Requests per second, images per second, latency percentiles and CPU of one phase."""
    latencies = np.asarray(latencies)
    return {
        "requests": int(requests),
        "requests_per_s": requests / seconds,
        "images_per_s": requests * images / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "cpu_ms_per_request": cpu / requests * 1e3,
        "errors": int(errors),
        "wrong": int(wrong),
        "lost": int(lost),
    }


def server_phase(pid, host, port, requests, expected, total, clients, images) -> dict:
    """One phase of load on the server, summarised; CPU is the server process's."""
    cpu = cpu_seconds(pid)
    result = run_load(host, port, requests, expected, total, clients)
    cpu = cpu_seconds(pid) - cpu
    return summary(
        result["latencies"],
        result["seconds"],
        total,
        result["errors"],
        result["wrong"],
        result["lost"],
        images,
        cpu,
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its table (and a JSON line with ``--json``)."""
    args = parse_args(argv)
    from sklearn.datasets import load_digits

    from digits_zoo.runs import library_versions
    from digits_zoo.ship.load import load_export
    from zoo.errors import ZooError

    counts = QUICK if args.quick else FULL
    scratch = tempfile.TemporaryDirectory(prefix="serve-bench-")
    try:
        if args.export is None:
            print(f"training and exporting {NETWORK} (a few seconds)...", file=sys.stderr)
            export_dir = make_export(Path(scratch.name) / NETWORK, epochs=3 if args.quick else 20)
        else:
            export_dir = Path(args.export)
        export = load_export(export_dir)
    except ZooError as error:
        print(f"serve.py: error: {error}", file=sys.stderr)
        return 2
    if export.n_features != 64 or export.pixel_max != 16:
        print(
            f"serve.py: error: the export is not a bundled-digits model (got {export.n_features} "
            f"pixels of 0..{export.pixel_max:g}); pass one made on the bundled digits",
            file=sys.stderr,
        )
        return 2

    x_all = load_digits().data.astype("float32")
    singles = [x_all[i : i + 1] for i in range(len(x_all))]
    batches = [x_all[i : i + BATCH] for i in range(0, len(x_all) - BATCH + 1, BATCH)]
    figures = {
        "floor_single": floor(export, singles, counts["floor"]),
        "floor_batch": floor(export, batches, max(1, counts["floor"] // 10)),
    }
    _, single_classes = export.predict_proba(x_all)
    expected_singles = [[int(label)] for label in single_classes]
    expected_batches = [[int(c) for c in export.predict_proba(batch)[1]] for batch in batches]

    print("starting digits-zoo serve...", file=sys.stderr)
    process, host, port = start_server(export_dir)
    try:
        path = f"/v1/models/{export_dir.resolve().name}:predict"
        single_requests = [
            request_bytes(host, path, json.dumps({"instances": row.tolist()}).encode())
            for row in singles
        ]
        batch_requests = [
            request_bytes(host, path, json.dumps({"instances": batch.tolist()}).encode())
            for batch in batches
        ]
        # Warm-up: connections, the first calls of the signature.
        run_load(host, port, single_requests, expected_singles, 200, 4)
        figures["server_single_1"] = server_phase(
            process.pid, host, port, single_requests, expected_singles, counts["sequential"], 1, 1
        )
        figures["server_single_n"] = server_phase(
            process.pid,
            host,
            port,
            single_requests,
            expected_singles,
            counts["singles"],
            args.clients,
            1,
        )
        figures["server_batch_n"] = server_phase(
            process.pid,
            host,
            port,
            batch_requests,
            expected_batches,
            counts["batches"],
            args.clients,
            BATCH,
        )
        print(f"uploading {args.uploads} pictures of 4096x4096 at once...", file=sys.stderr)
        figures["memory"] = memory_phase(
            process.pid, host, port, f"/api/models/{export_dir.resolve().name}/draw", args.uploads
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        scratch.cleanup()

    overhead = figures["server_single_1"]["p50_ms"] - figures["floor_single"]["p50_ms"]
    throughput = figures["server_single_n"]["requests_per_s"]
    failures = sum(
        figures[key][kind]
        for key in ("server_single_1", "server_single_n", "server_batch_n")
        for kind in ("errors", "wrong", "lost")
    )
    memory = figures["memory"]
    failures += memory["uploads"] - memory["ok"]
    met = overhead <= 1.0 and throughput >= 1000 and failures == 0

    versions = library_versions()
    print(
        f"Serving {export.name} ({export.format}) on 127.0.0.1, {os.cpu_count()} CPU cores shared "
        f"by client and server; python {sys.version.split()[0]}, "
        f"tensorflow {versions.get('tensorflow-cpu', versions.get('tensorflow', '?'))}; "
        f"{args.clients} concurrent clients"
    )
    labels = {
        "floor_single": "in-process call, 1 image (the floor)",
        "server_single_1": "server, 1 client, 1 image per request",
        "server_single_n": f"server, {args.clients} clients, 1 image per request",
        "floor_batch": f"in-process call, {BATCH} images (the floor)",
        "server_batch_n": f"server, {args.clients} clients, {BATCH} images per request",
    }
    header = (
        "method",
        "requests",
        "requests/s",
        "images/s",
        "p50 (ms)",
        "p99 (ms)",
        "CPU/request (ms)",
        "errors",
    )
    lines = [header] + [
        (
            labels[key],
            f"{figures[key]['requests']:,}",
            f"{figures[key]['requests_per_s']:,.0f}",
            f"{figures[key]['images_per_s']:,.0f}",
            f"{figures[key]['p50_ms']:.3f}",
            f"{figures[key]['p99_ms']:.3f}",
            f"{figures[key]['cpu_ms_per_request']:.3f}",
            str(figures[key]["errors"] + figures[key]["wrong"] + figures[key]["lost"]),
        )
        for key in labels
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells))
        if number == 0:
            print("  ".join("-" * width for width in widths))
    print(
        "CPU/request: the server process's CPU time per request (the floor's: this process's "
        "per call), which the machine's other load changes less than wall time"
    )
    print(
        f"memory: {memory['uploads']} concurrent uploads of a 4096x4096 RGBA PNG "
        f"({memory['png_bytes']:,} bytes) to /api/models/NAME/draw: {memory['ok']} answered "
        f"200 in {memory['seconds']:.1f} s; server resident memory {memory['idle_mib']:,.0f} MiB "
        f"before, peak {memory['peak_mib']:,.0f} MiB (+{memory['peak_mib'] - memory['idle_mib']:,.0f}"
        f"), {memory['after_mib']:,.0f} MiB after"
    )
    print(
        f"target (p50 overhead <= 1 ms, >= 1,000 single-image requests/s, no error or lost "
        f"request): {'met' if met else 'NOT met'} (overhead {overhead:.3f} ms, "
        f"{throughput:,.0f} requests/s, {failures} failed)"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "serve": {
                        "overhead_p50_ms": overhead,
                        "single_requests_per_s": throughput,
                        "failures": failures,
                        "target_met": met,
                        "peak_memory_mib": memory["peak_mib"],
                        "figures": figures,
                    }
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
