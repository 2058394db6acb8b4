"""The one owner of the search's paths inside its folder (the run directory).

Like keras-tuner's ``BaseTuner.get_trial_dir``, every path the search reads or
writes is spelled here once::

    DIRECTORY/
      search.json       each search's settings and how a worker reloads the data
      tuner/<project>/  keras-tuner's own state (oracle.json, trial_*/trial.json)
      trials/           <project>_<id>.json per finished trial, <project>_<id>.oof.npy
      trials.csv        every trial of every search, rebuilt from tuner/ and trials/
      logs/<trial>/     TensorBoard logs
      workers.json      pids of a running distributed search

A search's *project* is its keras-tuner project name: the tuner's name for the
dense networks (``bayesian``), ``<tuner>_<family>`` for a classic family
(``bayesian_svc``). Its trials are named ``<project>_<trial id>``, the id being
keras-tuner's zero-padded number.
"""

from __future__ import annotations

import re
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
    """The folder keras-tuner keeps its projects in (one per search)."""
    return Path(directory) / TUNER_DIR


def tuner_project(directory: str | Path, project: str) -> Path:
    """keras-tuner's project folder of one search (``tuner/<project>``)."""
    return tuner_root(directory) / project


def is_trial_of(name: str, project: str) -> bool:
    """Whether ``name`` (a record's or log's name) is a trial of ``project``.

    ``bayesian_svc_03`` is a trial of ``bayesian_svc``, not of ``bayesian``: a
    prefix alone would mix the dense search's trials with a classic family's.
    """
    return re.fullmatch(re.escape(project) + r"_\d+", name) is not None


def trials_dir(directory: str | Path) -> Path:
    """The folder of the trial records."""
    return Path(directory) / TRIALS_DIR


def record_path(directory: str | Path, name: str) -> Path:
    """A finished trial's record: config, fold scores, learning curves."""
    return trials_dir(directory) / f"{name}.json"


def record_paths(directory: str | Path, project: str) -> list[Path]:
    """The records of one search's finished trials, in trial order."""
    return sorted(
        path
        for path in trials_dir(directory).glob(f"{project}_*.json")
        if is_trial_of(path.name[: -len(".json")], project)
    )


def trial_files(directory: str | Path, project: str) -> list[Path]:
    """Every file and folder one search's trials left: records, out-of-fold files, logs."""
    records = [
        path
        for path in trials_dir(directory).glob(f"{project}_*")
        if is_trial_of(path.name.split(".", 1)[0], project)
    ]
    logs = [
        path for path in logs_dir(directory).glob(f"{project}_*") if is_trial_of(path.name, project)
    ]
    return sorted(records) + sorted(logs)


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
