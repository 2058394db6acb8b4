"""Tests of the leaderboard: merge, rank, columns, atomic writes, rendering and its command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from digits_zoo.leaderboard import (
    COLUMNS,
    format_table,
    merge_rows,
    rank_rows,
    read_leaderboard,
    render,
    to_csv,
)
from digits_zoo.rundir import LEADERBOARD
from digits_zoo.trial_rows import leaderboard_name
from helpers import read_csv
from zoo.errors import ZooError
from zoo.files import atomic_write_text


def make_row(model: str, cv: float, test: float = 0.9, **extra) -> dict:
    """A leaderboard row as the protocol and the run make one."""
    return {
        "model": model,
        "kind": "sklearn",
        "cv_accuracy_mean": cv,
        "cv_accuracy_std": 0.01,
        "test_accuracy": test,
        "test_macro_f1": test - 0.01,
        "fit_seconds": 0.25,
        "predict_seconds_per_1000": 0.0004,
        "params": 1234,
        "config": json.dumps({"n_neighbors": 3, "weights": "distance"}, sort_keys=True),
        "cv_folds": json.dumps([cv, cv]),
        "source": "baselines",
        "model_path": f"models/{model}.skops",
        **extra,
    }


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def board_dir(tmp_path) -> Path:
    """A run directory whose leaderboard holds three rows."""
    merge_rows(tmp_path, [make_row("knn_k1", 0.95), make_row("decision_tree", 0.80)])
    merge_rows(tmp_path, [make_row("svc_rbf", 0.98, test=0.97)])
    return tmp_path


# Merge and rank -----------------------------------------------------------------------------


def test_merge_keeps_other_rows_and_replaces_rows_of_the_same_name(board_dir):
    rows = read_leaderboard(board_dir)
    assert [row["model"] for row in rows] == ["svc_rbf", "knn_k1", "decision_tree"]
    merged = merge_rows(board_dir, [make_row("knn_k1", 0.99, test=0.5), make_row("new", 0.5)])
    assert [row["model"] for row in merged] == ["knn_k1", "svc_rbf", "decision_tree", "new"]
    rows = read_leaderboard(board_dir)
    assert [row["model"] for row in rows] == [row["model"] for row in merged]
    knn = [row for row in rows if row["model"] == "knn_k1"]
    assert len(knn) == 1 and knn[0]["cv_accuracy_mean"] == 0.99 and knn[0]["test_accuracy"] == 0.5
    assert files_in(board_dir) == [LEADERBOARD]


def test_rank_orders_by_cv_then_test_accuracy_then_name():
    rows = [
        make_row("b", 0.9, test=0.8),
        make_row("a", 0.9, test=0.8),
        make_row("c", 0.9, test=0.95),
        make_row("d", 0.95, test=0.1),
        make_row("e", 0.1, test=1.0),
    ]
    ranked = rank_rows(rows)
    assert [(row["rank"], row["model"]) for row in ranked] == [
        (1, "d"),
        (2, "c"),
        (3, "a"),
        (4, "b"),
        (5, "e"),
    ]
    assert "rank" not in rows[0]


def test_read_leaderboard_parses_numbers_and_keeps_text(board_dir):
    row = read_leaderboard(board_dir)[0]
    assert row["rank"] == 1 and type(row["rank"]) is int
    assert row["params"] == 1234 and type(row["params"]) is int
    assert row["cv_accuracy_mean"] == 0.98 and row["predict_seconds_per_1000"] == 0.0004
    assert json.loads(row["config"]) == {"n_neighbors": 3, "weights": "distance"}
    assert json.loads(row["cv_folds"]) == [0.98, 0.98]
    assert row["source"] == "baselines" and row["model_path"] == "models/svc_rbf.skops"


def test_read_leaderboard_without_a_file_is_a_zoo_error(tmp_path):
    with pytest.raises(ZooError, match="no leaderboard in .*; run digits-zoo baselines or search"):
        read_leaderboard(tmp_path)


# Columns ------------------------------------------------------------------------------------


def test_csv_columns_are_the_documented_ones_in_order(board_dir):
    assert COLUMNS == [
        "rank",
        "model",
        "kind",
        "cv_accuracy_mean",
        "cv_accuracy_std",
        "test_accuracy",
        "test_macro_f1",
        "test_ece",
        "fit_seconds",
        "predict_seconds_per_1000",
        "params",
        "config",
        "cv_folds",
        "source",
        "model_path",
    ]
    header, rows = read_csv(board_dir / LEADERBOARD)
    assert header == COLUMNS
    assert [row["rank"] for row in rows] == ["1", "2", "3"]


def test_extra_columns_come_after_the_documented_ones(tmp_path):
    merge_rows(tmp_path, [make_row("a", 0.5, zeta="z", alpha="a")])
    header, rows = read_csv(tmp_path / LEADERBOARD)
    assert header == [*COLUMNS, "alpha", "zeta"]
    assert rows[0]["alpha"] == "a"


def test_numbers_are_written_short_and_exact_enough():
    text = to_csv(rank_rows([make_row("a", 0.123456789, fit_seconds=2.0)]))
    _, row = text.splitlines()
    assert ",0.123457," in row and ",2," in row and ",0.0004," in row


# Atomic writes ------------------------------------------------------------------------------


class Unprintable:
    """A value whose text cannot be made, to break a write half-way (a test helper)."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this value")


