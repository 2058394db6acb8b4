"""Fitted model files (digits_zoo.artifacts): atomic saves, confinement to the run and export
folders, the skops allowlist, and the leftovers of killed saves and exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.datasets import dump_svmlight_file, load_digits
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from digits_zoo.artifacts import (
    SKOPS_TRUSTED_TYPES,
    DamagedModel,
    UntrustedModel,
    is_loadable,
    load_fitted,
    remove_stale,
    save_fitted,
    staging_folder,
)
from digits_zoo.leaderboard import read_leaderboard, to_csv
from digits_zoo.ship.export import export_run
from digits_zoo.ship.layout import METADATA, SKOPS_MODEL
from digits_zoo.ship.load import load_export, resolve_export
from helpers import copy_run
from zoo import ZooError, create_model
from zoo.registry import list_models

KERAS_MODEL = "dense_1x64"
SKLEARN_MODEL = "knn_k1"
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
# Saves the run's network again, stopping (for the parent's kill -9) once its .keras
# archive is half written: the archive's entries are on disk, its central directory not.
SAVER = """
import sys, time, zipfile
from zoo.environment import set_process_defaults
set_process_defaults()
from digits_zoo.artifacts import load_fitted, save_fitted
run_dir, name = sys.argv[1], sys.argv[2]
model = load_fitted(f"{run_dir}/models/{name}.keras")
close = zipfile.ZipFile.close
def stall(self):
    if self.mode == "w":
        self.fp.flush()
        print("saving", flush=True)
        time.sleep(120)
    close(self)
zipfile.ZipFile.close = stall
save_fitted(model, run_dir, name)
"""
# Holds the run's lock like a running search would.
HOLDER = """
import sys, time
from digits_zoo.rundir import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""
# Exports the k-NN row, stopping (for the parent's kill -9) while its version is written.
EXPORTER = """
import sys, time
from zoo.environment import set_process_defaults
set_process_defaults()
from digits_zoo.ship import export
def stall(*args, **kwargs):
    print("exporting", flush=True)
    time.sleep(120)
export.verify_export = stall
export.export_run(sys.argv[1], model="knn_k1", out=sys.argv[2], progress=lambda line: None)
"""


@pytest.fixture(scope="module")
def run_dir(shared_run) -> Path:
    """A run on the bundled digits with one small network and one k-NN on its leaderboard."""
    return shared_run(baselines=[SKLEARN_MODEL], networks={KERAS_MODEL: 15})


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A copy of the run that a test may damage."""
    return copy_run(run_dir, tmp_path)


@pytest.fixture(scope="module")
def knn_export(run_dir, tmp_path_factory) -> Path:
    """The base folder of an export of the k-NN row (a skops file), version 1."""
    base = tmp_path_factory.mktemp("shipped") / SKLEARN_MODEL
    export_run(run_dir, model=SKLEARN_MODEL, out=base, progress=lambda line: None)
    return base


@pytest.fixture
def pixels_csv(tmp_path) -> Path:
    """Three images of the bundled digits as CSV pixel rows."""
    path = tmp_path / "rows.csv"
    np.savetxt(path, load_digits().data[:3], fmt="%d", delimiter=",")
    return path


def one_line(error: BaseException) -> str:
    """Checks an error's message is one line in the house format, and returns it."""
    text = str(error)
    assert "\n" not in text and "(got " in text and "; " in text, text
    return text


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# 1. Atomic model files ----------------------------------------------------------------------


def _zero_byte_keras_without_sidecar(models: Path) -> Path:
    (models / f"{KERAS_MODEL}.keras").write_bytes(b"")
    (models / f"{KERAS_MODEL}.keras.json").unlink()
    return models / f"{KERAS_MODEL}.keras"


def _truncated_keras(models: Path) -> Path:
    path = models / f"{KERAS_MODEL}.keras"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _truncated_keras_with_an_older_sidecar(models: Path) -> Path:
    # A sidecar from before this fix has no digest: Keras itself must fail cleanly.
    sidecar = models / f"{KERAS_MODEL}.keras.json"
    record = json.loads(sidecar.read_text())
    del record["keras_sha256"]
    sidecar.write_text(json.dumps(record))
    return _truncated_keras(models)


def _garbage_sidecar(models: Path) -> Path:
    (models / f"{KERAS_MODEL}.keras.json").write_text("{not json")
    return models / f"{KERAS_MODEL}.keras"


def _sidecar_not_an_object(models: Path) -> Path:
    (models / f"{KERAS_MODEL}.keras.json").write_text("[]")
    return models / f"{KERAS_MODEL}.keras"


