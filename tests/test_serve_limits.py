"""digits-zoo serve left running: bounded memory, a bounded and checked collect file, quiet logs,
slow clients timed out, tampered metadata refused, and TensorFlow Serving's naming."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from digits_zoo.baselines import run_baselines
from digits_zoo.runs import open_run
from digits_zoo.serve.app import MAX_CONVERSIONS, create_app
from digits_zoo.serve.collect import CollectFile
from digits_zoo.serve.commands import allowed_hosts
from digits_zoo.serve.models import load_models
from digits_zoo.serve.server import make_server
from digits_zoo.ship.export import export_run
from digits_zoo.ship.inputs import read_image
from digits_zoo.ship.load import load_export
from zoo import ZooError, load_dataset

KNN = "knn_k1"
DRAW = f"/api/models/{KNN}/draw"
PNG = {"Content-Type": "image/png"}


def quiet(line: str) -> None:
    """Swallows progress lines."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run with a k-NN on its leaderboard and nothing exported in it."""
    run = open_run(tmp_path_factory.mktemp("run"), seed=0, n_folds=2)
    run_baselines(run, [KNN], progress=quiet)
    return run.path


@pytest.fixture(scope="module")
def export(run_dir, tmp_path_factory) -> Path:
    """The k-NN exported outside its run (``export --out``); its base folder."""
    base = tmp_path_factory.mktemp("exports") / KNN
    export_run(run_dir, model=KNN, out=base, progress=quiet)
    return base


@pytest.fixture
def served(export, tmp_path):
    """The k-NN loaded for serving, collecting into ``tmp_path/collect/collected.csv``."""
    folder = tmp_path / "collect"
    folder.mkdir()
    return load_models([export], collect=folder / "collected.csv", progress=quiet)


