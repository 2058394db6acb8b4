"""The one owner of the run directory's layout: every path under ``RUN_DIR`` is spelled here.

Layout::

    RUN_DIR/
      run.json          data sources, dataset fingerprint, split seed, folds, versions, device
      leaderboard.csv   one row per evaluated model, best first
      models/           fitted leaderboard models (.keras + .keras.json, .skops)
      baselines/        <name>.oof.npy: each baseline's out-of-fold probabilities
      ensembles.json    the last greedy ensemble selections (shipped and mixed)
      search.json       each search's settings and the data source      (search.paths)
      tuner/<tuner>/    keras-tuner's own state                          (search.paths)
      trials/           one record per finished trial, out-of-fold probabilities (search.paths)
      trials.csv        every trial of every search                      (search.paths)
      logs/<trial>/     TensorBoard logs                                 (search.paths)
      export/<model>/   exported models, one numbered version each
      report/           the figures and index.html of digits-zoo report

The search's own files are named by ``search.paths`` (the search layer cannot
import the application); the application's are named here.
"""

from __future__ import annotations

from pathlib import Path

from search.paths import TRIALS_CSV, logs_dir, trials_csv_path, trials_dir, tuner_root
from zoo.errors import ZooError
from zoo.files import folder_lock

RUN_FILE = "run.json"
LEADERBOARD = "leaderboard.csv"
MODELS_DIR = "models"
BASELINES_DIR = "baselines"
ENSEMBLES_FILE = "ensembles.json"
EXPORT_DIR = "export"
REPORT_DIR = "report"
DEFAULT_RUN_DIR = "runs/digits"

__all__ = [
    "BASELINES_DIR",
    "DEFAULT_RUN_DIR",
    "ENSEMBLES_FILE",
    "EXPORT_DIR",
    "LEADERBOARD",
    "MODELS_DIR",
    "REPORT_DIR",
    "RUN_FILE",
    "TRIALS_CSV",
    "baseline_out_of_fold_path",
    "ensembles_path",
    "export_base",
    "inside",
    "leaderboard_path",
    "logs_dir",
    "model_file",
    "models_dir",
    "report_dir",
    "run_file",
    "run_lock",
    "trials_csv_path",
    "trials_dir",
    "tuner_root",
]


def run_lock(run_dir: str | Path, *, wait: bool = False):
    """One writer at a time: holds the run directory's OS lock for a block.

    A command that writes a run (``baselines``, ``search``, ``export``,
    ``report``) holds it throughout and a second one is refused at once with
    the first one's pid and command; a single read-modify-write of a shared
    file (a leaderboard merge) waits for it instead. Re-entrant within a
    process; the workers of a distributed search run under their supervisor's.
    """
    return folder_lock(run_dir, wait=wait, what=f"run directory {str(run_dir)!r}")


def run_file(run_dir: str | Path) -> Path:
    """``run.json``: the run's data, split, folds and versions."""
    return Path(run_dir) / RUN_FILE


def leaderboard_path(run_dir: str | Path) -> Path:
    """``leaderboard.csv``."""
    return Path(run_dir) / LEADERBOARD


def models_dir(run_dir: str | Path) -> Path:
    """The folder of the fitted leaderboard models."""
    return Path(run_dir) / MODELS_DIR


def model_file(run_dir: str | Path, name: str, suffix: str) -> Path:
    """A fitted leaderboard model's file, ``models/<name><suffix>``, checked to stay inside."""
    return inside(run_dir, Path(MODELS_DIR) / f"{checked_name(name)}{suffix}")


def baseline_out_of_fold_path(run_dir: str | Path, name: str) -> Path:
    """A baseline's out-of-fold probabilities, ``baselines/<name>.oof.npy``, checked to stay inside.

    Like a search trial's (``search.paths.out_of_fold_path``): row ``i`` as
    predicted by the fold model that did not train on it.
    """
    return inside(run_dir, Path(BASELINES_DIR) / f"{checked_name(name)}.oof.npy")


def ensembles_path(run_dir: str | Path) -> Path:
    """``ensembles.json``: the greedy ensemble selections measured after the last search."""
    return Path(run_dir) / ENSEMBLES_FILE


def export_base(run_dir: str | Path, name: str) -> Path:
    """An exported model's base folder, ``export/<name>``, checked to stay inside."""
    return inside(run_dir, Path(EXPORT_DIR) / checked_name(name))


def report_dir(run_dir: str | Path) -> Path:
    """The report's folder."""
    return Path(run_dir) / REPORT_DIR


def checked_name(name: str) -> str:
    """A model name that is safe as one file name: no folder, no leading dot.

    Raises:
        ZooError: the name (from a leaderboard or a flag) could point elsewhere.
    """
    text = str(name)
    if (
        not text
        or text.startswith(".")
        or any(sep in text for sep in ("/", "\\", "\0"))
        or len(text) > 200
    ):
        raise ZooError(
            f"model name is not a plain file name (got {text!r}); the leaderboard may be "
            "edited or damaged: restore it"
        )
    return text


def inside(run_dir: str | Path, relative: str | Path) -> Path:
    """``run_dir / relative``, refused if it resolves outside ``run_dir`` (symlinks followed).

    Raises:
        ZooError: the path escapes the run directory.
    """
    root = Path(run_dir).resolve()
    path = Path(run_dir) / relative
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ZooError(
            f"{str(relative)!r} points outside the run directory (got {str(resolved)!r}); "
            "remove the link or restore the file"
        )
    return path
