"""``digits-zoo report``: figures and index.html from real small runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digits_zoo import cli
from digits_zoo.baselines import run_baselines
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.report.figures.search import completed_trials
from digits_zoo.report.figures.style import new_figure
from digits_zoo.report.figures.sweeps import plot_sweep
from digits_zoo.report.report import (
    FIGURES,
    NO_SEARCH,
    _short_config,
    predict_test_split,
    write_report,
)
from digits_zoo.runs import open_run
from helpers import read_csv
from zoo.errors import ZooError
from zoo.space import DenseConfig

BASELINES = ["knn_k1", "decision_tree"]
BEST_MODEL_FIGURES = {
    "leaderboard.png",
    "confusion_matrix.png",
    "misclassified.png",
    "reliability.png",
    "coverage.png",
}


def _quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory) -> Path:
    """A run with two fast scikit-learn baselines and no search."""
    run_dir = tmp_path_factory.mktemp("baselines") / "run"
    run = open_run(run_dir, n_folds=3, seed=0)
    run_baselines(run, BASELINES, progress=_quiet)
    return run_dir


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A run with the baselines and a 2-trial search of 2 epochs (its best trial refit)."""
    from digits_zoo.searching import run_search
    from search.spec import SearchSpec

    run_dir = tmp_path_factory.mktemp("search") / "run"
    run = open_run(run_dir, n_folds=3, seed=0)
    run_baselines(run, BASELINES, progress=_quiet)
    run_search(run, SearchSpec(tuner="random", max_trials=2, epochs=2, top_k=1, fixed={"augment": "none"}), progress=_quiet)  # fmt: skip
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def _image_sources(index: Path) -> set[str]:
    return set(re.findall(r"<img src='([^']+)'", index.read_text(encoding="utf-8")))


def _check_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG", path.name
        width, height = image.size
        image.verify()
    assert width > 300 and height > 200, f"{path.name} is only {width}x{height}"
    assert width < 4000 and height < 4000, f"{path.name} is {width}x{height}"


@pytest.mark.slow
def test_report_of_a_search_run_draws_every_figure(search_run):
    report = write_report(search_run, progress=_quiet)

    assert report.folder == search_run / "report"
    assert set(report.figures) == set(FIGURES)
    assert report.notes == {}
    for name in FIGURES:
        _check_png(report.folder / name)
    assert _image_sources(report.index) == set(FIGURES)
    assert sorted(p.name for p in report.folder.iterdir()) == sorted([*FIGURES, "index.html"])
    page = report.index.read_text(encoding="utf-8")
    for row in read_leaderboard(search_run):
        assert f">{row['model']}<" in page
    assert NO_SEARCH not in page
    assert any(row["source"] == "search" for row in read_leaderboard(search_run))


@pytest.mark.slow
def test_a_learning_curves_label_is_the_trials_whole_config(search_run):
    _, trials = read_csv(search_run / "trials.csv")
    for trial in completed_trials(trials):
        # Every cell of trials.csv is text: the parsed trial reads as a whole config.
        config = DenseConfig.from_dict(trial)
        label = _short_config(trial).replace("\n", " ")
        assert config.short().startswith(label) and "drop" in label


@pytest.mark.slow
def test_report_predictions_reproduce_each_rows_test_accuracy(search_run):
    # The confusion matrix and gallery are drawn from these predictions, so they
    # must be the leaderboard's: same model, same held-out split.
    rows = read_leaderboard(search_run)
    assert {row["kind"] for row in rows} == {"keras", "sklearn"}
    for row in rows:
        predictions = predict_test_split(search_run, row)
        accuracy = float(np.mean(predictions.y_pred == predictions.y_true))
        assert accuracy == pytest.approx(row["test_accuracy"], abs=1e-6), row["model"]
        assert predictions.x_raw.shape == (len(predictions.y_true), 64)
        assert predictions.image_shape == (8, 8)


def test_report_of_a_baselines_run_says_there_was_no_search(baselines_run, tmp_path):
    run_dir = _copy(baselines_run, tmp_path)

    report = write_report(run_dir, progress=_quiet)

    assert set(report.figures) == BEST_MODEL_FIGURES
    for name in BEST_MODEL_FIGURES:
        _check_png(report.folder / name)
    assert _image_sources(report.index) == BEST_MODEL_FIGURES
    assert set(report.notes) == set(FIGURES) - BEST_MODEL_FIGURES
    assert set(report.notes.values()) == {NO_SEARCH}
    assert NO_SEARCH in report.index.read_text(encoding="utf-8")