def drawing(side: int, mode: str = "RGBA", seed: int = 0) -> bytes:
    """A PNG of a hand-drawn-looking stroke, ``side`` pixels square."""
    rng = np.random.default_rng(seed)
    clear = (0, 0, 0, 0) if mode == "RGBA" else "white"
    ink = (0, 0, 0, 255) if mode == "RGBA" else "black"
    image = Image.new(mode, (side, side), clear)
    points = [
        (side * (0.3 + 0.4 * rng.random()), side * (0.2 + 0.6 * rng.random())) for _ in range(5)
    ]
    ImageDraw.Draw(image).line(points, fill=ink, width=max(1, side // 15))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digit_png(pixels: np.ndarray) -> bytes:
    grey = 1.0 - np.asarray(pixels, dtype="float64").reshape(8, 8) / 16.0
    image = Image.fromarray(np.round(grey * 255).astype("uint8"), mode="L")
    buffer = io.BytesIO()
    image.resize((96, 96), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


# Memory per picture upload ------------------------------------------------------------------


def test_concurrent_large_uploads_take_bounded_memory(served):
    """Four 4096x4096 RGBA uploads at once: the server grows by a few hundred MiB, not gigabytes."""
    import httpx2

    body = drawing(4096)
    process = psutil.Process()
    peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    async def upload_all():
        transport = httpx2.ASGITransport(app=create_app(served))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.post(DRAW, content=body, headers=PNG, timeout=120) for _ in range(4))
            )

    before = process.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        answers = asyncio.run(upload_all())
    finally:
        done.set()
        sampler.join()
    assert all(answer.status_code == 200 for answer in answers), answers[0].text
    assert len({answer.json()["class"] for answer in answers}) == 1
    grown = (peak - before) / 2**20
    # At most MAX_CONVERSIONS conversions of about 150 MiB each; one alone took about 740 MiB.
    assert grown < MAX_CONVERSIONS * 150 + 150, f"the server grew by {grown:.0f} MiB"


@pytest.mark.parametrize(
    ("side", "mode", "seed"), [(4096, "RGBA", 0), (2048, "L", 1), (2048, "RGB", 2), (2048, "P", 3)]
)
def test_a_large_upload_reads_as_digits_zoo_predict_reads_it(served, export, side, mode, seed):
    """Shrunk before the recipe, a large drawing gives the same digit to within rounding."""
    body = drawing(side, "RGBA" if mode == "RGBA" else "L", seed)
    if mode != "RGBA" and mode != "L":
        buffer = io.BytesIO()
        Image.open(io.BytesIO(body)).convert(mode).save(buffer, format="PNG")
        body = buffer.getvalue()
    loaded = load_export(export)
    expected = read_image(io.BytesIO(body), loaded)
    with TestClient(create_app(served)) as client:
        answer = client.post(DRAW, content=body, headers=PNG)
    assert answer.status_code == 200, answer.text
    pixels = np.array(answer.json()["pixels"])
    # Counts 0..16 of 4x4 blocks: a block's count moves by a pixel or two at the ink's edge.
    assert np.abs(pixels - expected[0]).max() <= 2
    assert np.abs(pixels - expected[0]).mean() < 0.2
    assert answer.json()["class"] == int(loaded.predict_proba(expected)[1][0])


# The collect file ---------------------------------------------------------------------------


def collect(client, label: int = 3):
    png = digit_png(load_dataset(seed=0).x_test[0])
    return client.post(f"/api/models/{KNN}/collect?label={label}", content=png, headers=PNG)


def test_a_collect_file_that_is_a_link_is_refused_and_never_followed(export, tmp_path, cli_error):
    elsewhere = tmp_path / "elsewhere" / "x.csv"
    elsewhere.parent.mkdir()
    link = export / "collected.csv"
    link.symlink_to(elsewhere)
    try:
        with pytest.raises(ZooError, match="symbolic link"):
            load_models([export], progress=quiet)
        cli_error("serve", export, "--port", "0", match="is a symbolic link")
    finally:
        link.unlink()
    # A link put in place while serving: refused on the append, nothing written through it.
    folder = tmp_path / "collect"
    folder.mkdir()
    models = load_models([export], collect=folder / "c.csv", progress=quiet)
    (folder / "c.csv").symlink_to(elsewhere)
    with TestClient(create_app(models)) as client:
        answer = collect(client)
        assert answer.status_code == 503 and "symbolic link" in answer.json()["error"]
    assert not elsewhere.exists()


def test_environment_errors_are_told_and_the_server_keeps_serving(served, tmp_path):
    model = served[KNN]
    path = model.collect.path
    with TestClient(create_app(served)) as client:
        assert collect(client).json()["rows"] == 1

        # The folder removed while serving.
        shutil.rmtree(path.parent)
        answer = collect(client)
        assert answer.status_code == 503 and "folder is gone" in answer.json()["error"]

        # The file replaced by a folder.
        path.mkdir(parents=True)
        answer = collect(client)
        assert answer.status_code == 503 and "now a folder" in answer.json()["error"]
        path.rmdir()

        # The file overwritten with something else: told, and nothing appended after it.
        assert collect(client).json()["rows"] == 1
        garbage = b"\x89PNG\r\n\x1a\n not rows at all \x00\x01"
        path.write_bytes(garbage)
        answer = collect(client)
        assert answer.status_code == 503, answer.text
        assert "no longer holds rows" in answer.json()["error"]
        assert path.read_bytes() == garbage

        # Rows of another width written in place: refused the same way.
        path.write_text(",".join(["1"] * 10) + "\n")
        answer = collect(client)
        assert answer.status_code == 503 and "10 columns" in answer.json()["error"]

        # Moved aside: a new file is started.
        path.unlink()
        assert collect(client).json()["rows"] == 1
        good = client.post(f"/v1/models/{KNN}:predict", json={"instances": [[0] * 64]})
        assert good.status_code == 200
    assert all("Traceback" not in line for line in path.read_text().splitlines())


def test_a_full_collect_file_is_refused_with_507(served, export, tmp_path):
    model = served[KNN]
    row_bytes = len(",".join(["0"] * 64)) + 3
    model.collect = CollectFile(model.collect.path, 64, 16, max_bytes=3 * row_bytes)
    with TestClient(create_app(served)) as client:
        sizes = []
        for _ in range(4):
            answer = collect(client)
            sizes.append(answer.status_code)
        assert sizes[:2] == [200, 200] and sizes[-1] == 507, sizes
        assert "is full" in answer.json()["error"]
    # Before serving, a file over the cap is refused in one line.
    big = tmp_path / "big.csv"
    big.write_bytes(b"0," * 64 + b"1\n")
    with pytest.raises(ZooError, match="is full"):
        CollectFile(big, 64, 16, max_bytes=10).check()


def test_an_append_reads_nothing_of_the_rows_already_there(tmp_path, monkeypatch):
    path = tmp_path / "collected.csv"
    rows = 20_000
    path.write_bytes((",".join(["16"] * 64) + ",9\n").encode() * rows)
    collect_file = CollectFile(path, 64, 16)
    collect_file.check()
    read = []
    real_pread = os.pread

    def counted(descriptor, size, offset):
        data = real_pread(descriptor, size, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counted)
    for count in range(1, 51):
        assert collect_file.append(np.zeros(64), 1) == rows + count
    # The last byte, to see whether the file ends its line: nothing else.
    assert sum(read) <= 50, sum(read)
    # Another writer's rows are counted from where this server's ended.
    with open(path, "ab") as other:
        other.write(b"0," * 64 + b"2\n")
    read.clear()
    assert collect_file.append(np.zeros(64), 1) == rows + 52
    assert sum(read) < 1000


# Client hang-ups and slow clients, on a real server -----------------------------------------


class RealServer:
    """``make_server`` (what ``digits-zoo serve`` runs) on a loopback port, in a thread."""

    def __init__(self, app, **timeouts) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.server = make_server(app, log_config=None, **timeouts)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.listener]}, daemon=True
        )

    def __enter__(self) -> RealServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.listener.close()

    def connect(self) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return connection


