"""Temperature scaling and calibration error, and where they reach: leaderboard, export, CLI."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from digits_zoo import cli
from digits_zoo.leaderboard import COLUMNS, merge_rows, read_leaderboard, to_csv
from digits_zoo.runs import load_run
from digits_zoo.ship.export import export_run
from digits_zoo.ship.layout import METADATA
from digits_zoo.ship.load import calibrated as load_calibrated
from digits_zoo.ship.load import load_export
from digits_zoo.ship.rows import row_temperature, stranger_copies
from helpers import copy_run
from zoo.calibration import (
    StrangerCalibration,
    accuracy_at_coverage,
    apply_temperature,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
)
from zoo.errors import ZooError

CLASSES = np.arange(10)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def calibrated_sample(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probabilities = softmax(rng.normal(scale=3.0, size=(n, 10)))
    cumulative = probabilities.cumsum(axis=1)
    y = (rng.random((n, 1)) > cumulative).sum(axis=1)
    return probabilities, np.minimum(y, 9)


# Calibration error and temperature --------------------------------------------------------


def test_calibrated_probabilities_have_almost_no_calibration_error():
    probabilities, y = calibrated_sample()
    assert expected_calibration_error(probabilities, y, CLASSES) < 0.02


def test_overconfident_probabilities_have_the_known_calibration_error():
    # Every row says 0.9 for its top class; only 60 of 100 are right: ECE is 0.9 - 0.6.
    probabilities = np.full((100, 10), 0.1 / 9)
    probabilities[:, 0] = 0.9
    y = np.where(np.arange(100) < 60, 0, 1)
    assert expected_calibration_error(probabilities, y, CLASSES) == pytest.approx(0.3)
    # Two bins: 50 rows at 0.95 all right (gap 0.05), 50 at 0.55 half right (gap 0.05).
    probabilities[50:, 0] = 0.55
    probabilities[50:, 1:] = 0.45 / 9
    probabilities[:50, 0] = 0.95
    probabilities[:50, 1:] = 0.05 / 9
    y = np.where((np.arange(100) < 50) | (np.arange(100) % 2 == 0), 0, 1)
    assert expected_calibration_error(probabilities, y, CLASSES) == pytest.approx(0.05)


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_the_fit_recovers_a_known_temperature(temperature):
    # Calibrated probabilities sharpened (T < 1) or softened (T > 1) by 1/T: the fit undoes it.
    probabilities, y = calibrated_sample(seed=1)
    distorted = apply_temperature(probabilities, 1 / temperature)
    fitted = fit_temperature(distorted, y, CLASSES)
    assert fitted == pytest.approx(temperature, rel=0.05)
    before = expected_calibration_error(distorted, y, CLASSES)
    after = expected_calibration_error(apply_temperature(distorted, fitted), y, CLASSES)
    assert after < before and after < 0.02


def test_the_temperature_never_changes_the_most_probable_class():
    probabilities, _ = calibrated_sample(n=2000)
    for temperature in (0.1, 0.7, 1.0, 3.0, 15.0):
        scaled = apply_temperature(probabilities, temperature)
        assert np.array_equal(scaled.argmax(axis=1), probabilities.argmax(axis=1))
        assert np.allclose(scaled.sum(axis=1), 1.0)
    assert apply_temperature(probabilities, 1.0) is probabilities
    with pytest.raises(ZooError, match="positive"):
        apply_temperature(probabilities, 0.0)


def test_accuracy_at_coverage_answers_the_confident_rows_only():
    probabilities = np.full((4, 10), 0.0)
    probabilities[:, 0] = [0.95, 0.9, 0.6, 0.5]
    probabilities[:, 1] = 1 - probabilities[:, 0]
    y = np.array([0, 0, 1, 1])
    covered = accuracy_at_coverage(probabilities, y, CLASSES, 0.9)
    assert covered["answered"] == 2 and covered["coverage"] == 0.5 and covered["accuracy"] == 1.0
    coverage, accuracy = coverage_curve(probabilities, y, CLASSES)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0] and accuracy[-1] == 0.5


# A real small search: leaderboard column, export, predict and evaluate --------------------


@pytest.fixture(scope="module")
def run_dir(shared_run, tmp_path_factory) -> Path:
    """A two-trial search (with its ensemble) on the bundled digits.

    A copy of the shared small run: this module's export is written into it.
    """
    return copy_run(shared_run(search_trials=2), tmp_path_factory.mktemp("calibration_run"))


@pytest.fixture(scope="module")
def network_export(run_dir) -> Path:
    """The export of the best searched network (not the ensemble)."""
    row = next(r for r in read_leaderboard(run_dir) if r["model"].startswith("search_"))
    return export_run(run_dir, model=row["model"], progress=lambda line: None).path


def test_every_leaderboard_row_has_its_test_calibration_error(run_dir):
    rows = read_leaderboard(run_dir)
    assert any(row["model"].startswith("ensemble_") for row in rows)
    assert all(0.0 <= row["test_ece"] <= 1.0 for row in rows)
    header = (run_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header.index("test_ece") == header.index("test_macro_f1") + 1
    assert "test_ece" in COLUMNS


def test_a_leaderboard_from_before_test_ece_still_reads_and_merges(run_dir, tmp_path):
    rows = read_leaderboard(run_dir)
    # The file as the tool wrote it before the column existed.
    with open(tmp_path / "leaderboard.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        for cells in csv.reader(io.StringIO(to_csv(rows))):
            writer.writerow(cells[:7] + cells[8:])
    assert "test_ece" not in (tmp_path / "leaderboard.csv").read_text().splitlines()[0]
    assert all("test_ece" not in row for row in read_leaderboard(tmp_path))
    merged = merge_rows(tmp_path, [{**rows[0], "model": "newer", "test_ece": 0.25}])
    header = (tmp_path / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header == COLUMNS
    assert {row["model"]: row.get("test_ece", "") for row in read_leaderboard(tmp_path)} == {
        row["model"]: 0.25 if row["model"] == "newer" else "" for row in merged
    }


def test_networks_and_ensembles_get_a_temperature_from_out_of_fold_probabilities(run_dir):
    run = load_run(run_dir)
    for row in read_leaderboard(run_dir):
        calibration = row_temperature(run, row)
        assert calibration["temperature"] > 0 and calibration["temperature"] != 1.0
        config = json.loads(row["config"])
        members = config["trials"] if row["model"].startswith("ensemble_") else [None]
        assert len(calibration["trials"]) == len(members)
        assert calibration["oof_ece_after"] <= calibration["oof_ece_before"] + 1e-9


def test_an_exported_network_stores_and_applies_its_temperature(run_dir, network_export):
    metadata = json.loads((network_export / METADATA).read_text())
    temperature = metadata["temperature"]
    assert temperature > 0 and temperature != 1.0
    assert {"test_ece_before", "test_ece_after", "oof_ece_before"} <= set(metadata["calibration"])
    export = load_export(network_export)
    x_test = load_run(run_dir).dataset.x_test[:50]
    calibrated, classes = export.predict_proba(x_test)
    raw, raw_classes = export._predict_raw(x_test)
    assert np.array_equal(classes, raw_classes)
    expected = load_calibrated(metadata, raw, x_test)
    assert np.allclose(calibrated, expected, atol=1e-6)
    assert not np.allclose(calibrated, raw, atol=1e-3)


def test_handwriting_copies_of_the_training_rows_read_worse_and_are_seeded(run_dir):
    from sklearn.linear_model import LogisticRegression

    dataset = load_run(run_dir).dataset
    x, y = dataset.scale(dataset.x_train), dataset.y_train
    model = LogisticRegression(max_iter=500).fit(x, y)
    copies = stranger_copies(dataset, seed=0)
    assert copies.shape == dataset.x_train.shape
    assert copies.min() >= 0 and copies.max() <= dataset.pixel_max + 1e-4
    # Written as other hands might: read worse than the rows themselves, yet above chance.
    read = float(np.mean(model.predict(dataset.scale(copies)) == y))
    assert 0.2 < read < float(np.mean(model.predict(x) == y)) - 0.02
    np.testing.assert_array_equal(copies, stranger_copies(dataset, seed=0))
    assert not np.array_equal(copies, stranger_copies(dataset, seed=1))
    # Rows that are not square images have no copies.
    flat = replace(dataset, x_train=dataset.x_train[:, :60], image_shape=(60,))
    assert stranger_copies(flat, seed=0) is None


def _gate_sample(seed: int = 0):
    """Rows near two class means, read right and surely; copies far from them, often misread
    yet as sure."""
    rng = np.random.default_rng(seed)
    classes = np.array([0, 1])
    means = np.array([[0.0] * 8, [1.0] * 8])
    y = rng.integers(0, 2, 2000)
    x = means[y] + rng.normal(0, 0.1, (2000, 8))
    x_copies = means[y] + rng.normal(0, 0.6, (2000, 8))
    sure = np.where(np.arange(2)[None, :] == y[:, None], 0.97, 0.03)
    wrong = rng.random(2000) < 0.3
    copies_probabilities = np.where(wrong[:, None], sure[:, ::-1], sure)
    return classes, x, y, x_copies, copies_probabilities


def test_stranger_calibration_softens_only_what_lies_far_from_the_training_rows():
    classes, x, y, x_copies, copies_probabilities = _gate_sample()
    stranger = StrangerCalibration.fit(x, y, x_copies, copies_probabilities, y, classes)
    # 70% right at 97% sure: the strangers' temperature softens.
    assert stranger.temperature > 1.5
    assert stranger.weights(x).mean() < 0.3 < 0.7 < stranger.weights(x_copies).mean()
    own = np.where(np.arange(2)[None, :] == y[:, None], 0.97, 0.03)
    near = stranger.apply(own, x, 0.5)
    far = stranger.apply(copies_probabilities, x_copies, 0.5)
    np.testing.assert_array_equal(near.argmax(axis=1), own.argmax(axis=1))
    np.testing.assert_array_equal(far.argmax(axis=1), copies_probabilities.argmax(axis=1))
    assert near.max(axis=1).mean() > 0.97 > 0.9 > far.max(axis=1).mean()
    assert expected_calibration_error(far, y, classes) < 0.5 * expected_calibration_error(
        copies_probabilities, y, classes
    )
    # Written to metadata and read back exactly enough.
    again = StrangerCalibration.from_dict(json.loads(json.dumps(stranger.to_dict())), 2, 8)
    np.testing.assert_allclose(again.apply(own, x, 0.5), near, atol=1e-5)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.0},
        {"temperature": float("nan")},
        {"coef": "1"},
        {"coef": True},
        {"means": [[0.0] * 8]},
        {"means": [[0.0] * 8, [float("inf")] * 8]},
        {"means": "none"},
        {"extra": 1},
    ],
)
def test_a_damaged_stranger_calibration_is_refused(change):
    classes, x, y, x_copies, copies_probabilities = _gate_sample()
    values = StrangerCalibration.fit(x, y, x_copies, copies_probabilities, y, classes).to_dict()
    with pytest.raises(ZooError, match="stranger|temperature"):
        StrangerCalibration.from_dict({**values, **change}, 2, 8)


def test_an_export_calibrates_strangers_digits_with_their_own_temperature(
    run_dir, network_export, tmp_path
):
    metadata = json.loads((network_export / METADATA).read_text())
    calibration = metadata["calibration"]
    assert "handwriting copy" in calibration["fitted_on"]
    assert 0.0 < calibration["copies_accuracy"] < 1.0
    assert {"copies_ece_before", "copies_ece_after"} <= set(calibration)
    # The temperature of the training writers is the out-of-fold one, as before.
    run = load_run(run_dir)
    row = next(r for r in read_leaderboard(run_dir) if r["model"] == metadata["model"])
    assert metadata["temperature"] == pytest.approx(row_temperature(run, row)["temperature"])
    stranger = StrangerCalibration.from_dict(
        metadata["stranger_calibration"], len(metadata["classes"]), 64
    )
    export = load_export(network_export)
    rows = np.concatenate([run.dataset.x_test[:20], stranger_copies(run.dataset, seed=5)[:20]])
    probabilities, _ = export.predict_proba(rows)
    raw, _ = export._predict_raw(rows)
    np.testing.assert_allclose(
        probabilities,
        stranger.apply(raw, rows / run.dataset.pixel_max, metadata["temperature"]),
        atol=1e-5,
    )
    # Tampered with, it is refused in one line when loaded.
    tampered = tmp_path / "tampered"
    shutil.copytree(network_export, tampered)
    changed = {
        **metadata,
        "stranger_calibration": {**metadata["stranger_calibration"], "means": []},
    }
    (tampered / METADATA).write_text(json.dumps(changed))
    with pytest.raises(ZooError, match="stranger_calibration"):
        load_export(tampered)


def test_predict_and_evaluate_answer_unsure_below_min_confidence(
    run_dir, network_export, tmp_path, capsys
):
    dataset = load_run(run_dir).dataset
    rows = tmp_path / "rows.npy"
    np.save(rows, dataset.x_test[:20].astype("float32"))
    export = load_export(network_export)
    calibrated, _ = export.predict_proba(dataset.x_test[:20])
    assert cli.main(["predict", str(network_export), str(rows), "--format", "json"]) == 0
    shown = [item["probability"] for item in json.loads(capsys.readouterr().out)]
    assert np.allclose(shown, calibrated.max(axis=1), atol=1e-6)

    threshold = float(np.median(calibrated.max(axis=1)))
    argv = ["predict", str(network_export), str(rows), "--min-confidence", str(threshold)]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    unsure = [line for line in lines if "unsure" in line]
    assert len(unsure) == int(np.sum(calibrated.max(axis=1) < threshold)) > 0

    table = tmp_path / "test.csv"
    labelled = np.column_stack([dataset.x_test, dataset.y_test]).astype(int)
    np.savetxt(table, labelled, fmt="%d", delimiter=",")
    argv = ["evaluate", str(network_export), "--data", str(table), "--min-confidence", "0.5"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "at confidence >= 0.5: answers " in text and "unsure" in text
    assert cli.main(["predict", str(network_export), str(rows), "--min-confidence", "2"]) == 2
    assert "--min-confidence must be a probability" in capsys.readouterr().err
