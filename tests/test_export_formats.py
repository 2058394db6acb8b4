"""ONNX and LiteRT exports: written, verified by their own runtimes, loaded by predict and evaluate.

One small real run (two baselines, a two-trial search and its ensemble) is
exported in every format its rows can have. The network and the ensemble
exports convert through Keras on TensorFlow in a child process (about half a
minute each on 2 cores), so the tests that need them are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digits_zoo.artifacts import load_fitted
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.runs import load_run
from digits_zoo.ship import export as export_module
from digits_zoo.ship.export import (
    QUANTIZED_TOLERANCE,
    TOLERANCE,
    export_run,
    portable_formats,
)
from digits_zoo.ship.layout import METADATA
from digits_zoo.ship.load import load_export
from zoo import ZooError

SKLEARN_MODEL = "svc_rbf"


@pytest.fixture(scope="module")
def run_dir(shared_run) -> Path:
    """Two baselines, two searched networks and their ensemble, on the bundled digits."""
    return shared_run(search_trials=2, baselines=["knn_k1", SKLEARN_MODEL])


@pytest.fixture(scope="module")
def rows(run_dir) -> dict[str, dict]:
    """The leaderboard's rows by model name."""
    return {row["model"]: row for row in read_leaderboard(run_dir)}


@pytest.fixture(scope="module")
def network_export(run_dir, rows, tmp_path_factory) -> Path:
    """The best searched network in every format: SavedModel, ONNX and LiteRT (float), version 1."""
    out = tmp_path_factory.mktemp("exports") / "network"
    # By name: the greedy ensemble ranks at or above its best member, so it may be the
    # best Keras row.
    name = next(name for name in rows if name.startswith("search_"))
    return export_run(run_dir, model=name, out=out, format="all", progress=lambda line: None).path


@pytest.fixture(scope="module")
def ensemble_export(run_dir, rows, tmp_path_factory) -> Path:
    """The search's ensemble as SavedModel, ONNX and LiteRT with int8 weights."""
    name = next(name for name in rows if name.startswith("ensemble_"))
    out = tmp_path_factory.mktemp("exports") / "ensemble"
    result = export_run(
        run_dir, model=name, out=out, format="all", quantize=True, progress=lambda line: None
    )
    return result.path


@pytest.fixture(scope="module")
def sklearn_export(run_dir, tmp_path_factory) -> Path:
    """The SVC as skops and ONNX, version 1, exported through the command line."""
    from digits_zoo.cli import main

    out = tmp_path_factory.mktemp("exports") / SKLEARN_MODEL
    argv = ["export", run_dir, "--model", SKLEARN_MODEL, "--format", "onnx", "--out", out]
    assert main([str(arg) for arg in argv]) == 0
    return out / "1"


@pytest.fixture(scope="module")
def test_split(run_dir, tmp_path_factory) -> tuple[np.ndarray, np.ndarray, Path]:
    """The run's held-out test split: raw pixels, labels, and the same as an optdigits CSV."""
    dataset = load_run(run_dir).dataset
    path = tmp_path_factory.mktemp("data") / "test.csv"
    np.savetxt(path, np.column_stack([dataset.x_test, dataset.y_test]), fmt="%d", delimiter=",")
    return dataset.x_test.astype("float32"), dataset.y_test, path


def in_memory(run_dir: Path, rows: dict, name: str, x_raw: np.ndarray):
    """The run's fitted model's probabilities and classes on raw pixels."""
    model = load_fitted(run_dir / rows[name]["model_path"])
    scaled = load_run(run_dir).dataset.scale(x_raw)
    return np.asarray(model.predict_proba(scaled)), np.asarray(model.predict(scaled))