def test_a_failed_merge_leaves_the_old_leaderboard_and_no_temporary_file(board_dir):
    before = (board_dir / LEADERBOARD).read_bytes()
    with pytest.raises(RuntimeError, match="no text for this value"):
        merge_rows(board_dir, [make_row("broken", 0.99, config=Unprintable())])
    assert (board_dir / LEADERBOARD).read_bytes() == before
    assert files_in(board_dir) == [LEADERBOARD]


def test_atomic_write_failing_mid_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "old\n")
    # A lone surrogate cannot be encoded: the write fails after the temporary file exists.
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "new " + "\ud800")
    assert path.read_text() == "old\n"
    assert files_in(tmp_path) == ["file.txt"]


def test_atomic_write_replaces_and_creates_folders(tmp_path):
    path = tmp_path / "deep" / "er" / "file.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert files_in(path.parent) == ["file.txt"]
    assert path.stat().st_mode & 0o777 == 0o644


# Rendering ----------------------------------------------------------------------------------


def test_render_table_csv_and_json(board_dir):
    rows = read_leaderboard(board_dir)
    table = render(rows, "table")
    assert table == format_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["rank", "model", "kind"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:4] == ["1", "svc_rbf", "sklearn", "0.9800"]
    assert len(lines) == 2 + len(rows)
    text = render(rows, "csv")
    assert text.splitlines()[0] == ",".join(COLUMNS) and not text.endswith("\n")
    assert list(csv.DictReader(text.splitlines()))[2]["model"] == "decision_tree"
    assert json.loads(render(rows, "json")) == rows


def test_render_refuses_an_unknown_format(board_dir):
    with pytest.raises(ZooError, match=r"--format must be table, csv or json \(got 'xml'\)"):
        render(read_leaderboard(board_dir), "xml")


# The leaderboard command --------------------------------------------------------------------


def test_leaderboard_command_prints_the_table(board_dir, cli):
    status, out, err = cli("leaderboard", board_dir)
    assert status == 0 and err == ""
    assert out == format_table(read_leaderboard(board_dir)) + "\n"


def test_leaderboard_command_top_and_formats(board_dir, cli):
    status, out, _ = cli("leaderboard", board_dir, "--top", "2", "--format", "csv")
    assert status == 0
    header, *lines = out.splitlines()
    assert header == ",".join(COLUMNS) and len(lines) == 2
    status, out, _ = cli("leaderboard", board_dir, "--format", "json", "--top", "1")
    assert status == 0
    assert [row["model"] for row in json.loads(out)] == ["svc_rbf"]
    status, out, _ = cli("leaderboard", board_dir, "--top", "10")
    assert status == 0 and len(out.splitlines()) == 2 + 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--top", "0"], "--top must be at least 1 (got 0)"),
        (["--top", "two"], "argument --top: invalid int value: 'two'"),
        (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
    ],
)
def test_leaderboard_command_errors(board_dir, cli_error, argv, message):
    cli_error("leaderboard", board_dir, *argv, match=message)


def test_leaderboard_command_on_a_folder_without_one(tmp_path, cli_error):
    cli_error("leaderboard", tmp_path, match="no leaderboard in")


@pytest.mark.parametrize(
    "content", ["", "hello\nworld\n", "model,score\nknn,0.9\n"], ids=["empty", "text", "foreign"]
)
def test_leaderboard_command_on_a_file_that_is_not_a_leaderboard(tmp_path, cli_error, content):
    (tmp_path / LEADERBOARD).write_text(content)
    cli_error("leaderboard", tmp_path, match=str(tmp_path / LEADERBOARD))


def test_a_damaged_number_in_the_leaderboard_is_a_one_line_error(board_dir, cli_error):
    path = board_dir / LEADERBOARD
    path.write_text(path.read_text().replace("0.98", "n/a", 1))
    cli_error("leaderboard", board_dir, match=str(path))


def test_a_trials_leaderboard_name_spells_its_network_shape():
    trial = {"trial_id": "random_0", "n_layers": 1, "units": 16, "activation": "relu"}
    assert leaderboard_name(trial) == "search_random_0_1x16_relu"
    assert leaderboard_name({**trial, "conv_filters": 0}) == "search_random_0_1x16_relu"
    assert leaderboard_name({**trial, "conv_filters": 64}) == "search_random_0_conv64_1x16_relu"
    # As trials.csv gives them back: text, empty where a trial had no such hyperparameter.
    assert leaderboard_name({**trial, "conv_filters": "0"}) == "search_random_0_1x16_relu"
    assert leaderboard_name({**trial, "conv_filters": ""}) == "search_random_0_1x16_relu"
    assert leaderboard_name({**trial, "conv_filters": "64"}) == "search_random_0_conv64_1x16_relu"
    assert leaderboard_name({"trial_id": "random_svc_3", "family": "svc"}) == "search_random_svc_3"
