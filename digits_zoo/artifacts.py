"""Fitted models on disk: Keras networks as ``.keras``, scikit-learn models as ``.skops``.

Neither format runs arbitrary code when loaded: a ``.keras`` file holds a
config and weights, and a ``.skops`` file is loaded only when every type it
names is one of :data:`SKOPS_TRUSTED_TYPES`, the types the zoo's own
baselines save.

A model is saved into a fresh hidden folder in ``models/`` and then renamed
into place, the ``.keras`` file after its ``.json`` sidecar: a save cut short
(kill -9, a full disk) leaves the previous model or none, never a half-written
one, plus a hidden ``.save-*`` folder that the next save removes. A file that
still cannot be loaded (damaged on disk, or a sidecar from another save)
raises :class:`DamagedModel`; the commands that need it refit it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from digits_zoo.rundir import MODELS_DIR, inside, model_file
from zoo.dense import DenseNetClassifier, load_dense, save_dense
from zoo.ensemble import DenseEnsembleClassifier, is_network, load_ensemble, save_ensemble
from zoo.errors import ZooError

# The types a ``.skops`` file may hold beyond those skops trusts by default: exactly
# what skops.io.get_untrusted_types reports for the zoo's scikit-learn baselines as
# save_fitted writes them. tests/test_hardening_models.py regenerates this tuple
# from the baselines and fails (printing the new tuple) when a new baseline or a
# scikit-learn upgrade changes it; review any new name before adding it here.
SKOPS_TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
)
# The prefix of the hidden folder a model is saved into before it is renamed into place.
SAVE_PREFIX = ".save-"
# The sidecar's record of its ``.keras`` file's SHA-256, so a pair from two saves is caught.
KERAS_DIGEST = "keras_sha256"
# What loading a damaged file raises: from zipfile, h5py, json, Keras and skops alike.
_LOAD_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AttributeError,
    zipfile.BadZipFile,
)


class DamagedModel(ZooError):
    """A fitted model file that exists but cannot be loaded; callers refit it as if missing.

    Attributes:
        path: the model file.
        reason: what is wrong with it, a few words.
    """

    def __init__(self, path: str | Path, reason: str):
        super().__init__(
            f"damaged model file: {reason} (got {str(path)!r}); delete it and rerun "
            "(digits-zoo export and search refit a leaderboard model from its recorded config)"
        )
        self.path = Path(path)
        self.reason = reason


class UntrustedModel(ZooError):
    """A ``.skops`` file naming types outside :data:`SKOPS_TRUSTED_TYPES`; nothing was loaded."""


def save_fitted(estimator: Any, run_dir: str | Path, name: str) -> str:
    """Saves a fitted leaderboard model as ``run_dir/models/<name>.keras`` or ``.skops``, atomically.

    Args:
        estimator: a fitted zoo classifier.
        run_dir: the run directory.
        name: the model's leaderboard name.

    Returns:
        The path relative to ``run_dir`` (the leaderboard's ``model_path``).

    Raises:
        ZooError: the name is not a plain file name, or ``models/`` or the
            target is a link that leads outside the run directory.
    """
    keras = is_network(estimator)
    target = model_file(run_dir, name, ".keras" if keras else ".skops")
    sidecar = model_file(run_dir, name, ".keras.json") if keras else None
    folder = inside(run_dir, MODELS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale(folder, SAVE_PREFIX)
    with staging_folder(folder, SAVE_PREFIX) as staging:
        staged = staging / target.name
        if isinstance(estimator, DenseEnsembleClassifier):
            save_ensemble(estimator, staged)
        elif isinstance(estimator, DenseNetClassifier):
            save_dense(estimator, staged)
        else:
            import skops.io

            skops.io.dump(estimator, staged)
        _sync(staged)
        if sidecar is not None:
            staged_sidecar = Path(f"{staged}.json")
            record = json.loads(staged_sidecar.read_text(encoding="utf-8"))
            record[KERAS_DIGEST] = _sha256(staged)
            staged_sidecar.write_text(json.dumps(record, indent=1), encoding="utf-8")
            _sync(staged_sidecar)
            # The sidecar first: a .keras file in place always has its sidecar beside it.
            os.replace(staged_sidecar, sidecar)
        # A rename replaces a link at the target instead of writing through it.
        os.replace(staged, target)
        _sync(folder)
    return str(Path(MODELS_DIR) / target.name)


def remove_stale_saves(run_dir: str | Path) -> list[Path]:
    """Removes the ``models/.save-*`` folders of saves that were killed (no process holds them).

    Returns:
        The removed folders.
    """
    return remove_stale(inside(run_dir, MODELS_DIR), SAVE_PREFIX)


def load_fitted(path: str | Path) -> Any:
    """Loads a model saved by :func:`save_fitted` (or an export's ``model.skops``).

    A ``.skops`` file is loaded only when every type it names beyond skops's
    defaults is one of :data:`SKOPS_TRUSTED_TYPES`; this is checked before
    anything in it is loaded.

    Raises:
        DamagedModel: the file (or a ``.keras`` file's sidecar) is damaged,
            truncated, missing its sidecar, or from another save than its sidecar.
        UntrustedModel: a ``.skops`` file names other types.
        ZooError: the file is missing or of an unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"fitted model not found (got {str(path)!r})")
    if path.suffix == ".keras":
        return _load_keras(path)
    if path.suffix == ".skops":
        return _load_skops(path)
    raise ZooError(f"unknown model file (got {str(path)!r}); expected .keras or .skops")


def load_run_model(run_dir: str | Path, model_path: str | Path) -> Any:
    """Loads a leaderboard row's model by its ``model_path``, refusing any path that leaves the run.

    Args:
        run_dir: the run directory.
        model_path: the row's ``model_path``, relative to ``run_dir``.

    Raises:
        ZooError: the path (or the ``.keras`` file's sidecar) is or goes through
            a link that leads outside the run directory, or as :func:`load_fitted`.
    """
    return load_fitted(_confined(run_dir, model_path))


def is_loadable(run_dir: str | Path, model_path: str | Path) -> bool:
    """Whether a leaderboard row's model is on disk and loads (a damaged one counts as missing).

    Raises:
        ZooError: the path leads outside the run directory, or the file names
            untrusted types: neither is fixed by a refit.
    """
    path = _confined(run_dir, model_path)
    if not path.is_file():
        return False
    try:
        load_fitted(path)
    except DamagedModel:
        return False
    return True


def _confined(run_dir: str | Path, model_path: str | Path) -> Path:
    path = inside(run_dir, model_path)
    if path.suffix == ".keras":
        inside(run_dir, f"{model_path}.json")
    return path


def _load_keras(path: Path) -> Any:
    sidecar_path = Path(f"{path}.json")
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedModel(path, f"its sidecar {sidecar_path.name} is missing") from None
    except (OSError, ValueError):
        raise DamagedModel(path, f"its sidecar {sidecar_path.name} is unreadable") from None
    if not isinstance(sidecar, dict):
        raise DamagedModel(path, f"its sidecar {sidecar_path.name} is not a JSON object")
    digest = sidecar.get(KERAS_DIGEST)
    if digest is not None and digest != _sha256(path):
        raise DamagedModel(path, f"it is not the file its sidecar {sidecar_path.name} describes")
    try:
        if sidecar.get("ensemble"):
            return load_ensemble(path, sidecar)
        return load_dense(path)
    except _LOAD_ERRORS as error:
        raise DamagedModel(path, f"Keras cannot load it ({error.__class__.__name__})") from None


def _load_skops(path: Path) -> Any:
    import skops.io

    try:
        present = sorted(set(skops.io.get_untrusted_types(file=path)))
    except _LOAD_ERRORS as error:
        raise DamagedModel(path, f"skops cannot read it ({error.__class__.__name__})") from None
    refused = [name for name in present if name not in SKOPS_TRUSTED_TYPES]
    if refused:
        # The names come from the file: repr keeps the message on one line.
        raise UntrustedModel(
            f"the model file names types digits-zoo does not trust: "
            f"{', '.join(repr(name) for name in refused)} (got {str(path)!r}); it was not "
            "loaded, since such types can run code: use a model file digits-zoo wrote"
        )
    try:
        return skops.io.load(path, trusted=present)
    except _LOAD_ERRORS as error:
        raise DamagedModel(path, f"skops cannot load it ({error.__class__.__name__})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sync(path: Path) -> None:
    # Flushed to the disk before the rename, so a power cut cannot publish an empty file.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# Hidden working folders ---------------------------------------------------------------------
#
# A save (``.save-*`` in models/) and an export (``.partial-*`` in its base folder)
# work in a hidden folder that is renamed or removed at the end. The writing
# process holds an OS lock on its folder, so a later writer can tell a leftover
# of a killed process (no lock) from one in use (locked) and remove only the former.


@contextlib.contextmanager
def staging_folder(parent: str | Path, prefix: str) -> Iterator[Path]:
    """A new hidden folder ``parent/<prefix><random>``, locked while the block runs, then removed.

    A block that renames the folder away keeps it; anything left is removed,
    whatever the block raised.
    """
    parent = Path(parent)
    while True:
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        # Another process's remove_stale may have taken it between mkdtemp and flock.
        if os.fstat(descriptor).st_nlink > 0:
            break
        os.close(descriptor)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(descriptor)


def remove_stale(parent: str | Path, prefix: str) -> list[Path]:
    """Removes the ``<prefix>*`` folders in ``parent`` that no running process holds.

    Links and files of that name are left alone (a link is not followed).

    Returns:
        The removed folders.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for child in sorted(parent.iterdir()):
        if not child.name.startswith(prefix) or child.is_symlink() or not child.is_dir():
            continue
        try:
            descriptor = os.open(child, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another process is writing in it
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
        finally:
            os.close(descriptor)
    return removed