def run_onnx(path: Path, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The README's plain onnxruntime code: raw pixels in, probabilities and classes out."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    classes, probabilities = session.run(["class", "probabilities"], {"pixels": x_raw})
    return probabilities, classes


def run_litert(path: Path, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The README's plain LiteRT code."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    outputs = runner(pixels=x_raw)
    return outputs["probabilities"], outputs["class"]


def metadata(version: Path) -> dict:
    return json.loads((version / METADATA).read_text())


# The formats a row can have ------------------------------------------------------------------


def test_format_choices_per_kind_of_model():
    assert portable_formats("savedmodel", network=True, name="n") == ()
    assert portable_formats("all", network=True, name="n") == ("onnx", "litert")
    assert portable_formats("all", network=False, name="s") == ("onnx",)
    assert portable_formats("litert", network=True, name="n", quantize=True) == ("litert",)
    with pytest.raises(ZooError, match="LiteRT export is for networks only .* --format onnx"):
        portable_formats("litert", network=False, name="svc_rbf")
    with pytest.raises(ZooError, match="--quantize .* pass --format litert or all"):
        portable_formats("onnx", network=True, name="n", quantize=True)
    with pytest.raises(ZooError, match="--quantize .* drop --quantize"):
        portable_formats("all", network=False, name="s", quantize=True)
    with pytest.raises(ZooError, match="--format must be one of"):
        portable_formats("tflite", network=True, name="n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", SKLEARN_MODEL, "--format", "litert"],
            "LiteRT export is for networks only (got svc_rbf, a scikit-learn model); export "
            "it with --format onnx",
        ),
        (["--format", "onnx", "--quantize"], "pass --format litert or all"),
        (["--model", "knn_k1", "--format", "all", "--quantize"], "drop --quantize"),
    ],
)
def test_formats_a_row_cannot_have_are_refused_in_one_line(
    run_dir, tmp_path, cli_error, argv, message
):
    cli_error("export", run_dir, *argv, "--out", tmp_path / "out", match=message)
    assert not (tmp_path / "out").exists()


def test_all_gives_a_sklearn_row_onnx_beside_its_skops_file(run_dir, tmp_path, cli):
    status, out, err = cli(
        "export", run_dir, "--model", "knn_k1", "--format", "all", "--out", tmp_path
    )
    assert status == 0, err
    assert "writes ONNX, not LiteRT" in out and "ONNX: model.onnx" in out
    assert sorted(p.name for p in (tmp_path / "1").iterdir()) == [
        METADATA,
        "model.onnx",
        "model.skops",
    ]


# Round trips ------------------------------------------------------------------------------------


def test_sklearn_onnx_round_trip(run_dir, rows, sklearn_export, test_split):
    x, _, _ = test_split
    recorded = metadata(sklearn_export)
    assert recorded["format"] == "skops" and list(recorded["formats"]) == ["skops", "onnx"]
    onnx_record = recorded["formats"]["onnx"]
    data = (sklearn_export / "model.onnx").read_bytes()
    assert onnx_record["sha256"] == hashlib.sha256(data).hexdigest()
    assert onnx_record["converter"].startswith("skl2onnx ")
    assert onnx_record["verification"]["classes_equal"] is True
    assert onnx_record["verification"]["max_probability_difference"] <= TOLERANCE
    # Plain onnxruntime, raw pixels in: the scaling is inside the file.
    probabilities, classes = run_onnx(sklearn_export / "model.onnx", x)
    expected_probabilities, expected_classes = in_memory(run_dir, rows, SKLEARN_MODEL, x)
    np.testing.assert_array_equal(classes, expected_classes)
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=TOLERANCE, rtol=0)
    assert classes.dtype == np.int64 and probabilities.dtype == np.float32


@pytest.mark.slow
def test_network_round_trip_in_every_format(run_dir, rows, network_export, test_split):
    x, _, _ = test_split
    recorded = metadata(network_export)
    name = recorded["model"]
    assert rows[name]["kind"] == "keras" and not name.startswith("ensemble_")
    assert recorded["format"] == "tf_saved_model"
    assert list(recorded["formats"]) == ["tf_saved_model", "onnx", "litert"]
    assert (network_export / "saved_model.pb").is_file()
    assert recorded["formats"]["litert"]["quantization"] is None
    for record in recorded["formats"].values():
        assert record["verification"]["classes_equal"] is True
        assert record["verification"]["max_probability_difference"] <= TOLERANCE
    expected_probabilities, expected_classes = in_memory(run_dir, rows, name, x)
    for run_file, file in ((run_onnx, "model.onnx"), (run_litert, "model.tflite")):
        probabilities, classes = run_file(network_export / file, x)
        np.testing.assert_array_equal(classes, expected_classes)
        np.testing.assert_allclose(probabilities, expected_probabilities, atol=TOLERANCE, rtol=0)
        loaded = load_export(network_export / file)
        empty_probabilities, empty_classes = loaded.predict_proba(np.zeros((0, 64), "float32"))
        assert empty_probabilities.shape == (0, 10) and empty_classes.shape == (0,)
        np.testing.assert_array_equal(loaded.predict_proba(x[:1])[1], expected_classes[:1])


