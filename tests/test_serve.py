"""digits-zoo serve: TensorFlow Serving's REST API, the drawing page's endpoints, collecting."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from digits_zoo.baselines import run_baselines
from digits_zoo.cli import build_parser
from digits_zoo.runs import open_run
from digits_zoo.searching import run_search
from digits_zoo.serve.app import create_app
from digits_zoo.serve.collect import CollectFile
from digits_zoo.serve.models import find_exports, load_models
from digits_zoo.serve.reload import VersionPoller
from digits_zoo.ship.export import export_run
from digits_zoo.ship.inputs import image_to_pixels, picture_rows, predict_inputs
from digits_zoo.ship.layout import version_folders
from digits_zoo.ship.load import load_export
from search.spec import SearchSpec
from zoo import ZooError, load_dataset

KNN = "knn_k1"
NET = "search_random_0_1x16_relu"
# A base holding two different models as versions: 1 is the k-NN, 2 the network.
MIXED = "mixed"
N_ROWS = 40


def quiet(line: str) -> None:
    """Swallows progress lines."""


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """A run with a k-NN and a tiny dense network on its leaderboard, both exported.

    Returns the run's ``export/`` folder: ``knn_k1/1``, ``search_random_0_1x16_relu/1``,
    and ``mixed/1`` (the k-NN) and ``mixed/2`` (the network).
    """
    run = open_run(tmp_path_factory.mktemp("run"), seed=0, n_folds=2)
    run_baselines(run, [KNN], progress=quiet)
    spec = SearchSpec(
        tuner="random",
        max_trials=1,
        epochs=2,
        top_k=1,
        fixed={"n_layers": 1, "units": 16, "augment": "none"},
    )
    run_search(run, spec, progress=quiet)
    network = export_run(run.path, progress=quiet)
    knn = export_run(run.path, model=KNN, progress=quiet)
    assert network.path.parent.name == NET
    folder = run.path / "export"
    shutil.copytree(knn.path, folder / MIXED / "1")
    shutil.copytree(network.path, folder / MIXED / "2")
    return folder


@pytest.fixture(scope="module")
def models(exports):
    """The three models loaded for serving, collecting into the run directory."""
    return load_models([exports], progress=quiet)


@pytest.fixture(scope="module")
def client(models):
    """Starlette's test client (httpx) on the application."""
    with TestClient(create_app(models)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """Raw 0..16 pixel rows of the bundled digits' test part."""
    return load_dataset(seed=0).x_test[:N_ROWS]


def served_probabilities(answer: dict) -> np.ndarray:
    if "predictions" in answer:
        return np.array([item["probabilities"] for item in answer["predictions"]])
    return np.array(answer["outputs"]["probabilities"])


def served_classes(answer: dict) -> list[int]:
    if "predictions" in answer:
        return [item["class"] for item in answer["predictions"]]
    return answer["outputs"]["class"]


def expected_predictions(export_dir: Path, rows: np.ndarray, folder: Path):
    """What ``digits-zoo predict`` says of these rows: probabilities in class order, classes."""
    csv = folder / "rows.csv"
    np.savetxt(csv, rows, fmt="%d", delimiter=",")
    export = load_export(export_dir)
    results = predict_inputs(export, [csv], top=len(export.classes))
    probabilities = np.array(
        [
            [dict((t["class"], t["probability"]) for t in r["top"])[c] for c in export.classes]
            for r in results
        ]
    )
    return probabilities, [r["class"] for r in results]


def digit_png(pixels: np.ndarray, scale: int = 12, dark_on_light: bool = True) -> bytes:
    """A picture of an 8x8 digit, as a drawing page would send it."""
    grey = np.asarray(pixels, dtype="float64").reshape(8, 8) / 16.0
    grey = 1.0 - grey if dark_on_light else grey
    image = Image.fromarray(np.round(grey * 255).astype("uint8"), mode="L")
    buffer = io.BytesIO()
    image.resize((8 * scale, 8 * scale), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


# Finding and loading exports ---------------------------------------------------------------


def test_every_kind_of_argument_names_its_models(exports):
    run_dir = exports.parent
    names = [source.name for source in find_exports(exports)]
    assert names == sorted([KNN, NET, MIXED])
    assert [s.name for s in find_exports(run_dir)] == names
    (base,) = find_exports(exports / MIXED)
    assert base.name == MIXED and sorted(base.versions) == [1, 2]
    assert base.collect == (exports / MIXED / "collected.csv").resolve()
    (single,) = find_exports(exports / MIXED / "1")
    assert single.name == MIXED and list(single.versions) == [1]
    # A run's exports collect into the run directory.
    assert {s.collect for s in find_exports(exports)} == {(run_dir / "collected.csv").resolve()}


def test_served_models_default_to_their_newest_version(models):
    mixed = models[MIXED]
    assert sorted(mixed.versions) == [1, 2] and mixed.newest == 2
    assert mixed.get()[1].format == "tf_saved_model"
    assert mixed.get(1)[1].format == "skops"


# TensorFlow Serving's REST API -------------------------------------------------------------


def test_model_status_lists_the_served_versions(client):
    answer = client.get(f"/v1/models/{MIXED}")
    assert answer.status_code == 200
    ok = {"error_code": "OK", "error_message": ""}
    assert answer.json() == {
        "model_version_status": [
            {"version": "2", "state": "AVAILABLE", "status": ok},
            {"version": "1", "state": "AVAILABLE", "status": ok},
        ]
    }
    one = client.get(f"/v1/models/{MIXED}/versions/1").json()
    assert one == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": ok}]}


def test_metadata_is_the_serving_signature(client):
    answer = client.get(f"/v1/models/{NET}/metadata")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_spec"] == {"name": NET, "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    pixels = signature["inputs"]["pixels"]
    assert pixels["dtype"] == "DT_FLOAT" and pixels["tensor_shape"]["unknown_rank"] is True
    outputs = signature["outputs"]
    assert outputs["probabilities"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in outputs["probabilities"]["tensor_shape"]["dim"]] == ["-1", "10"]
    assert outputs["class"]["dtype"] == "DT_INT64"
    assert [d["size"] for d in outputs["class"]["tensor_shape"]["dim"]] == ["-1"]

    # A scikit-learn export describes the same signature; only the tensor names differ.
    def unnamed(value):
        if isinstance(value, dict):
            return {
                k: unnamed(v) for k, v in value.items() if k != "name" or not isinstance(v, str)
            }
        return [unnamed(v) for v in value] if isinstance(value, list) else value

    knn = client.get(f"/v1/models/{KNN}/versions/1/metadata").json()
    knn_signature = knn["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert unnamed(knn_signature) == unnamed(signature)
    assert client.get(f"/v1/models/{MIXED}/metadata").json()["model_spec"]["version"] == "2"


@pytest.mark.parametrize("model", [NET, KNN])
def test_predict_gives_what_digits_zoo_predict_gives(client, exports, rows, tmp_path, model):
    expected, classes = expected_predictions(exports / model, rows, tmp_path)
    images = rows.reshape(-1, 8, 8)
    requests = [
        {"instances": rows.tolist()},
        {"instances": images.tolist(), "signature_name": "serving_default"},
        {"instances": images[..., None].tolist()},
        {"instances": [{"pixels": row} for row in rows.astype(int).tolist()]},
        {"inputs": {"pixels": rows.tolist()}},
        {"inputs": images.tolist()},
    ]
    for request in requests:
        answer = client.post(f"/v1/models/{model}:predict", json=request)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"outputs" if "inputs" in request else "predictions"}
        np.testing.assert_array_equal(served_probabilities(body), expected)
        assert served_classes(body) == classes
    # One image in the columnar format, as the SavedModel itself takes it.
    single = client.post(f"/v1/models/{model}:predict", json={"inputs": rows[0].tolist()}).json()
    assert single["outputs"]["class"] == classes[:1]


def test_predict_serves_the_newest_version_unless_told(client, exports, rows, tmp_path):
    newest, _ = expected_predictions(exports / MIXED / "2", rows, tmp_path)
    first, _ = expected_predictions(exports / MIXED / "1", rows, tmp_path)
    assert not np.array_equal(newest, first)
    request = {"instances": rows.tolist()}
    for path, expected in (
        (f"/v1/models/{MIXED}:predict", newest),
        (f"/v1/models/{MIXED}/versions/2:predict", newest),
        (f"/v1/models/{MIXED}/versions/1:predict", first),
    ):
        answer = client.post(path, json=request)
        assert answer.status_code == 200
        np.testing.assert_array_equal(served_probabilities(answer.json()), expected)


def test_concurrent_requests_share_one_model_call_and_get_their_own_answers(
    models, rows, monkeypatch
):
    import asyncio

    import httpx2

    export = models[KNN].versions[1]
    calls: list[int] = []
    real = export.predict_proba

    def counted(x):
        calls.append(len(x))
        return real(x)

    monkeypatch.setattr(export, "predict_proba", counted)
    alone = [real(rows[i : i + 1]) for i in range(len(rows))]

    async def send_all():
        transport = httpx2.ASGITransport(app=create_app(models))
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            requests = [
                client.post(PREDICT, json={"instances": rows[i : i + 1].tolist()})
                for i in range(len(rows))
            ]
            return await asyncio.gather(*requests)

    answers = asyncio.run(send_all())
    assert all(answer.status_code == 200 for answer in answers)
    for (probabilities, classes), answer in zip(alone, answers, strict=True):
        np.testing.assert_allclose(served_probabilities(answer.json()), probabilities, atol=1e-6)
        assert served_classes(answer.json()) == classes.tolist()
    assert sum(calls) == len(rows) and len(calls) < len(rows)


class Doubler:
    """A stand-in export that doubles its rows and records each call's size."""

    def __init__(self, format: str) -> None:
        self.format = format
        self.n_features = 2
        self.calls: list[int] = []

    def predict_proba(self, x):
        self.calls.append(len(x))
        if (x < 0).any():
            raise RuntimeError("a bug")
        return x * 2, x[:, 0].astype("int64")


def test_the_batcher_splits_calls_at_its_row_limit_and_passes_on_failures():
    import asyncio

    from digits_zoo.serve.batching import Batcher

    doubler = Doubler("skops")
    batcher = Batcher(doubler, max_rows=5)

    async def predict_all(blocks):
        return await asyncio.gather(
            *(batcher.predict_proba(block) for block in blocks), return_exceptions=True
        )

    blocks = [np.full((n, 2), float(n)) for n in (2, 2, 3, 7, 1)]
    results = asyncio.run(predict_all(blocks))
    assert doubler.calls == [4, 3, 7, 1]  # 2+2, then 3 (3+7 is over 5), 7 alone, 1
    for block, (probabilities, classes) in zip(blocks, results, strict=True):
        np.testing.assert_array_equal(probabilities, block * 2)
        assert classes.tolist() == [len(block)] * len(block)
    failed = asyncio.run(predict_all([np.ones((1, 2)), -np.ones((1, 2))]))
    assert all(isinstance(result, RuntimeError) for result in failed)


def test_saved_model_calls_are_padded_to_a_few_batch_sizes():
    import asyncio

    from digits_zoo.serve.batching import Batcher, padded_size, warm_up

    assert [padded_size(n) for n in (1, 2, 3, 5, 64, 65, 1024)] == [1, 2, 4, 8, 64, 128, 1024]
    saved_model = Doubler("tf_saved_model")
    batcher = Batcher(saved_model, max_rows=4)

    async def predict_all(blocks):
        return await asyncio.gather(*(batcher.predict_proba(block) for block in blocks))

    blocks = [np.arange(6.0).reshape(3, 2), np.arange(12.0).reshape(6, 2)]
    results = asyncio.run(predict_all(blocks))
    assert saved_model.calls == [4, 4, 2]  # 3 rows padded to 4, then 6 rows as 4 + 2
    for block, (probabilities, classes) in zip(blocks, results, strict=True):
        np.testing.assert_array_equal(probabilities, block * 2)
        assert classes.tolist() == block[:, 0].tolist()
    saved_model.calls.clear()
    warm_up(saved_model, max_rows=16)
    assert saved_model.calls == [1, 2, 4, 8, 16]


# Bad requests ----------------------------------------------------------------------------

ROW = [0] * 64
PREDICT = f"/v1/models/{KNN}:predict"


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000), 1).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_REQUESTS = {
    "malformed JSON": ("POST", PREDICT, b'{"instances": [', {}, 400, "not valid JSON"),
    "not UTF-8": ("POST", PREDICT, b'{"instances": "\xff"}', {}, 400, "not valid JSON"),
    "not an object": ("POST", PREDICT, b"[1, 2]", {}, 400, "must be a JSON object"),
    "both formats": (
        "POST",
        PREDICT,
        {"instances": [ROW], "inputs": [ROW]},
        {},
        400,
        "not both",
    ),
    "no input": ("POST", PREDICT, {"signature_name": "serving_default"}, {}, 400, "not neither"),
    "unknown key": ("POST", PREDICT, {"instance": [ROW]}, {}, 400, "'instance'"),
    "unknown signature": (
        "POST",
        PREDICT,
        {"signature_name": "classify", "instances": [ROW]},
        {},
        400,
        "unknown signature_name",
    ),
    "wrong shape": ("POST", PREDICT, {"instances": [[1, 2, 3]]}, {}, 400, "wrong-shaped"),
    "one bare image as instances": (
        "POST",
        PREDICT,
        {"instances": [[0] * 8] * 8},
        {},
        400,
        "must be a list of images",
    ),
    "empty instances": ("POST", PREDICT, {"instances": []}, {}, 400, "non-empty list"),
    "strings": ("POST", PREDICT, {"instances": [["1"] * 64]}, {}, 400, "must be numbers"),
    "booleans": ("POST", PREDICT, {"inputs": [[True] * 64]}, {}, 400, "must be numbers"),
    "booleans among numbers": (
        "POST",
        PREDICT,
        {"instances": [[1, True] + [0] * 62]},
        {},
        400,
        "pixels must be numbers (got true)",
    ),
    "named booleans": (
        "POST",
        PREDICT,
        {"inputs": {"pixels": [[0] * 63 + [False]]}},
        {},
        400,
        "pixels must be numbers (got false)",
    ),
    "the network signature": (
        "POST",
        PREDICT,
        {"signature_name": "network", "instances": [ROW]},
        {},
        400,
        "'network' is not served here",
    ),
    "GET on predict": ("GET", PREDICT, None, {}, 405, ":predict takes POST (got GET)"),
    "GET on a version's predict": (
        "GET",
        f"/v1/models/{KNN}/versions/1:predict",
        None,
        {},
        405,
        ":predict takes POST",
    ),
    "nulls": ("POST", PREDICT, {"instances": [[None] * 64]}, {}, 400, "must be numbers"),
    "base64 object": (
        "POST",
        PREDICT,
        {"instances": [{"pixels": {"b64": "AAAA"}}]},
        {},
        400,
        "must be numbers",
    ),
    "ragged": ("POST", PREDICT, {"instances": [ROW, ROW[:-1]]}, {}, 400, "ragged"),
    "above the range": ("POST", PREDICT, {"instances": [[17] * 64]}, {}, 400, "0..16"),
    "negative": ("POST", PREDICT, {"inputs": {"pixels": [[-1] * 64]}}, {}, 400, "0..16"),
    "NaN": ("POST", PREDICT, b'{"instances": [[NaN' + b", 0" * 63 + b"]]}", {}, 400, "finite"),
    "too deep": ("POST", PREDICT, b'{"instances": ' + b"[" * 100000, {}, 400, "JSON"),
    "wrong input name": ("POST", PREDICT, {"inputs": {"image": [ROW]}}, {}, 400, "'image'"),
    "unknown model": ("POST", "/v1/models/nope:predict", {"instances": [ROW]}, {}, 404, "nope"),
    "unknown model status": ("GET", "/v1/models/nope", None, {}, 404, "nope"),
    "unknown version": (
        "POST",
        f"/v1/models/{KNN}/versions/7:predict",
        {"instances": [ROW]},
        {},
        404,
        "no version 7",
    ),
    "unknown version metadata": (
        "GET",
        f"/v1/models/{KNN}/versions/3/metadata",
        None,
        {},
        404,
        "3",
    ),
    "version not a number": ("GET", f"/v1/models/{KNN}/versions/x", None, {}, 404, "'x'"),
    "version in other digits": (
        "GET",
        f"/v1/models/{KNN}/versions/%C2%B2",
        None,
        {},
        404,
        "whole number",
    ),
    "label in other digits": (
        "POST",
        f"/api/models/{KNN}/collect?label=%C2%B2",
        blank_png(),
        {"Content-Type": "image/png"},
        400,
        "?label=",
    ),
    "label too long": (
        "POST",
        f"/api/models/{KNN}/collect?label={'9' * 5000}",
        blank_png(),
        {"Content-Type": "image/png"},
        400,
        "?label=",
    ),
    "classify": ("POST", f"/v1/models/{KNN}:classify", {"examples": []}, {}, 404, ":predict only"),
    "unknown route": ("GET", "/v2/models", None, {}, 404, "no such route"),
    "wrong method": ("POST", f"/v1/models/{KNN}", {}, {}, 405, "Method Not Allowed"),
    "body too large": (
        "POST",
        PREDICT,
        b" " * (4 * 2**20 + 1),
        {},
        413,
        "at most 4,194,304",
    ),
    "not a picture": (
        "POST",
        f"/api/models/{KNN}/draw",
        b"hello",
        {"Content-Type": "image/png"},
        400,
        "cannot read 'the uploaded picture' as an image",
    ),
    "not said to be a picture": (
        "POST",
        f"/api/models/{KNN}/draw",
        b"hello",
        {"Content-Type": "text/plain"},
        415,
        "Content-Type",
    ),
    "blank picture": (
        "POST",
        f"/api/models/{KNN}/draw",
        blank_png(),
        {"Content-Type": "image/png"},
        400,
        "no digit visible",
    ),
    "picture too large": (
        "POST",
        f"/api/models/{KNN}/draw",
        huge_png(),
        {"Content-Type": "image/png"},
        400,
        "picture too large",
    ),
    "collect without a label": (
        "POST",
        f"/api/models/{KNN}/collect",
        blank_png(),
        {"Content-Type": "image/png"},
        400,
        "?label=",
    ),
    "collect an unknown class": (
        "POST",
        f"/api/models/{KNN}/collect?label=12",
        blank_png(),
        {"Content-Type": "image/png"},
        400,
        "(got '12')",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_json_error_and_the_server_keeps_serving(client, case):
    method, path, body, headers, status, fragment = BAD_REQUESTS[case]
    if isinstance(body, (dict, list)):
        answer = client.request(method, path, json=body, headers=headers)
    else:
        answer = client.request(method, path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert isinstance(error, str) and fragment in error, error
    assert "Traceback" not in answer.text
    if path.endswith(":predict") and status == 405:
        assert answer.headers["allow"] == "POST"
    good = client.post(PREDICT, json={"instances": [ROW]})
    assert good.status_code == 200


def test_a_streamed_body_over_the_limit_is_refused(client):
    def chunks():
        for _ in range(5):
            yield b" " * 2**20

    answer = client.post(PREDICT, content=chunks())
    assert answer.status_code == 413 and "more than 4,194,304 bytes" in answer.json()["error"]


def test_a_server_on_loopback_refuses_other_host_names(models):
    with TestClient(create_app(models, allowed_hosts=["127.0.0.1"])) as guarded:
        assert guarded.get(f"/v1/models/{KNN}", headers={"Host": "127.0.0.1:8501"}).is_success
        refused = guarded.get(f"/v1/models/{KNN}", headers={"Host": "attacker.example:8501"})
        assert refused.status_code == 400 and "attacker.example" in refused.json()["error"]


# The page ----------------------------------------------------------------------------------


def test_the_page_and_everything_it_loads_come_from_the_server(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for element in ('id="pad"', 'id="undo"', 'id="clear"', 'id="bars"', 'id="right"', 'id="model"'):
        assert element in page.text
    for asset, kind in (
        ("static/app.js", "javascript"),
        ("static/style.css", "text/css"),
        ("static/favicon.svg", "image/svg+xml"),
    ):
        answer = client.get(f"/{asset}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
        assert asset in page.text
        assert "http://" not in answer.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in answer.text
    assert "https://" not in page.text and "http://" not in page.text


def test_the_page_lists_the_models(client):
    listed = client.get("/api/models").json()["models"]
    assert [model["name"] for model in listed] == [KNN, MIXED, NET]
    mixed = next(model for model in listed if model["name"] == MIXED)
    assert mixed["version"] == 2 and mixed["versions"] == [1, 2]
    assert mixed["image_shape"] == [8, 8] and mixed["pixel_max"] == 16
    assert mixed["classes"] == list(range(10)) and mixed["collect"] == "collected.csv"


@pytest.mark.parametrize("model", [NET, KNN])
def test_a_drawing_is_read_as_digits_zoo_predict_reads_a_picture(client, exports, rows, model):
    export = load_export(exports / model)
    for index in range(3):
        png = digit_png(rows[index], dark_on_light=bool(index % 2))
        answer = client.post(
            f"/api/models/{model}/draw", content=png, headers={"Content-Type": "image/png"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        picture = Image.open(io.BytesIO(png))
        rows = picture_rows(picture, (8, 8), 16.0, export.picture_recipe)
        # The pixels shown are the stored row (collect's); the reading is class by class.
        assert len(rows) == 11
        np.testing.assert_array_equal(body["pixels"], rows[0])
        probabilities, classes = export.predict_pictures(rows[None])
        np.testing.assert_allclose(body["probabilities"], probabilities[0], rtol=1e-5, atol=1e-6)
        assert body["class"] == int(classes[0]) and body["classes"] == list(range(10))
        assert body["image_shape"] == [8, 8] and body["pixel_max"] == 16
        assert body["model"] == model and body["version"] == 1


# Collecting --------------------------------------------------------------------------------


def test_collected_digits_feed_evaluate_and_search_as_they_are(
    models, exports, rows, tmp_path, cli
):
    collect = tmp_path / "collected.csv"
    served = load_models([exports / KNN], collect=collect, progress=quiet)
    dataset = load_dataset(seed=0)
    # Five of each digit, as a person marking the page would.
    picks = np.concatenate([np.flatnonzero(dataset.y_test == digit)[:5] for digit in range(10)])
    with TestClient(create_app(served)) as test_client:
        for count, index in enumerate(picks, start=1):
            label = int(dataset.y_test[index])
            png = digit_png(dataset.x_test[index])
            answer = test_client.post(
                f"/api/models/{KNN}/collect?label={label}",
                content=png,
                headers={"Content-Type": "image/png"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"label": label, "rows": count, "file": "collected.csv"}
    lines = collect.read_text().splitlines()
    assert len(lines) == len(picks)
    first = np.array(lines[0].split(","), dtype=float)
    picture = Image.open(io.BytesIO(digit_png(dataset.x_test[picks[0]])))
    recipe = load_export(exports / KNN).picture_recipe
    expected = image_to_pixels(picture, (8, 8), 16.0, recipe)
    np.testing.assert_array_equal(first[:-1], expected)
    assert first[-1] == dataset.y_test[picks[0]] and "." not in lines[0]

    status, out, err = cli("evaluate", exports / KNN, "--data", collect, "--format", "json")
    assert status == 0, err
    assert json.loads(out)["rows"] == len(picks)
    status, out, err = cli(
        "search",
        "--data",
        collect,
        "--run-dir",
        tmp_path / "run",
        "--folds",
        "2",
        "--tuner",
        "random",
        "--max-trials",
        "1",
        "--epochs",
        "1",
        "--top-k",
        "1",
        "--fix",
        "n_layers=1",
        "--fix",
        "units=16",
        "--fix",
        "augment=none",
    )
    assert status == 0, err


def test_a_row_is_appended_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "collected.csv"
    path.write_text("1,2,3,4,5")  # a last line without its end, as an editor may leave it
    collect = CollectFile(path, n_features=4, pixel_max=16)
    assert collect.append(np.array([0, 16, 3, 4]), 7) == 2
    assert path.read_text() == "1,2,3,4,5\n0,16,3,4,7\n"

    real_write = os.write

    def half_write(descriptor, data):
        return real_write(descriptor, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half_write)
    with pytest.raises(ZooError, match="could not append"):
        collect.append(np.array([1, 1, 1, 1]), 2)
    monkeypatch.setattr(os, "write", real_write)
    assert path.read_text() == "1,2,3,4,5\n0,16,3,4,7\n"

    threads = [
        threading.Thread(target=lambda: [collect.append(np.full(4, 5), 1) for _ in range(25)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 + 8 * 25 and lines[2:] == ["5,5,5,5,1"] * 200


def test_a_killed_writer_leaves_only_whole_rows(tmp_path):
    path = tmp_path / "collected.csv"
    script = (
        "import numpy as np\n"
        "from digits_zoo.serve.collect import CollectFile\n"
        f"collect = CollectFile({str(path)!r}, n_features=784, pixel_max=255)\n"
        "row = np.arange(784) % 256\n"
        "while True:\n"
        "    collect.append(row, 3)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while (not path.exists() or path.stat().st_size < 200_000) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.kill()
        writer.wait()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) > 2
    assert all(len(line.split(b",")) == 785 for line in lines[:-1])


def test_a_collect_file_of_another_layout_is_refused_before_serving(exports, tmp_path):
    other = tmp_path / "mnist.csv"
    other.write_text(",".join(["0"] * 785) + "\n")
    with pytest.raises(ZooError, match="holds rows of 785 columns"):
        load_models([exports / KNN], collect=other, progress=quiet)
    with pytest.raises(ZooError, match="folder does not exist"):
        load_models([exports / KNN], collect=tmp_path / "missing" / "c.csv", progress=quiet)


# The command line and a real server --------------------------------------------------------


def test_serve_names_a_model_as_export_tells_tensorflow_model_server(exports, tmp_path, cli):
    out = tmp_path / "E"
    status, printed, err = cli("export", exports.parent, "--model", NET, "--out", out)
    assert status == 0, err
    (line,) = [line for line in printed.splitlines() if "--model_name=" in line]
    name = line.split("--model_name=", 1)[1].split()[0]
    assert name == "E"
    assert list(load_models([out], progress=quiet)) == [name]


def test_serve_listens_on_loopback_by_default():
    args = build_parser().parse_args(["serve", "somewhere"])
    assert (args.host, args.port, args.collect) == ("127.0.0.1", 8501, None)


def test_serve_refuses_bad_arguments_with_one_line(exports, tmp_path, cli_error):
    cli_error("serve", tmp_path / "nowhere", "--port", "0", match="export folder not found")
    (tmp_path / "empty").mkdir()
    cli_error("serve", tmp_path / "empty", "--port", "0", match="no export found")
    cli_error("serve", exports / KNN, "--port", "70000", match="--port must be between")
    twin = tmp_path / "twin" / KNN
    shutil.copytree(exports / KNN, twin)
    cli_error("serve", exports / KNN, twin, "--port", "0", match="both named 'knn_k1'")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cli_error(
            "serve", exports / KNN, "--port", port, match=f"cannot listen on 127.0.0.1 port {port}"
        )


def start_server(*arguments: object) -> tuple[subprocess.Popen, str]:
    """Starts ``digits-zoo serve`` on a free loopback port; returns the process and its URL.

    The start-up lines read here (through "Ctrl-C stops") are kept as
    ``process.startup``: ``communicate`` later reads the pipe itself, so lines
    already taken into this reader's buffer would not reach it.
    """
    command = [sys.executable, "-m", "digits_zoo.cli", "serve", *map(str, arguments), "--port", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    startup, url = [], None
    for line in process.stdout:
        startup.append(line)
        if line.startswith("serving "):
            url = line.split(" at ", 1)[1].strip()
        if url is not None and line.strip() == "Ctrl-C stops":
            process.startup = "".join(startup)
            return process, url
    process.wait(timeout=10)
    raise AssertionError(f"serve did not start: {process.stderr.read()}")


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_a_tensorflow_serving_client_gets_the_classes_of_digits_zoo_predict(
    exports, rows, tmp_path
):
    _, knn_classes = expected_predictions(exports / KNN, rows, tmp_path)
    _, net_classes = expected_predictions(exports / NET, rows, tmp_path)
    process, url = start_server(exports / KNN, exports / NET, "--collect", tmp_path / "c.csv")
    try:
        assert url.startswith("http://127.0.0.1:")
        # As a client written for TensorFlow Serving sends them.
        knn = post_json(f"{url}v1/models/{KNN}:predict", {"instances": rows.tolist()})
        assert [item["class"] for item in knn["predictions"]] == knn_classes
        net = post_json(
            f"{url}v1/models/{NET}/versions/1:predict",
            {"signature_name": "serving_default", "inputs": {"pixels": rows.tolist()}},
        )
        assert net["outputs"]["class"] == net_classes
        with urllib.request.urlopen(f"{url}v1/models/{NET}", timeout=30) as response:
            assert json.load(response)["model_version_status"][0]["state"] == "AVAILABLE"
        with pytest.raises(urllib.error.HTTPError) as refused:
            post_json(f"{url}v1/models/{NET}:predict", {"instances": [[99] * 64]})
        assert refused.value.code == 400 and "0..16" in json.load(refused.value)["error"]
        # A client that hangs up mid-body costs one line of the log, no traceback.
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port))) as hung_up:
            hung_up.sendall(
                f"POST /v1/models/{KNN}:predict HTTP/1.1\r\nHost: {host}\r\n"
                'Content-Length: 5000\r\n\r\n{"instances": [['.encode()
            )
        post_json(f"{url}v1/models/{KNN}:predict", {"instances": [[0] * 64]})
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert err.count("hung up") == 1 and len(err) < 500, err


# Unsure, counting, adapting from the page ---------------------------------------------------


def draw_answer(test_client, model: str, pixels: np.ndarray) -> dict:
    answer = test_client.post(
        f"/api/models/{model}/draw",
        content=digit_png(pixels),
        headers={"Content-Type": "image/png"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_reading_below_the_threshold_is_unsure(models, rows):
    answers = {}
    for threshold in (0.0, 0.5, 1.0):
        with TestClient(create_app(models, min_confidence=threshold)) as test_client:
            answers[threshold] = [draw_answer(test_client, NET, rows[i]) for i in range(8)]
    for threshold, bodies in answers.items():
        for body in bodies:
            assert body["min_confidence"] == threshold
            assert body["probability"] == max(body["probabilities"])
            assert body["unsure"] == (body["probability"] < threshold)
    # The tiny two-epoch network is sure of some of these digits and not of others.
    assert not any(body["unsure"] for body in answers[0.0])
    assert all(body["unsure"] for body in answers[1.0])
    with pytest.raises(ZooError, match="--min-confidence must be a probability"):
        create_app(models, min_confidence=1.5)


def test_the_page_counts_the_digits_collected_and_shows_the_adapt_command(exports, rows, tmp_path):
    collect = tmp_path / "my digits.csv"
    served = load_models([exports / NET], collect=collect, progress=quiet)
    with TestClient(create_app(served)) as test_client:
        (listed,) = test_client.get("/api/models").json()["models"]
        assert listed["collected"] == 0 and listed["collect_error"] is None
        # The command runs as shown, quoted for a shell.
        program, *arguments = shlex.split(listed["adapt_command"])
        args = build_parser().parse_args(arguments)
        assert program == "digits-zoo" and args.command == "adapt"
        assert (args.export, args.data) == (str((exports / NET).resolve()), str(collect))
        for label in (3, 5):
            png = digit_png(rows[label])
            test_client.post(
                f"/api/models/{NET}/collect?label={label}",
                content=png,
                headers={"Content-Type": "image/png"},
            )
        # Rows another process appended count too.
        with collect.open("a") as another:
            another.write(",".join(["0"] * 64) + ",1\n")
        (listed,) = test_client.get("/api/models").json()["models"]
        assert listed["collected"] == 3


def test_an_adaptation_runs_in_the_background_one_at_a_time(exports, rows, tmp_path):
    base = tmp_path / KNN
    shutil.copytree(exports / KNN / "1", base / "1")
    collect = tmp_path / "collected.csv"
    served = load_models([base], collect=collect, progress=quiet)
    with TestClient(create_app(served)) as test_client:
        url = f"/api/models/{KNN}/adapt"
        assert test_client.get(url).json() == {"state": "none", "serving": 1}
        refused = test_client.post(url)
        assert refused.status_code == 400 and "at least 2 collected digits" in refused.text
        # Digits of the export's own test split: adapt refuses them, after starting up.
        dataset = load_dataset(seed=0)
        served[KNN].collect.check()
        for index in range(4):
            served[KNN].collect.append(dataset.x_test[index], int(dataset.y_test[index]))
        started = test_client.post(url)
        assert started.status_code == 202, started.text
        assert started.json()["state"] == "running" and started.json()["digits"] == 4
        again = test_client.post(url)
        assert again.status_code == 409 and "already running" in again.json()["error"]
        # The server answers while the command runs.
        assert test_client.get("/api/models").json()["models"][0]["adapting"] is True
        deadline = time.monotonic() + 120
        while (status := test_client.get(url).json())["state"] == "running":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
    assert status["state"] == "failed" and status["exit_code"] == 2, status
    assert status["last_line"].startswith("digits-zoo: error:") and "test" in status["last_line"]
    assert status["written"] is None and status["serving"] == 1
    assert [number for number, _ in version_folders(base)] == [1]


# Hot reload -----------------------------------------------------------------------------------


def test_a_new_version_is_served_once_it_has_loaded_and_a_broken_one_is_not(
    exports, rows, tmp_path
):
    base = tmp_path / "digits"
    shutil.copytree(exports / KNN / "1", base / "1")
    served = load_models([base], progress=quiet)
    loaded, warnings = [], []
    poller = VersionPoller(served, progress=loaded.append, warn=warnings.append)
    knn = load_export(exports / KNN).predict_proba(rows)[0]
    net = load_export(exports / NET).predict_proba(rows)[0]
    with TestClient(create_app(served)) as test_client:

        def served_now(version: str = "") -> np.ndarray:
            answer = test_client.post(
                f"/v1/models/digits{version}:predict", json={"instances": rows.tolist()}
            )
            assert answer.status_code == 200, answer.text
            return served_probabilities(answer.json())

        def states() -> list[tuple[str, str]]:
            status = test_client.get("/v1/models/digits").json()["model_version_status"]
            return [(item["version"], item["state"]) for item in status]

        assert poller.poll() == [] and states() == [("1", "AVAILABLE")]
        shutil.copytree(exports / NET / "1", base / "2")
        assert poller.poll() == [("digits", 2)]
        assert states() == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
        np.testing.assert_allclose(served_now(), net, atol=1e-6)
        np.testing.assert_array_equal(served_now("/versions/1"), knn)
        assert loaded == [f"digits: serving version 2 ({base.resolve() / '2'})"]

        # A damaged version 3: told once, reported as TensorFlow Serving reports it, and
        # version 2 goes on serving.
        shutil.copytree(exports / KNN / "1", base / "3")
        (base / "3" / "model.skops").write_bytes(b"not a model")
        assert poller.poll() == [] and poller.poll() == []
        assert len(warnings) == 1 and warnings[0].startswith(
            "digits: version 3 not loaded, version 2 still serving: "
        )
        assert states() == [("3", "END"), ("2", "AVAILABLE"), ("1", "AVAILABLE")]
        (failed,) = test_client.get("/v1/models/digits/versions/3").json()["model_version_status"]
        assert failed["status"]["error_code"] == "UNKNOWN" and failed["status"]["error_message"]
        np.testing.assert_allclose(served_now(), net, atol=1e-6)
        assert test_client.get("/api/models").json()["models"][0]["version"] == 2

        # Repaired, it is tried again.
        shutil.copy(exports / KNN / "1" / "model.skops", base / "3" / "model.skops")
        assert poller.poll() == [("digits", 3)]
        assert states()[0] == ("3", "AVAILABLE")
        np.testing.assert_array_equal(served_now(), knn)


def test_a_version_folder_named_alone_is_not_watched(exports):
    served = load_models([exports / MIXED / "1"], progress=quiet)
    assert served[MIXED].base is None and served[MIXED].folder == (exports / MIXED / "1").resolve()
    assert VersionPoller(served).poll() == []
    assert served[MIXED].versions.keys() == {1}


@pytest.mark.slow
def test_a_running_server_picks_up_a_new_version_without_a_restart(exports, rows, tmp_path):
    base = tmp_path / "digits"
    shutil.copytree(exports / KNN / "1", base / "1")
    net = load_export(exports / NET).predict_proba(rows[:4])[0]
    process, url = start_server(base, "--poll-seconds", "0.2", "--collect", tmp_path / "c.csv")

    def status() -> list[tuple[str, str]]:
        with urllib.request.urlopen(f"{url}v1/models/digits", timeout=30) as response:
            answer = json.load(response)["model_version_status"]
        return [(item["version"], item["state"]) for item in answer]

    def wait_for(version: str) -> None:
        deadline = time.monotonic() + 60
        while status()[0][0] != version:
            assert time.monotonic() < deadline, status()
            time.sleep(0.1)

    try:
        assert status() == [("1", "AVAILABLE")]
        shutil.copytree(exports / NET / "1", base / "2")
        wait_for("2")
        assert status() == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
        answer = post_json(f"{url}v1/models/digits:predict", {"instances": rows[:4].tolist()})
        np.testing.assert_allclose(served_probabilities(answer), net, atol=1e-6)
        (base / "3").mkdir()
        (base / "3" / "metadata.json").write_text("{")
        wait_for("3")
        assert status()[:2] == [("3", "END"), ("2", "AVAILABLE")]
        answer = post_json(f"{url}v1/models/digits:predict", {"instances": rows[:4].tolist()})
        np.testing.assert_allclose(served_probabilities(answer), net, atol=1e-6)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    out = process.startup + out
    assert "digits: serving version 2" in out and "looked for every 0.2 s" in out
    assert err.count("version 3 not loaded, version 2 still serving") == 1, err
    assert "Traceback" not in err