def _garbage_skops(models: Path) -> Path:
    (models / f"{SKLEARN_MODEL}.skops").write_bytes(b"garbage")
    return models / f"{SKLEARN_MODEL}.skops"


def _truncated_skops(models: Path) -> Path:
    path = models / f"{SKLEARN_MODEL}.skops"
    path.write_bytes(path.read_bytes()[:100])
    return path


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_zero_byte_keras_without_sidecar, "sidecar dense_1x64.keras.json is missing"),
        (_truncated_keras, "not the file its sidecar dense_1x64.keras.json describes"),
        (_truncated_keras_with_an_older_sidecar, "Keras cannot load it"),
        (_garbage_sidecar, "sidecar dense_1x64.keras.json is unreadable"),
        (_sidecar_not_an_object, "is not a JSON object"),
        (_garbage_skops, "skops cannot read it"),
        (_truncated_skops, "skops cannot read it"),
    ],
)
def test_a_damaged_model_file_is_one_line_and_counts_as_missing(run_copy, damage, reason):
    path = damage(run_copy / "models")
    with pytest.raises(DamagedModel) as caught:
        load_fitted(path)
    text = one_line(caught.value)
    assert reason in text and str(path) in text
    assert not is_loadable(run_copy, path.relative_to(run_copy))


def test_is_loadable_tells_a_good_model_from_a_missing_one(run_copy):
    assert is_loadable(run_copy, f"models/{KERAS_MODEL}.keras")
    assert is_loadable(run_copy, f"models/{SKLEARN_MODEL}.skops")
    assert not is_loadable(run_copy, "models/absent.keras")


def test_export_refits_a_zero_byte_model_left_by_a_killed_save(run_copy, cli):
    _zero_byte_keras_without_sidecar(run_copy / "models")
    status, out, err = cli("export", run_copy, "--model", KERAS_MODEL)
    assert status == 0, err
    assert "fitted model damaged" in out and "refitting it" in out
    assert load_fitted(run_copy / "models" / f"{KERAS_MODEL}.keras").predict(np.zeros((1, 64)))
    row = next(r for r in read_leaderboard(run_copy) if r["model"] == KERAS_MODEL)
    metadata = json.loads((run_copy / "export" / KERAS_MODEL / "1" / METADATA).read_text())
    assert metadata["refit"] is True
    assert round(metadata["verification"]["test_accuracy"], 6) == row["test_accuracy"]


def test_a_save_killed_half_way_keeps_the_previous_model(run_copy, cli):
    models = run_copy / "models"
    before = (models / f"{KERAS_MODEL}.keras").read_bytes()
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(run_copy), KERAS_MODEL],
        stdout=subprocess.PIPE,
        text=True,
        env=QUIET,
    )
    try:
        assert saver.stdout.readline().strip() == "saving"
    finally:
        saver.kill()  # SIGKILL: no cleanup of any kind runs
        saver.wait(30)
    # The half-written archive is in a hidden folder; the model in place is the old one.
    assert (models / f"{KERAS_MODEL}.keras").read_bytes() == before
    assert len(list(models.glob(".save-*"))) == 1
    status, out, err = cli("export", run_copy, "--model", KERAS_MODEL)
    assert status == 0, err
    assert "refitting" not in out
    assert not list(models.glob(".save-*"))  # the next export (or save) removes the leftover


def test_a_save_leaves_nothing_hidden_and_removes_only_stale_folders(run_dir, tmp_path):
    model = load_fitted(run_dir / "models" / f"{SKLEARN_MODEL}.skops")
    models = tmp_path / "models"
    models.mkdir()
    (models / ".save-killed").mkdir()
    (models / ".save-killed" / f"{SKLEARN_MODEL}.skops").write_bytes(b"half")
    with staging_folder(models, ".save-") as held:
        # Another save in progress (an OS lock held on its folder) is left alone.
        assert save_fitted(model, tmp_path, SKLEARN_MODEL) == f"models/{SKLEARN_MODEL}.skops"
        assert held.is_dir() and remove_stale(models, ".save-") == []
    assert sorted(p.name for p in models.iterdir()) == [f"{SKLEARN_MODEL}.skops"]


# 2. Confinement ----------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the run that nothing may write into or read from."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.keras").write_bytes(b"not yours")
    (folder / "precious.json").write_text("{}")
    return folder