def test_report_notes_a_missing_model_file_instead_of_failing(baselines_run, tmp_path):
    run_dir = _copy(baselines_run, tmp_path)
    best = read_leaderboard(run_dir)[0]
    (run_dir / best["model_path"]).unlink()

    report = write_report(run_dir, progress=_quiet)

    assert set(report.figures) == {"leaderboard.png"}
    assert "missing" in report.notes["confusion_matrix.png"]
    assert best["model_path"] in report.index.read_text(encoding="utf-8")
    assert _image_sources(report.index) == {"leaderboard.png"}


def test_report_rerun_replaces_the_old_report_and_leaves_no_temporaries(baselines_run, tmp_path):
    run_dir = _copy(baselines_run, tmp_path)
    write_report(run_dir, progress=_quiet)
    stale = run_dir / "report" / "stale.png"
    stale.write_bytes(b"not a figure")

    report = write_report(run_dir, progress=_quiet)

    assert not stale.exists()
    assert sorted(p.name for p in report.folder.iterdir()) == sorted(
        [*BEST_MODEL_FIGURES, "index.html"]
    )
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".report")]


def test_report_top_limits_the_bar_chart_only(baselines_run, tmp_path):
    run_dir = _copy(baselines_run, tmp_path)
    tall = write_report(run_dir, progress=_quiet).figures["leaderboard.png"]
    with Image.open(tall) as image:
        full_height = image.size[1]

    short = write_report(run_dir, top=1, progress=_quiet)

    with Image.open(short.figures["leaderboard.png"]) as image:
        assert image.size[1] < full_height
    page = short.index.read_text(encoding="utf-8")
    assert all(f">{name}<" in page for name in BASELINES)


def test_report_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ZooError, match="not a run directory"):
        write_report(tmp_path / "missing")
    with pytest.raises(ZooError, match="not a run directory"):
        write_report(tmp_path)
    run_dir = tmp_path / "fresh"
    open_run(run_dir, n_folds=3)
    with pytest.raises(ZooError, match="no leaderboard"):
        write_report(run_dir)
    assert not (run_dir / "report").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".report")]


@pytest.mark.parametrize("top", [0, -3, 2.5, True])
def test_report_rejects_bad_counts(baselines_run, top):
    with pytest.raises(ZooError, match="--top must be an integer"):
        write_report(baselines_run, top=top)


def test_report_command_writes_the_report(baselines_run, tmp_path, capsys):
    run_dir = _copy(baselines_run, tmp_path)

    assert cli.main(["report", str(run_dir), "--top", "5"]) == 0

    output = capsys.readouterr().out
    assert str(run_dir / "report" / "index.html") in output
    assert f"left out learning_curves.png: {NO_SEARCH}" in output
    for name in BEST_MODEL_FIGURES:
        _check_png(run_dir / "report" / name)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "{tmp}"], "is not a run directory"),
        (["report", "{run}", "--curves", "0"], "--curves must be an integer"),
    ],
)
def test_report_command_errors_exit_2_with_one_line(argv, message, baselines_run, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, run=baselines_run) for a in argv]

    assert cli.main(argv) == 2

    error = capsys.readouterr().err
    assert error.startswith("digits-zoo: error: ")
    assert message in error
    assert error.count("\n") == 1


@pytest.mark.parametrize(
    ("scale", "axis_scale", "base", "shown"),
    [
        ("linear", "linear", None, [16.5, 32.5, 64.5]),
        ("log2", "log", 2, [16 * 2**0.5, 32 * 2**0.5, 64 * 2**0.5]),
        ("log", "log", 10, [16 * 10**0.5, 32 * 10**0.5, 64 * 10**0.5]),
    ],
)
def test_plot_sweep_sets_its_scale_and_shifts_points_along_it(scale, axis_scale, base, shown):
    # On a log axis a shift is in doublings or decades, so lines step aside by a factor.
    figure = new_figure(4, 3)
    ax = figure.add_subplot()

    plot_sweep(ax, [16, 32, 64], [[0.90, 0.94]] * 3, shift=0.5, scale=scale)

    assert ax.get_xscale() == axis_scale
    if base is not None:
        assert ax.xaxis.get_transform().base == base
    means = ax.containers[0].lines[0]
    np.testing.assert_allclose(np.asarray(means.get_xdata(), dtype=float), shown)
    np.testing.assert_allclose(np.asarray(means.get_ydata(), dtype=float), [92.0, 92.0, 92.0])
