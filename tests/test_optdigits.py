"""Tests of the named dataset ``optdigits``: UCI's writer-independent protocol, shipped in the package."""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

import zoo.data
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.rundir import RUN_FILE
from digits_zoo.runs import load_run
from zoo.data import OPTDIGITS_TRAIN_FILE, OPTDIGITS_TRAIN_MD5, load_dataset, load_optdigits
from zoo.errors import DataError

# UCI's training file as the project received it (../shared/data/README.md); absent from a
# clean clone, where the md5 test below vouches for the packaged copy instead.
SHARED_TRAIN_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "optdigits.tra"

# The class counts of optdigits.tra, digits 0..9 (UCI's documentation and the data README).
TRAIN_CLASS_COUNTS = [376, 389, 380, 389, 387, 376, 377, 387, 380, 382]

# Pinned so that a change to the loader that changes the data (an order, a dtype) shows here
# before it makes every recorded optdigits run refuse to reopen.
FINGERPRINT = "662e5f7c98374961"

# k-NN, k=1, on pixels / 16, trained on the 30 writers: 1,761 of the 13 other writers' 1,797
# digits right (measured). UCI's documentation gives 98.00% for this classifier.
KNN_K1_TEST_ACCURACY = 1761 / 1797


@pytest.fixture(scope="module")
def optdigits():
    return load_dataset("optdigits")


def _packaged_text() -> str:
    resource = resources.files("zoo") / "datasets" / OPTDIGITS_TRAIN_FILE
    return gzip.decompress(resource.read_bytes()).decode("ascii")


# The loader ---------------------------------------------------------------------------------


def test_optdigits_has_uci_parts_sizes_classes_and_pixel_range(optdigits):
    assert optdigits.name == "optdigits"
    assert optdigits.x_train.shape == (3823, 64) and optdigits.y_train.shape == (3823,)
    assert optdigits.x_test.shape == (1797, 64) and optdigits.y_test.shape == (1797,)
    assert optdigits.x_train.dtype == np.float32 and optdigits.y_train.dtype == np.int64
    assert optdigits.image_shape == (8, 8)
    assert optdigits.classes == list(range(10))
    assert optdigits.pixel_max == 16.0
    for pixels in (optdigits.x_train, optdigits.x_test):
        assert pixels.min() == 0 and pixels.max() == 16
        np.testing.assert_array_equal(pixels, np.round(pixels))
    assert np.bincount(optdigits.y_train).tolist() == TRAIN_CLASS_COUNTS
    assert optdigits.test_source == "file" and optdigits.split_seed is None


def test_the_test_part_is_the_bundled_digits(optdigits):
    bunch = load_digits()
    np.testing.assert_array_equal(optdigits.x_test, bunch.data)
    np.testing.assert_array_equal(optdigits.y_test, bunch.target)


def test_the_packaged_file_is_uci_training_file_unchanged(optdigits):
    text = _packaged_text()
    assert hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest() == (
        OPTDIGITS_TRAIN_MD5
    )
    table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.int64)
    np.testing.assert_array_equal(optdigits.x_train, table[:, :-1])
    np.testing.assert_array_equal(optdigits.y_train, table[:, -1])


@pytest.mark.skipif(not SHARED_TRAIN_FILE.is_file(), reason="no ../shared/data/optdigits.tra")
def test_the_training_part_is_the_shared_file_row_for_row(optdigits):
    assert SHARED_TRAIN_FILE.read_text(encoding="ascii") == _packaged_text()
    table = np.loadtxt(SHARED_TRAIN_FILE, delimiter=",", dtype=np.int64)
    np.testing.assert_array_equal(optdigits.x_train, table[:, :-1])
    np.testing.assert_array_equal(optdigits.y_train, table[:, -1])


def test_no_training_digit_occurs_in_the_test_part(optdigits):
    # Pixels alone, labels aside: not even a same-looking digit crosses the writer split.
    train = {row.tobytes() for row in optdigits.x_train}
    test = {row.tobytes() for row in optdigits.x_test}
    assert len(train) == 3823 and len(test) == 1797
    assert not train & test