@pytest.mark.parametrize("linked", [".keras", ".keras.json"])
def test_a_save_does_not_write_through_a_link_out_of_the_run(run_copy, outside, linked):
    target = outside / ("precious.keras" if linked == ".keras" else "precious.json")
    model = load_fitted(run_copy / "models" / f"{KERAS_MODEL}.keras")
    link = run_copy / "models" / f"{KERAS_MODEL}{linked}"
    link.unlink()
    link.symlink_to(target)
    before = snapshot(outside)
    with pytest.raises(ZooError, match="points outside the run directory") as caught:
        save_fitted(model, run_copy, KERAS_MODEL)
    one_line(caught.value)
    assert snapshot(outside) == before


def test_a_save_replaces_a_link_inside_the_run_instead_of_writing_through_it(run_copy):
    models = run_copy / "models"
    model = load_fitted(models / f"{SKLEARN_MODEL}.skops")
    (models / "kept.skops").write_bytes(b"kept")
    (models / f"{SKLEARN_MODEL}.skops").unlink()
    (models / f"{SKLEARN_MODEL}.skops").symlink_to("kept.skops")
    save_fitted(model, run_copy, SKLEARN_MODEL)
    assert not (models / f"{SKLEARN_MODEL}.skops").is_symlink()
    assert (models / "kept.skops").read_bytes() == b"kept"
    assert is_loadable(run_copy, f"models/{SKLEARN_MODEL}.skops")


def test_export_refuses_a_model_link_out_of_the_run(run_copy, outside, cli_error):
    link = run_copy / "models" / f"{KERAS_MODEL}.keras"
    shutil.copy(link, outside / "model.keras")
    link.unlink()
    link.symlink_to(outside / "model.keras")
    before = snapshot(outside)
    cli_error("export", run_copy, "--model", KERAS_MODEL, match="points outside the run directory")
    assert snapshot(outside) == before
    assert not (run_copy / "export").exists()


def test_export_does_not_refit_through_a_dangling_link(run_copy, outside, cli_error):
    link = run_copy / "models" / f"{KERAS_MODEL}.keras"
    link.unlink()
    link.symlink_to(outside / "created.keras")
    cli_error("export", run_copy, "--model", KERAS_MODEL, match="points outside the run directory")
    assert not os.path.lexists(outside / "created.keras")
    assert not list(outside.glob("created*"))


def _edit_row(run_dir: Path, name: str, **changes: str) -> None:
    rows = read_leaderboard(run_dir)
    for row in rows:
        if row["model"] == name:
            row.update(changes)
    (run_dir / "leaderboard.csv").write_text(to_csv(rows))


def test_export_refuses_a_model_path_out_of_the_run(run_copy, outside, tmp_path, cli_error):
    shutil.copy(run_copy / "models" / f"{SKLEARN_MODEL}.skops", outside / "knn.skops")
    _edit_row(run_copy, SKLEARN_MODEL, model_path="../outside/knn.skops")
    out = tmp_path / "shipped"
    cli_error(
        "export", run_copy, "--model", SKLEARN_MODEL, "--out", out,
        match="points outside the run directory",
    )  # fmt: skip
    assert not out.exists()


def test_export_refuses_a_model_name_that_climbs_out(run_copy, tmp_path, cli_error):
    _edit_row(run_copy, SKLEARN_MODEL, model="../../../outside/x")
    cli_error("export", run_copy, "--model", "../../../outside/x", match="not a plain file name")
    # RUN/export/../../../outside is two folders above the run.
    assert not (tmp_path.parent / "outside").exists()


def test_export_refuses_an_export_folder_linked_out_of_the_run(run_copy, outside, cli_error):
    (run_copy / "export").mkdir()
    (run_copy / "export" / SKLEARN_MODEL).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    cli_error("export", run_copy, "--model", SKLEARN_MODEL, match="points outside the run")
    assert snapshot(outside) == before
    assert sorted(p.name for p in outside.iterdir()) == ["precious.json", "precious.keras"]


@pytest.mark.parametrize("linked", ["model", "version"])
def test_predict_does_not_read_through_a_link_out_of_the_export(
    knn_export, outside, tmp_path, pixels_csv, cli_error, linked
):
    base = tmp_path / "handed"
    if linked == "model":
        shutil.copytree(knn_export, base)
        shutil.move(base / "1" / SKOPS_MODEL, outside / SKOPS_MODEL)
        (base / "1" / SKOPS_MODEL).symlink_to(outside / SKOPS_MODEL)
    else:
        shutil.copytree(knn_export / "1", outside / "1")
        base.mkdir()
        (base / "1").symlink_to(outside / "1", target_is_directory=True)
    cli_error("predict", base, pixels_csv, match="a link in the export leads outside it")


