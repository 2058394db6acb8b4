"""Damaged run files: out-of-fold probabilities and a warm start's trials.csv.

A damaged file a command needs is one line naming it, what is wrong and what
to do; a damaged baseline's out-of-fold file does not undo a finished search:
that baseline is left out of the ensembles, with one warning line.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from digits_zoo.baselines import run_baselines
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.runs import open_run
from digits_zoo.searching import run_search
from search.spec import SearchSpec
from zoo.errors import ZooError
from zoo.files import read_array, write_array

SMALL = {"n_layers": 1, "units": 16, "batch_size": 128, "augment": "none"}
FIX_FLAGS = [flag for name, value in SMALL.items() for flag in ("--fix", f"{name}={value}")]


def _npy_bytes(tmp_path) -> bytes:
    return write_array(tmp_path / "good.npy", np.arange(12.0).reshape(4, 3)).read_bytes()


def _huge_header(good: bytes) -> bytes:
    stream = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue() + good[-96:]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda good: b"", "0 bytes"),
        (lambda good: good[:-5], "its header promises"),
        (lambda good: good + b"\0\0", "its header promises"),
        (lambda good: good[:40], "no .npy header"),
        (lambda good: bytes(range(256)) * 8, "no .npy header"),
        # A header that promises far more than the file holds allocates nothing.
        (_huge_header, "its header promises 8000000000"),
    ],
    ids=["empty", "cut", "longer", "header-cut", "garbage", "huge-shape"],
)
def test_a_damaged_array_file_is_one_line_naming_it(tmp_path, damage, reason):
    path = tmp_path / "random_0.oof.npy"
    path.write_bytes(damage(_npy_bytes(tmp_path)))
    with pytest.raises(ZooError) as caught:
        read_array(path, "out-of-fold probabilities")
    message = str(caught.value)
    assert "\n" not in message and reason in message
    assert message.startswith("damaged out-of-fold probabilities") and str(path) in message
    assert message.endswith("delete the file and rerun")


def test_an_object_array_is_refused_unread(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ZooError, match="only unpickling could read"):
        read_array(path)


def test_a_missing_array_file_is_none_and_a_good_one_reads_back(tmp_path):
    assert read_array(tmp_path / "none.npy") is None
    array = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(read_array(write_array(tmp_path / "good.npy", array)), array)


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory):
    """A run with the knn_k1 baseline (its out-of-fold file kept), then a 2-trial search."""
    run = open_run(tmp_path_factory.mktemp("damaged") / "run", seed=0, n_folds=2)
    run_baselines(run, ["knn_k1"], progress=lambda line: None)
    spec = SearchSpec(tuner="random", max_trials=2, epochs=1, top_k=2, fixed=SMALL)
    run_search(run, spec, progress=lambda line: None)
    return run.path


def _copy(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def test_export_with_an_empty_trial_out_of_fold_file_is_one_line(searched_run, tmp_path, cli):
    run_dir = _copy(searched_run, tmp_path)
    for path in (run_dir / "trials").glob("*.oof.npy"):
        path.write_bytes(b"")
    row = next(row for row in read_leaderboard(run_dir) if row["kind"] == "keras")
    status, _, err = cli("export", run_dir, "--model", row["model"])
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("digits-zoo: error: damaged out-of-fold")
    assert ".oof.npy" in err and "0 bytes" in err
    assert not (run_dir / "export").exists()


def test_search_leaves_a_damaged_baseline_out_of_the_ensembles(searched_run, tmp_path, cli):
    run_dir = _copy(searched_run, tmp_path)
    (run_dir / "baselines" / "knn_k1.oof.npy").write_bytes(b"")
    status, out, err = cli(
        "search", "--run-dir", run_dir, "--folds", "2", "--tuner", "random",
        "--max-trials", "3", "--epochs", "1", "--top-k", "2", *FIX_FLAGS,
    )  # fmt: skip
    assert status == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, out
    assert "knn_k1 left out of the ensembles" in warnings[0]
    assert "knn_k1.oof.npy" in warnings[0] and "0 bytes" in warnings[0]
    assert "trials.csv" in out


def _warm_start_copy(searched_run, tmp_path, change) -> str:
    folder = tmp_path / "earlier"
    folder.mkdir()
    text = (searched_run / "trials.csv").read_text(encoding="utf-8")
    (folder / "trials.csv").write_bytes(change(text))
    return folder


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda text: bytes(range(256)) * 40, "not UTF-8 text"),
        (
            lambda text: text.replace('"{""activation""', '"{bad json, ""activation""', 1).encode(),
            "config is not valid JSON",
        ),
        (
            lambda text: text.replace(
                '"{""activation""', '"{""x"": ""' + "a" * 200_000 + '"", ""activation""', 1
            ).encode(),
            "field limit",
        ),
        (
            lambda text: text.replace('""units"": 16}', '""units"": ""many""}', 1).encode(),
            "units must be one of",
        ),
    ],
    ids=["binary", "bad-json", "200KB-cell", "bad-value"],
)
def test_warm_start_from_a_damaged_trials_csv_is_one_line(
    searched_run, tmp_path, cli, change, reason
):
    earlier = _warm_start_copy(searched_run, tmp_path, change)
    status, _, err = cli(
        "search", "--run-dir", tmp_path / "run", "--warm-start", earlier, "--max-trials", "1",
    )  # fmt: skip
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("digits-zoo: error: damaged trials.csv")
    assert reason in err and str(earlier / "trials.csv") in err
    assert not (tmp_path / "run").exists()