@pytest.mark.slow
def test_ensemble_round_trip_with_int8_litert(run_dir, rows, ensemble_export, test_split):
    x, y, _ = test_split
    recorded = metadata(ensemble_export)
    name = recorded["model"]
    litert = recorded["formats"]["litert"]
    assert litert["quantization"] == "dynamic_range_int8"
    check = litert["verification"]
    assert check["tolerance"] == QUANTIZED_TOLERANCE
    assert check["max_probability_difference"] <= QUANTIZED_TOLERANCE
    assert check["accuracy_change"] == pytest.approx(
        check["test_accuracy"] - rows[name]["test_accuracy"], abs=1e-6
    )
    expected_probabilities, expected_classes = in_memory(run_dir, rows, name, x)
    probabilities, classes = run_onnx(ensemble_export / "model.onnx", x)
    np.testing.assert_array_equal(classes, expected_classes)
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=TOLERANCE, rtol=0)
    probabilities, classes = run_litert(ensemble_export / "model.tflite", x)
    assert np.abs(probabilities - expected_probabilities).max() <= QUANTIZED_TOLERANCE
    assert float(np.mean(classes == y)) == pytest.approx(check["test_accuracy"])


# Evaluate and predict load every format --------------------------------------------------------


def _check_evaluate(cli, path: Path, csv: Path, accuracy: float, label: str) -> None:
    status, out, err = cli("evaluate", path, "--data", csv)
    assert status == 0, err
    assert f"accuracy  {accuracy:.6f}" in out and f"{label})" in out.splitlines()[0]


def test_evaluate_reproduces_the_leaderboard_with_skops_and_onnx(
    rows, sklearn_export, test_split, cli
):
    _, _, csv = test_split
    accuracy = rows[SKLEARN_MODEL]["test_accuracy"]
    _check_evaluate(cli, sklearn_export, csv, accuracy, "skops file")
    _check_evaluate(cli, sklearn_export / "model.onnx", csv, accuracy, "ONNX")


@pytest.mark.slow
def test_evaluate_reproduces_the_leaderboard_in_every_network_format(
    rows, network_export, ensemble_export, test_split, cli
):
    _, _, csv = test_split
    accuracy = rows[metadata(network_export)["model"]]["test_accuracy"]
    _check_evaluate(cli, network_export.parent, csv, accuracy, "SavedModel")
    _check_evaluate(cli, network_export / "model.onnx", csv, accuracy, "ONNX")
    _check_evaluate(cli, network_export / "model.tflite", csv, accuracy, "LiteRT")
    recorded = metadata(ensemble_export)
    accuracy = rows[recorded["model"]]["test_accuracy"]
    _check_evaluate(cli, ensemble_export / "model.onnx", csv, accuracy, "ONNX")
    # The int8 file scores what its own check measured: the leaderboard's plus the change.
    quantized = recorded["formats"]["litert"]["verification"]["test_accuracy"]
    _check_evaluate(cli, ensemble_export / "model.tflite", csv, quantized, "LiteRT")


def test_predict_runs_the_file_it_is_given(sklearn_export, test_split, tmp_path, cli):
    x, _, _ = test_split
    np.save(tmp_path / "rows.npy", x[:4])
    answers = {}
    for path in (sklearn_export, sklearn_export / "model.onnx"):
        status, out, err = cli("predict", path, tmp_path / "rows.npy", "--format", "json")
        assert status == 0, err
        answers[path.name] = [result["class"] for result in json.loads(out)]
    assert answers["1"] == answers["model.onnx"]
    assert load_export(sklearn_export).format == "skops"
    assert load_export(sklearn_export, format="onnx").format == "onnx"
    with pytest.raises(ZooError, match="holds no LiteRT file"):
        load_export(sklearn_export, format="litert")


# Damaged files and failed checks ---------------------------------------------------------------


