"""Tests of export --refit-full: the chosen row refit on every labelled digit of the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from digits_zoo import cli
from digits_zoo.artifacts import save_fitted
from digits_zoo.leaderboard import merge_rows
from digits_zoo.runs import open_run
from digits_zoo.ship.adapt import adapt_export, export_training_data
from digits_zoo.ship.layout import METADATA
from digits_zoo.ship.load import load_export
from zoo import create_model
from zoo.data import load_optdigits
from zoo.protocol import evaluate_model

MODEL = "knn_k1"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run on the bundled digits with a 1-nearest-neighbour row on its leaderboard."""
    path = tmp_path_factory.mktemp("run")
    run = open_run(path, seed=0, n_folds=2)
    result = evaluate_model(MODEL, "sklearn", create_model(MODEL), run.dataset, run.folds)
    row = {**result.row(), "source": "baselines"}
    row["model_path"] = save_fitted(result.fitted, path, MODEL)
    merge_rows(path, [row])
    return path


def test_refit_full_trains_on_every_labelled_digit_and_says_its_test_figure_is_not_held_out(
    run_dir, tmp_path, capsys
):
    out = tmp_path / "export"
    assert cli.main(["export", str(run_dir), "--model", MODEL, "--out", str(out)]) == 0
    assert (
        cli.main(["export", str(run_dir), "--model", MODEL, "--out", str(out), "--refit-full"]) == 0
    )
    printed = capsys.readouterr().out
    assert "refitting it on all 1797 labelled digits (1437 training, 360 test)" in printed
    held_out = json.loads((out / "1" / METADATA).read_text())
    full = json.loads((out / "2" / METADATA).read_text())
    assert "refit_full" not in held_out and held_out["verification"]["test_held_out"] is True
    assert full["refit_full"] == {"rows": 1797, "training_rows": 1437, "test_rows": 360}
    assert full["verification"]["test_held_out"] is False
    assert full["dataset"]["n_train"] == 1797 and full["dataset"]["n_test"] == 360
    # One nearest neighbour that has seen the test digits reads them all: not a held-out figure.
    assert full["verification"]["test_accuracy"] == 1.0
    assert held_out["verification"]["test_accuracy"] < 1.0
    # The leaderboard's held-out figure stays in the scores.
    assert full["scores"]["test_accuracy"] == held_out["scores"]["test_accuracy"]
    # The refit model is the one shipped: it finds each training and test digit itself.
    export = load_export(out / "2")
    rebuilt = export_training_data(full)
    assert rebuilt.fingerprint() == full["dataset"]["fingerprint"]
    _, classes = export.predict_proba(rebuilt.x_train)
    np.testing.assert_array_equal(classes, rebuilt.y_train)


def test_an_export_refit_on_everything_can_still_be_adapted(run_dir, tmp_path):
    out = tmp_path / "export"
    assert (
        cli.main(["export", str(run_dir), "--model", MODEL, "--out", str(out), "--refit-full"]) == 0
    )
    other = load_optdigits()
    rows = np.concatenate([np.flatnonzero(other.y_train == label)[:12] for label in range(10)])
    digits = tmp_path / "collected.csv"
    np.savetxt(
        digits, np.column_stack([other.x_train[rows], other.y_train[rows]]), fmt="%d", delimiter=","
    )
    result = adapt_export(out, digits, progress=lambda line: None)
    assert result.n_person == 120 and result.method == "holdout"
    # Refit on the test digits, one nearest neighbour keeps reading them all.
    assert result.before.test == result.after.test == 1.0
    assert result.after.person >= result.before.person and result.written.version == 2
    metadata = json.loads((result.written.path / METADATA).read_text())
    assert metadata["refit_full"]["rows"] == 1797
    assert metadata["verification"]["test_held_out"] is False
    # 36 of the 120 held out to measure on, then all 120 trained on.
    assert metadata["dataset"]["n_train"] == 1797 + 120
    assert export_training_data(metadata).fingerprint() == metadata["dataset"]["fingerprint"]