def test_fingerprint_is_stable(optdigits):
    assert optdigits.fingerprint() == FINGERPRINT
    assert load_optdigits().fingerprint() == FINGERPRINT
    assert optdigits.describe() == {
        "name": "optdigits",
        "image_shape": [8, 8],
        "pixel_max": 16.0,
        "classes": list(range(10)),
        "n_train": 3823,
        "n_test": 1797,
        "test_source": "file",
        "split_seed": None,
        "fingerprint": FINGERPRINT,
    }


def test_test_size_and_seed_leave_the_shipped_test_part_alone():
    # As for a .npz with its own test part: the split is the data's, not ours.
    dataset = load_dataset("optdigits", test_size=0.5, seed=7)
    assert dataset.fingerprint() == FINGERPRINT and len(dataset.y_test) == 1797


def test_a_test_size_outside_zero_one_is_still_refused():
    with pytest.raises(DataError, match=r"test size must be between 0 and 1 \(got 1.5\)"):
        load_dataset("optdigits", test_size=1.5)


def test_the_default_digits_are_unchanged(digits):
    assert digits.name == "digits" and len(digits.y_train) == 1437 and len(digits.y_test) == 360
    assert load_dataset("digits").fingerprint() == load_dataset().fingerprint()
    assert load_dataset().fingerprint() != FINGERPRINT


def test_a_damaged_packaged_file_is_refused(monkeypatch):
    monkeypatch.setattr(zoo.data, "OPTDIGITS_TRAIN_MD5", "0" * 32)
    with pytest.raises(DataError, match=r"optdigits file .* is damaged \(md5 268ce7771f3f15"):
        load_dataset("optdigits")


def test_a_missing_packaged_file_is_refused(monkeypatch):
    monkeypatch.setattr(zoo.data, "OPTDIGITS_TRAIN_FILE", "absent.tra.gz")
    with pytest.raises(DataError, match=r"cannot read the packaged optdigits file .*reinstall"):
        load_dataset("optdigits")


# End to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def optdigits_run(tmp_path_factory) -> Path:
    """``digits-zoo baselines --data optdigits --models knn_k1 --folds 2``, in-process."""
    from digits_zoo.cli import main

    run_dir = tmp_path_factory.mktemp("optdigits") / "run"
    argv = ["baselines", "--data", "optdigits", "--models", "knn_k1", "--folds", "2"]
    assert main([*argv, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_baselines_on_optdigits_score_knn_on_the_new_writers(optdigits_run):
    (row,) = read_leaderboard(optdigits_run)
    assert row["model"] == "knn_k1"
    assert row["test_accuracy"] == pytest.approx(KNN_K1_TEST_ACCURACY, abs=1e-4)
    assert len(json.loads(row["cv_folds"])) == 2


def test_the_run_records_optdigits_by_name_and_reopens(optdigits_run, optdigits):
    meta = json.loads((optdigits_run / RUN_FILE).read_text(encoding="utf-8"))
    assert meta["data"] == "optdigits"
    assert meta["dataset"] == optdigits.describe()
    assert load_run(optdigits_run).dataset.fingerprint() == FINGERPRINT


def test_test_size_on_the_command_line_keeps_the_shipped_test_part(tmp_path, cli):
    status, out, err = cli(
        "baselines",
        *("--data", "optdigits", "--models", "knn_k1", "--folds", "2", "--test-size", "0.5"),
        *("--run-dir", tmp_path / "run"),
    )
    assert status == 0, err
    meta = json.loads((tmp_path / "run" / RUN_FILE).read_text(encoding="utf-8"))
    assert meta["dataset"]["fingerprint"] == FINGERPRINT and meta["dataset"]["n_test"] == 1797
    (row,) = read_leaderboard(tmp_path / "run")
    assert row["test_accuracy"] == pytest.approx(KNN_K1_TEST_ACCURACY, abs=1e-4)
