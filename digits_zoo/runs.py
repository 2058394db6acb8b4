"""Opening a run: one dataset under one protocol (split seed, folds), recorded in ``run.json``.

The data may be one source or several (``--data`` given more than once: the
first is the protocol, the others add training rows, see :mod:`zoo.data`);
``run.json`` records them all, so that a resumed run and :func:`load_run`
rebuild the same data.

The folder's layout is in :mod:`digits_zoo.rundir`.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digits_zoo.rundir import RUN_FILE
from digits_zoo.rundir import run_file as run_file_path
from zoo.data import DATASET_NAMES, DEFAULT_TEST_SIZE, Dataset, load_dataset
from zoo.errors import ZooError
from zoo.files import atomic_write_text, read_json
from zoo.protocol import Folds, make_folds
from zoo.validation import check_seed


@dataclass
class Run:
    """An opened run: its folder, data, folds and recorded settings."""

    path: Path
    dataset: Dataset
    folds: Folds
    seed: int
    n_folds: int
    meta: dict[str, Any]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape results."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in (
        "keras",
        "keras-tuner",
        "scikit-learn",
        "numpy",
        "jax",
        "tensorflow-cpu",
        "tensorflow",
    ):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def device_description() -> str:
    """The Keras backend and the device it computes on, such as ``jax:cpu``."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"jax:{jax.devices()[0].platform}"
    if backend == "tensorflow":
        import tensorflow as tf

        return "tensorflow:gpu" if tf.config.list_physical_devices("GPU") else "tensorflow:cpu"
    return backend


def _source_argument(data: str | Path) -> str:
    """One source as recorded: a dataset's name, or a path made absolute."""
    return str(data) if str(data) in DATASET_NAMES else str(Path(data).resolve())


def data_argument(data: str | Path | Sequence[str | Path] | None) -> str | list[str] | None:
    """The data as ``run.json`` records it, and as :func:`zoo.data.load_dataset` reloads it.

    One source stays one value (``None`` for the bundled digits, a name, or an
    absolute path); several become a list of those, first the protocol's.
    """
    if isinstance(data, (list, tuple)):
        if len(data) != 1:
            return [_source_argument("digits" if each is None else each) for each in data]
        data = data[0]
    if data is None or str(data) == "digits":
        return None
    return _source_argument(data)


def open_run(
    run_dir: str | Path,
    data: str | Path | Sequence[str | Path] | None = None,
    *,
    seed: int = 0,
    n_folds: int = 5,
    test_size: float = DEFAULT_TEST_SIZE,
    overwrite: bool = False,
) -> Run:
    """Opens (or creates) a run directory for this data, seed and fold count.

    A run directory holds one dataset under one protocol, so that every row of
    its leaderboard is comparable. Reopening it with other settings (other data
    sources among them) is an error unless ``overwrite`` is given, which
    deletes the old run first.

    ``data`` is one source or a list of them (the first is the protocol, each
    later one adds training rows; see :func:`zoo.data.load_dataset`).

    Raises:
        ZooError: bad settings, or a run directory made for something else.
    """
    seed = check_seed(seed)
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ZooError(f"--run-dir is a file (got {str(path)!r}); pass a directory")
    recorded_data = data_argument(data)
    dataset = load_dataset(recorded_data, test_size=test_size, seed=seed)
    folds = make_folds(dataset.y_train, n_folds, seed)
    settings = {
        "data": recorded_data,
        "dataset": dataset.describe(),
        "seed": seed,
        "folds": n_folds,
        "test_size": test_size,
    }
    run_file = run_file_path(path)
    if run_file.is_file():
        recorded = _read_meta(run_file)
        clash = _first_clash(recorded, settings)
        if clash and not overwrite:
            raise ZooError(
                f"run directory {str(path)!r} holds a run with another {clash}; "
                "pass a new --run-dir, the same settings, or --overwrite to start it afresh"
            )
        if clash:
            shutil.rmtree(path)
    elif path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ZooError(
            f"run directory {str(path)!r} is not empty and holds no {RUN_FILE}; "
            "pass a new or empty --run-dir"
        )
    path.mkdir(parents=True, exist_ok=True)
    if run_file.is_file():
        meta = _read_meta(run_file)
    else:
        meta = {
            **settings,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": library_versions(),
            "device": device_description(),
        }
        atomic_write_text(run_file, json.dumps(meta, indent=2) + "\n")
    return Run(path, dataset, folds, seed, n_folds, meta)


def _read_meta(run_file: Path) -> dict[str, Any]:
    """Reads a run's ``run.json``, refusing one that is damaged."""
    try:
        meta = read_json(run_file, "run record")
    except ZooError:
        meta = None
    required = {"data", "dataset", "seed", "folds", "test_size"}
    if not isinstance(meta, dict) or not required <= set(meta):
        raise ZooError(
            f"{run_file} is not a digits-zoo run record (damaged or edited); restore it, "
            "or pass a new --run-dir"
        )
    return meta


def read_run_meta(run_dir: str | Path) -> dict[str, Any]:
    """Reads an existing run's ``run.json`` (its data, split, folds, versions, device).

    Raises:
        ZooError: no run there, or its record is damaged.
    """
    path = Path(run_dir)
    run_file = run_file_path(path)
    if not run_file.is_file():
        raise ZooError(
            f"{str(path)!r} is not a run directory (no {RUN_FILE}); pass the --run-dir of a "
            "digits-zoo baselines or search run"
        )
    return _read_meta(run_file)


def _first_clash(recorded: dict[str, Any], settings: dict[str, Any]) -> str | None:
    # The settings come first: another seed or test size also changes the split's
    # fingerprint, and the message should name what the user changed.
    for key, label in (("seed", "seed"), ("folds", "fold count"), ("test_size", "test size")):
        if recorded.get(key) != settings[key]:
            return f"{label} ({recorded.get(key)})"
    if recorded.get("dataset", {}).get("fingerprint") != settings["dataset"]["fingerprint"]:
        # Other sources, or the same ones in another order, make other training rows.
        return f"dataset ({recorded.get('dataset', {}).get('name')})"
    return None


def _sources(data: str | list[str] | None) -> list[str]:
    """The recorded data as a list of sources (the bundled digits named ``digits``)."""
    return [str(each) for each in data] if isinstance(data, list) else [data or "digits"]


def load_run(run_dir: str | Path) -> Run:
    """Reopens an existing run with exactly its recorded data, seed and folds.

    Raises:
        ZooError: no run there, or its data file changed since.
    """
    path = Path(run_dir)
    meta = read_run_meta(path)
    dataset = load_dataset(meta["data"], test_size=meta["test_size"], seed=meta["seed"])
    if dataset.fingerprint() != meta["dataset"]["fingerprint"]:
        raise ZooError(
            f"the data of run {str(path)!r} changed since it ran "
            f"({', '.join(_sources(meta['data']))}); restore the files or start a new run"
        )
    folds = make_folds(dataset.y_train, meta["folds"], meta["seed"])
    return Run(path, dataset, folds, meta["seed"], meta["folds"], meta)
