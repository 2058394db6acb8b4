"""Trial records: what each finished trial leaves on disk, and the tables rebuilt from them.

A trial writes ``trials/<project>_<id>.json`` (family, config, fold scores,
per-fold learning curves of a network, seconds, when it ended, status) and
``trials/<project>_<id>.oof.npy`` (its out-of-fold probabilities, whatever its
family); keras-tuner keeps its own ``trial.json``. Every table of trials
(``trials.csv``, the report, the progress line, the budget) is rebuilt from
these files, never from memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from search import paths
from search.spec import TUNERS, SearchSpec, read_specs
from zoo.errors import ZooError
from zoo.families import DENSE, family_names, get_family
from zoo.files import atomic_write_text, read_array, read_json, write_array

# Every family's hyperparameters get a column (empty in other families' rows);
# a name two families share (C) is one column.
HYPERPARAMETER_COLUMNS = list(
    dict.fromkeys(name for family in family_names() for name in get_family(family).config.names())
)
TRIAL_COLUMNS = [
    "trial_id", "family", "status", "cv_accuracy_mean", "cv_accuracy_std", "cv_folds",
    "seconds", "epochs", "executions", "stopped_early", "epochs_run", "config",
    *HYPERPARAMETER_COLUMNS, "message",
]  # fmt: skip


def trial_name(project: str, trial_id: str) -> str:
    """The name of a trial's files: ``<project>_<trial id>`` (``bayesian_svc_07``)."""
    return f"{project}_{trial_id}"


def read_record(directory: str | Path, name: str) -> dict[str, Any]:
    """A trial's record, or ``{}`` if it has none yet.

    Raises:
        ZooError: the record is damaged.
    """
    path = paths.record_path(directory, name)
    if not path.is_file():
        return {}
    record = read_json(path, "trial record")
    if not isinstance(record, dict):
        raise ZooError(
            f"damaged trial record (not a JSON object) (got {str(path)!r}); delete it and "
            "rerun the search to redo the trial"
        )
    return record


def write_record(directory: str | Path, name: str, record: dict[str, Any]) -> None:
    """Writes a trial's record (atomically)."""
    atomic_write_text(paths.record_path(directory, name), json.dumps(record) + "\n")


def trial_records(directory: str | Path, project: str) -> list[dict[str, Any]]:
    """The trial records of the folder's search ``project`` (``bayesian``, ``bayesian_svc``)."""
    return [
        read_record(directory, path.name[: -len(".json")])
        for path in paths.record_paths(directory, project)
    ]


def write_out_of_fold(directory: str | Path, name: str, probabilities: np.ndarray) -> None:
    """Writes a trial's out-of-fold probabilities (atomically)."""
    write_array(paths.out_of_fold_path(directory, name), probabilities)


def read_out_of_fold(directory: str | Path, name: str) -> np.ndarray | None:
    """A trial's out-of-fold probabilities, or ``None`` if it has none.

    Raises:
        ZooError: the file is damaged (empty, cut short, not a ``.npy`` file).
    """
    return read_array(paths.out_of_fold_path(directory, name), "out-of-fold probabilities")