def head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def wait_closed(connection: socket.socket, limit: float) -> tuple[bytes, float]:
    """Reads until the server closes the connection; returns what it sent and when it closed."""
    started = time.monotonic()
    received = b""
    connection.settimeout(limit)
    while True:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open {limit} s") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def test_clients_that_hang_up_mid_body_cost_one_short_log_line_each(served, caplog):
    predict = f"/v1/models/{KNN}:predict"
    clients = 50
    caplog.set_level(logging.INFO)
    with RealServer(create_app(served)) as server:
        for _ in range(clients):
            connection = server.connect()
            connection.sendall(head(predict, 10_000) + b'{"instances": [[0, 0')
            connection.close()
        # The server still answers, after every hang-up has been handled.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(caplog.records) < clients:
            time.sleep(0.05)
        connection = server.connect()
        body = json.dumps({"instances": [[0] * 64]}).encode()
        connection.sendall(head(predict, len(body), "Connection: close\r\n") + body)
        answer, _ = wait_closed(connection, 10)
        assert answer.startswith(b"HTTP/1.1 200")
    records = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(records) == clients, [record.getMessage() for record in records[:3]]
    for record in records:
        assert record.exc_info is None
        line = record.getMessage()
        assert "\n" not in line and len(line) < 200 and "hung up" in line, line


