"""The one owner of the search's paths inside its folder (the run directory).

Like keras-tuner's ``BaseTuner.get_trial_dir``, every path the search reads or
writes is spelled here once::

    DIRECTORY/
      search.json       each search's settings and how a worker reloads the data
      tuner/<tuner>/    keras-tuner's own state (oracle.json, trial_*/trial.json)
      trials/           <tuner>_<id>.json per finished trial, <tuner>_<id>.oof.npy
      trials.csv        every trial of every search, rebuilt from tuner/ and trials/
      logs/<trial>/     TensorBoard logs
      workers.json      pids of a running distributed search
"""

from __future__ import annotations

from pathlib import Path

SPEC_FILE = "search.json"
TUNER_DIR = "tuner"
TRIALS_DIR = "trials"
TRIALS_CSV = "trials.csv"
LOGS_DIR = "logs"
WORKERS_FILE = "workers.json"


def spec_path(directory: str | Path) -> Path:
    """``search.json``: the recorded settings of the folder's searches."""
    return Path(directory) / SPEC_FILE


def tuner_root(directory: str | Path) -> Path:
    """The folder keras-tuner keeps its projects in (one per tuner)."""
    return Path(directory) / TUNER_DIR


def tuner_project(directory: str | Path, tuner: str) -> Path:
    """keras-tuner's project folder of one tuner's search."""
    return tuner_root(directory) / tuner


def trials_dir(directory: str | Path) -> Path:
    """The folder of the trial records."""
    return Path(directory) / TRIALS_DIR


def record_path(directory: str | Path, name: str) -> Path:
    """A finished trial's record: config, fold scores, learning curves."""
    return trials_dir(directory) / f"{name}.json"


def out_of_fold_path(directory: str | Path, name: str) -> Path:
    """A finished trial's out-of-fold probabilities."""
    return trials_dir(directory) / f"{name}.oof.npy"


def trials_csv_path(directory: str | Path) -> Path:
    """``trials.csv``: every trial of every search in the folder."""
    return Path(directory) / TRIALS_CSV


def logs_dir(directory: str | Path) -> Path:
    """The TensorBoard log folder (one sub-folder per trial)."""
    return Path(directory) / LOGS_DIR


def workers_path(directory: str | Path) -> Path:
    """The pids of a running distributed search's processes."""
    return Path(directory) / WORKERS_FILE