# 3. The skops allowlist --------------------------------------------------------------------


def baseline_untrusted_types(folder: Path) -> tuple[str, ...]:
    """What skops does not trust by default in each zoo baseline as save_fitted writes it."""
    x, y = load_digits(return_X_y=True)
    x, y = x[:150] / 16.0, y[:150]
    found: set[str] = set()
    for name in list_models(kind="sklearn"):
        relative = save_fitted(create_model(name).fit(x, y), folder, name)
        found.update(skops.io.get_untrusted_types(file=folder / relative))
    return tuple(sorted(found))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_skops_allowlist_is_what_the_baselines_save(tmp_path):
    # A new baseline or a scikit-learn upgrade changes this: review the new names, then
    # paste the tuple below into digits_zoo/artifacts.py.
    regenerated = baseline_untrusted_types(tmp_path)
    assert regenerated == SKOPS_TRUSTED_TYPES, f"SKOPS_TRUSTED_TYPES = {regenerated!r}"


def crafted_pipeline(written: Path) -> Pipeline:
    """The finding's attack: a pipeline whose first step writes a file on every predict."""
    x, y = load_digits(return_X_y=True)
    writer = FunctionTransformer(
        func=dump_svmlight_file,
        kw_args={"y": [0], "f": str(written)},
    )
    neighbours = KNeighborsClassifier(n_neighbors=1).fit(x[:50] / 16.0, y[:50])
    return Pipeline([("write", writer), ("classify", neighbours)])


def test_a_skops_file_with_a_function_is_refused_before_loading(knn_export, tmp_path, cli_error):
    written = tmp_path / "written.txt"
    base = tmp_path / "handed"
    shutil.copytree(knn_export, base)
    skops.io.dump(crafted_pipeline(written), base / "1" / SKOPS_MODEL)
    # One image: the file the pipeline writes holds one row, so its labels fit.
    image = tmp_path / "image.npy"
    np.save(image, load_digits().data[0])
    error = cli_error("predict", base, image, match="does not trust")
    assert "'sklearn.datasets._svmlight_format_io.dump_svmlight_file'" in error
    with pytest.raises(UntrustedModel, match="dump_svmlight_file") as caught:
        load_fitted(base / "1" / SKOPS_MODEL)
    one_line(caught.value)
    assert not written.exists()


# 4. Leftovers and foreign version folders ------------------------------------------------------


def test_an_export_killed_half_way_is_cleaned_by_the_next(run_dir, tmp_path, cli):
    base = tmp_path / "shipped"
    exporter = subprocess.Popen(
        [sys.executable, "-c", EXPORTER, str(run_dir), str(base)],
        stdout=subprocess.PIPE,
        text=True,
        env=QUIET,
    )
    try:
        assert exporter.stdout.readline().strip() == "exporting"
    finally:
        exporter.kill()
        exporter.wait(30)
    assert [p.name[:9] for p in base.iterdir()] == [".partial-"]
    status, _, err = cli("export", run_dir, "--model", SKLEARN_MODEL, "--out", base)
    assert status == 0, err
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_a_running_export_keeps_its_partial_folder(tmp_path):
    with staging_folder(tmp_path, ".partial-") as held:
        (tmp_path / ".partial-killed").mkdir()
        assert remove_stale(tmp_path, ".partial-") == [tmp_path / ".partial-killed"]
        assert held.is_dir()
    assert list(tmp_path.iterdir()) == []


def test_a_version_folder_without_metadata_is_refused(
    run_dir, knn_export, tmp_path, pixels_csv, cli_error
):
    base = tmp_path / "shipped"
    shutil.copytree(knn_export, base)
    (base / "2").mkdir()
    (base / "2" / SKOPS_MODEL).write_bytes(b"someone else's")
    for argv in (
        ["predict", base, pixels_csv],
        ["export", run_dir, "--model", SKLEARN_MODEL, "--out", base],
    ):
        error = cli_error(*argv, match="incomplete export version")
        assert repr(str(base / "2")) in error and "delete that folder" in error
    with pytest.raises(ZooError, match="incomplete export version"):
        resolve_export(base)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    # The version itself still loads when named.
    assert load_export(base / "1").name == SKLEARN_MODEL


def test_export_waits_for_no_other_writer_of_the_run(run_copy, tmp_path, cli_error):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_copy)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cli_error(
            "export", run_copy, "--model", SKLEARN_MODEL, "--out", tmp_path / "shipped",
            match=f"in use by another digits-zoo process (pid {holder.pid}",
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait(30)
    assert not (tmp_path / "shipped").exists()