def test_slow_clients_are_timed_out(served):
    predict = f"/v1/models/{KNN}:predict"
    timeouts = {"header_timeout": 0.6, "keep_alive": 0.4}
    with RealServer(create_app(served, body_timeout=0.6), **timeouts) as server:
        # A head that never ends (one header line every 0.2 s): closed at the head's deadline.
        connection = server.connect()
        connection.sendall(b"POST " + predict.encode() + b" HTTP/1.1\r\n")
        started = time.monotonic()
        closed = False
        for number in range(40):
            try:
                connection.sendall(f"X-Slow-{number}: 1\r\n".encode())
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            connection.settimeout(0.01)
            try:
                if connection.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed and time.monotonic() - started < 3, "a head that never ends was kept"
        connection.close()

        # A body that never ends: 408, as JSON, and the connection closed.
        connection = server.connect()
        connection.sendall(head(predict, 1000) + b'{"instances": ')
        answer, seconds = wait_closed(connection, 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 0.6 s" in answer and seconds < 3
        connection.close()

        # An idle keep-alive connection: closed after keep_alive seconds.
        connection = server.connect()
        body = json.dumps({"instances": [[0] * 64]}).encode()
        connection.sendall(head(predict, len(body)) + body)
        answer, seconds = wait_closed(connection, 5)
        assert answer.startswith(b"HTTP/1.1 200") and seconds < 3
        connection.close()

        # Nothing sent at all: closed too.
        connection = server.connect()
        _, seconds = wait_closed(connection, 5)
        assert seconds < 3


def test_a_loopback_server_answers_to_its_own_address_and_localhost(served):
    assert allowed_hosts("127.0.0.1", "127.0.0.1") == ["127.0.0.1", "localhost"]
    assert allowed_hosts("::1", "::1") == ["::1", "localhost"]
    assert allowed_hosts("localhost", "::1") == ["::1", "localhost"]
    app = create_app(served, allowed_hosts=allowed_hosts("127.0.0.1", "127.0.0.1"))
    with TestClient(app) as client:
        path = f"/v1/models/{KNN}"
        assert client.get(path, headers={"Host": "localhost:8501"}).status_code == 200
        assert client.get(path, headers={"Host": "127.0.0.1:8501"}).status_code == 200
        refused = client.get(path, headers={"Host": "[::1]:8501"})
        assert refused.status_code == 400 and "'::1'" in refused.json()["error"]


# Tampered metadata --------------------------------------------------------------------------

TAMPERED = {
    "temperature 1e-320": ("temperature", 1e-320, "temperature"),
    "temperature NaN": ("temperature", math.nan, "temperature"),
    "temperature infinite": ("temperature", math.inf, "temperature"),
    "temperature negative": ("temperature", -1.0, "temperature"),
    "temperature huge": ("temperature", 1e6, "temperature"),
    "temperature true": ("temperature", True, "temperature"),
    "temperature a string": ("temperature", "1.5", "temperature"),
    "eleven classes": ("classes", list(range(11)), "lists 11 classes but its model gives 10"),
    "repeated classes": ("classes", [0, 1, 2, 3, 4, 5, 6, 7, 8, 8], "distinct whole numbers"),
}


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_tampered_metadata_is_refused_in_one_line(export, tmp_path, cli_error, case):
    key, value, fragment = TAMPERED[case]
    base = tmp_path / "tampered"
    shutil.copytree(export, base)
    (version,) = [folder for folder in base.iterdir() if folder.is_dir()]
    metadata = json.loads((version / "metadata.json").read_text())
    metadata[key] = value
    (version / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ZooError, match=fragment.split(" but")[0]):
        load_export(base)
    png = tmp_path / "digit.png"
    png.write_bytes(digit_png(load_dataset(seed=0).x_test[0]))
    cli_error("predict", base, png, match=fragment)
    cli_error("serve", base, "--port", "0", "--collect", tmp_path / "c.csv", match=fragment)


def test_the_calibrated_temperature_range_is_accepted(export, tmp_path):
    for temperature in (0.05, 0.5, 20.0):
        base = tmp_path / f"t{temperature}"
        shutil.copytree(export, base)
        (version,) = [folder for folder in base.iterdir() if folder.is_dir()]
        metadata = json.loads((version / "metadata.json").read_text())
        metadata["temperature"] = temperature
        (version / "metadata.json").write_text(json.dumps(metadata))
        probabilities, _ = load_export(base).predict_proba(np.zeros((1, 64)))
        assert np.isfinite(probabilities).all()


# The run directory whose export went elsewhere -------------------------------------------


def test_serve_of_a_run_whose_export_went_elsewhere_says_where_to_look(run_dir, cli_error):
    assert not (run_dir / "export").exists()
    cli_error("serve", run_dir, "--port", "0", match="--out FOLDER")