def _truncate(version: Path, file: str, tmp_path: Path, *, rechecksum: bool) -> Path:
    copy = tmp_path / "export" / "1"
    shutil.copytree(version, copy)
    data = (copy / file).read_bytes()
    (copy / file).write_bytes(data[: len(data) // 2])
    if rechecksum:
        # A file changed along with its recorded checksum: the runtime itself refuses it.
        recorded = metadata(copy)
        format_name = "onnx" if file.endswith(".onnx") else "litert"
        recorded["formats"][format_name]["sha256"] = hashlib.sha256(
            data[: len(data) // 2]
        ).hexdigest()
        (copy / METADATA).write_text(json.dumps(recorded))
    return copy / file


@pytest.mark.parametrize(
    ("rechecksum", "message"),
    [(False, "does not match the checksum"), (True, "onnxruntime cannot load")],
)
def test_a_truncated_onnx_file_is_refused_by_predict_in_one_line(
    sklearn_export, test_split, tmp_path, cli_error, rechecksum, message
):
    x, _, _ = test_split
    np.save(tmp_path / "rows.npy", x[:2])
    damaged = _truncate(sklearn_export, "model.onnx", tmp_path, rechecksum=rechecksum)
    cli_error("predict", damaged, tmp_path / "rows.npy", match=message)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rechecksum", "message"),
    [(False, "does not match the checksum"), (True, "LiteRT cannot load")],
)
def test_a_truncated_tflite_file_is_refused_by_predict_in_one_line(
    network_export, test_split, tmp_path, cli_error, rechecksum, message
):
    x, _, _ = test_split
    np.save(tmp_path / "rows.npy", x[:2])
    damaged = _truncate(network_export, "model.tflite", tmp_path, rechecksum=rechecksum)
    cli_error("predict", damaged, tmp_path / "rows.npy", match=message)


def test_an_onnx_file_that_reads_other_files_is_refused_before_it_runs(
    sklearn_export, test_split, tmp_path, cli_error, monkeypatch
):
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    copy = tmp_path / "export" / "1"
    shutil.copytree(sklearn_export, copy)
    model = onnx.load_model(str(copy / "model.onnx"))
    # Its tensors moved to a file beside it, as ONNX's external data.
    convert_model_to_external_data(model, location="weights.bin", size_threshold=0)
    onnx.save_model(model, str(copy / "model.onnx"))
    crafted = (copy / "model.onnx").read_bytes()
    recorded = metadata(copy)
    recorded["formats"]["onnx"]["sha256"] = hashlib.sha256(crafted).hexdigest()
    (copy / METADATA).write_text(json.dumps(recorded))
    x, _, _ = test_split
    np.save(tmp_path / "rows.npy", x[:2])
    # From bytes, ONNX Runtime would look for weights.bin in the working folder: here.
    monkeypatch.chdir(copy)
    cli_error("predict", copy / "model.onnx", tmp_path / "rows.npy", match="ONNX external data")


@pytest.mark.slow
def test_a_tflite_file_with_tensorflow_operators_is_refused_before_it_runs(
    network_export, test_split, tmp_path, cli_error
):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, 64), tf.float32, name="pixels")])
    def reads_a_file(pixels):
        # TensorFlow's own operators (Flex) can read files; LiteRT's builtins cannot.
        size = tf.cast(tf.strings.length(tf.io.read_file(str(tmp_path / "secret"))), tf.float32)
        return {"probabilities": pixels[:, :10] * 0 + size, "class": tf.argmax(pixels, axis=1)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [reads_a_file.get_concrete_function()], reads_a_file
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    crafted = converter.convert()
    copy = tmp_path / "export" / "1"
    shutil.copytree(network_export, copy)
    (copy / "model.tflite").write_bytes(crafted)
    recorded = metadata(copy)
    recorded["formats"]["litert"]["sha256"] = hashlib.sha256(crafted).hexdigest()
    (copy / METADATA).write_text(json.dumps(recorded))
    x, _, _ = test_split
    np.save(tmp_path / "rows.npy", x[:2])
    cli_error(
        "predict",
        copy / "model.tflite",
        tmp_path / "rows.npy",
        match="uses operators outside LiteRT's builtins (got FlexReadFile, FlexStringLength)",
    )


def test_a_file_that_disagrees_is_deleted_and_exits_2_with_the_difference(
    run_dir, tmp_path, cli_error, monkeypatch
):
    real_writer = export_module.write_sklearn_onnx

    def unscaled(estimator, path, *, pixel_max):
        # The classic shipping bug: the scaling inside the file is not the training scaling.
        return real_writer(estimator, path, pixel_max=1.0)

    monkeypatch.setattr(export_module, "write_sklearn_onnx", unscaled)
    out = tmp_path / "out"
    error = cli_error(
        "export",
        run_dir,
        "--model",
        "knn_k1",
        "--format",
        "onnx",
        "--out",
        out,
        match="the reloaded ONNX file (onnxruntime) disagrees with the in-memory model",
    )
    assert "largest probability difference 1" in error and "the export was deleted" in error
    assert list(out.iterdir()) == []