def first_line(text: str) -> str:
    """The last non-empty line of a message (a traceback's is the error), cut to 160 characters."""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def duration(seconds: float) -> str:
    """``1m05s`` or ``42s``."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def read_trials(directory: str | Path, spec: SearchSpec) -> list[dict[str, Any]]:
    """Reads every trial of a search from disk: keras-tuner's state plus the trial records.

    Returns:
        One dict per trial, in trial order, with ``trial_id`` (the file name),
        ``family``, ``status``, ``cv_accuracy_mean``, ``cv_accuracy_std``,
        ``cv_folds``, ``seconds``, ``epochs`` (empty for a classic family),
        ``executions`` (the networks trained per trial and averaged,
        ``SearchSpec.executions_per_trial``; empty for a classic family),
        ``stopped_early`` (stopped by the median rule, ``search.stopping``),
        ``epochs_run`` (the epochs it trained; empty for a classic family),
        ``config`` (JSON), each hyperparameter of the family, ``message``.
    """
    project = paths.tuner_project(directory, spec.project)
    family = spec.model_family
    rows = []
    for trial_file in sorted(project.glob("trial_*/trial.json")):
        state = read_json(trial_file, "keras-tuner trial state")
        if not isinstance(state, dict) or "trial_id" not in state:
            raise ZooError(
                f"damaged keras-tuner trial state (no trial_id) (got {str(trial_file)!r}); "
                "restore it, or rerun the search with --overwrite"
            )
        name = trial_name(spec.project, state["trial_id"])
        record = read_record(directory, name)
        values = state.get("hyperparameters", {}).get("values", {})
        config = family.config.from_dict({**values, **spec.fixed})
        scores = record.get("cv_scores") if state.get("status") == "COMPLETED" else None
        epochs = epochs_run = executions = ""
        if family.trains_by_epochs:
            executions = int(record.get("executions", spec.executions_per_trial))
            epochs = record.get("epochs", values.get("tuner/epochs", spec.epochs))
            epochs_run = record.get("epochs_run", epochs) if scores else ""
        rows.append(
            {
                "trial_id": name,
                "family": family.name,
                "status": state.get("status"),
                "cv_accuracy_mean": float(np.mean(scores)) if scores else "",
                "cv_accuracy_std": float(np.std(scores)) if scores else "",
                "cv_folds": json.dumps(scores) if scores else "",
                "seconds": record.get("seconds", ""),
                "epochs": epochs,
                "executions": executions,
                "stopped_early": bool(record.get("stopped_early", False)),
                "epochs_run": epochs_run,
                "config": config.to_json(),
                **config.to_dict(),
                "message": first_line(state.get("message") or record.get("message") or ""),
            }
        )
    return rows


def recorded_searches(directory: str | Path) -> list[SearchSpec]:
    """The settings of every search the folder holds, by tuner and then by family."""
    order = {name: index for index, name in enumerate(family_names())}
    specs = [SearchSpec(**recorded) for recorded in read_specs(directory)["searches"].values()]
    specs = [spec for spec in specs if paths.tuner_project(directory, spec.project).is_dir()]
    return sorted(specs, key=lambda spec: (TUNERS.index(spec.tuner), order[spec.family]))


def write_trials_csv(directory: str | Path, spec: SearchSpec) -> list[dict[str, Any]]:
    """Rebuilds ``trials.csv`` from disk (every search's trials) and returns this search's."""
    rows = []
    mine: list[dict[str, Any]] = []
    for searched in recorded_searches(directory):
        trials = read_trials(directory, searched)
        rows.extend(trials)
        if searched.project == spec.project:
            mine = trials
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TRIAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(paths.trials_csv_path(directory), buffer.getvalue())
    return mine


def read_trials_csv(directory: str | Path) -> list[dict[str, str]]:
    """The rows of ``trials.csv`` as strings, or ``[]`` when the folder holds no search.

    Raises:
        ZooError: the file is not UTF-8 CSV, or has a cell longer than CSV's
            field limit (128 KiB; a config cell takes well under 1 KiB).
    """
    path = paths.trials_csv_path(directory)
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            return list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else str(error)
        raise _damaged_trials_csv(path, reason[:200]) from None


def _damaged_trials_csv(path: Path, reason: str) -> ZooError:
    return ZooError(
        f"damaged trials.csv ({reason}) (got {str(path)!r}); restore it, or delete it and run "
        "a search in that folder again, which rebuilds it from the trial records"
    )


def best_configs(directory: str | Path, family: str, limit: int) -> list[dict[str, Any]]:
    """The configurations of a run's best completed trials of ``family``, best first, distinct.

    Read from the run's ``trials.csv`` (any dataset), for a warm start. Each
    one is checked as a configuration of the family (its values may still lie
    outside the space searched next: ``search.oracles.warm_start_values``
    replaces those).

    Args:
        directory: the earlier run's folder.
        family: the model family (``dense``...).
        limit: the most configurations returned.

    Raises:
        ZooError: the folder holds no ``trials.csv``, or it is damaged (see
            :func:`read_trials_csv`; a score that is not a number, a config
            that is not a JSON object of the family's hyperparameters).
    """
    path = paths.trials_csv_path(directory)
    if not path.is_file():
        raise ZooError(
            f"--warm-start needs a run directory with trials.csv (got {str(directory)!r}); "
            "pass the folder of an earlier digits-zoo search"
        )
    scored = []
    for row in read_trials_csv(directory):
        if (
            (row.get("family") or DENSE) != family
            or row.get("status") != "COMPLETED"
            or not row.get("cv_accuracy_mean")
        ):
            continue
        trial = repr(str(row.get("trial_id"))[:40])
        try:
            score = float(row["cv_accuracy_mean"])
        except ValueError:
            raise _damaged_trials_csv(
                path, f"trial {trial}: cv_accuracy_mean is not a number"
            ) from None
        if math.isfinite(score):
            scored.append((score, row))
    scored.sort(key=lambda pair: (-pair[0], pair[1].get("stopped_early") == "True"))
    config_class = get_family(family).config
    configs: list[dict[str, Any]] = []
    for _, row in scored:
        trial = repr(str(row.get("trial_id"))[:40])
        try:
            config = json.loads(row.get("config") or "")
        except ValueError:
            raise _damaged_trials_csv(path, f"trial {trial}: config is not valid JSON") from None
        if not isinstance(config, dict):
            raise _damaged_trials_csv(path, f"trial {trial}: config is not a JSON object")
        try:
            config_class.from_dict(config)
        except (ZooError, TypeError, ValueError) as error:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise _damaged_trials_csv(path, f"trial {trial}: {reason}") from None
        if config not in configs:
            configs.append(config)
    return configs[:limit]


def completed_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that completed with a score, best CV first.

    Among equal scores a trial trained in full ranks ahead of one stopped
    early (its score is a lower bound of what the full trial would reach,
    but the full one's is measured on the refit's epoch count); then by name.
    """
    completed = [t for t in trials if t["status"] == "COMPLETED" and t["cv_accuracy_mean"] != ""]
    return sorted(
        completed,
        key=lambda t: (-t["cv_accuracy_mean"], bool(t.get("stopped_early")), t["trial_id"]),
    )


def summarize_best(trials: list[dict[str, Any]]) -> str:
    """One line on the best completed trial, for the end of a search."""
    completed = completed_trials(trials)
    if not completed:
        return "no trial completed"
    best = completed[0]
    failed = len([t for t in trials if t["status"] != "COMPLETED"])
    config = get_family(best.get("family") or DENSE).config.from_dict(best)
    return (
        f"{len(completed)} trials completed, {failed} failed; best {best['trial_id']} "
        f"cv {best['cv_accuracy_mean']:.4f} ({config.short()})"
    )
