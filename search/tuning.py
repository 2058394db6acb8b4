"""keras-tuner searches over the zoo's dense-net space, scored by the run's CV folds.

A trial's objective is ``cv_accuracy``: the mean validation accuracy over the
run's cross-validation folds, the same folds every baseline is scored on, so a
trial is comparable with every leaderboard row. The held-out test split is
never seen by a trial; only the top trials are refit and tested at the end.

State is keras-tuner's own (``RUN_DIR/tuner/<tuner>/``): rerunning the same
command resumes, finished trials are neither lost nor rerun. Beside it each
finished trial writes ``trials/<name>.json`` (fold scores and learning curves)
and ``logs/<name>/`` (TensorBoard), and ``trials.csv`` is rebuilt from disk.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from digits_zoo.artifacts import save_fitted
from digits_zoo.leaderboard import merge_rows, read_leaderboard
from zoo.files import atomic_write_text
from zoo.protocol import (
    Evaluation,
    config_json,
    cross_validate,
    model_size,
    refit_and_test,
)
from digits_zoo.runs import Run
from search.tblog import write_trial_log
from zoo.dense import DenseNetClassifier, TrainingDiverged, build_dense_model
from zoo.errors import ZooError
from zoo.space import DenseConfig, space_names
from zoo.stacked import release_compiled

TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVE = "cv_accuracy"
SPEC_FILE = "search.json"
TRIALS_CSV = "trials.csv"
TUNER_DIR = "tuner"
BUDGET_ONE_PROCESS = (
    "--budget-minutes works in one process only; drop it or use --max-trials "
    "to bound a distributed search"
)


@dataclass(frozen=True)
class SearchSpec:
    """What a search runs; recorded in ``RUN_DIR/search.json`` so workers and resumes agree."""

    tuner: str = "bayesian"
    max_trials: int = 10
    epochs: int = 20
    top_k: int = 3
    fixed: dict[str, Any] = field(default_factory=dict)
    ensemble: int | None = None
    budget_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.tuner not in TUNERS:
            raise ZooError(f"--tuner must be one of {', '.join(TUNERS)} (got {self.tuner!r})")
        for name, low in (("max_trials", 1), ("epochs", 1), ("top_k", 0), ("ensemble", 0)):
            value = getattr(self, name)
            if name == "ensemble" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = "--" + name.replace("_", "-")
                raise ZooError(f"{flag} must be an integer of at least {low} (got {value!r})")
        if self.ensemble is not None and self.ensemble > self.top_k:
            raise ZooError(
                f"--ensemble {self.ensemble} averages the top trials refit by --top-k, so "
                f"--top-k must be at least {self.ensemble} (got {self.top_k})"
            )
        budget = self.budget_minutes
        if budget is not None and (
            isinstance(budget, bool)
            or not isinstance(budget, (int, float))
            or not 0 < budget < float("inf")
        ):
            raise ZooError(f"--budget-minutes must be a positive number (got {budget!r})")
        if self.tuner == "hyperband" and self.epochs < 3:
            raise ZooError(
                f"--epochs must be at least 3 for hyperband (got {self.epochs}); "
                "it trains trials for 1/3 of the epochs and then the full count"
            )

    @property
    def ensemble_size(self) -> int:
        """How many top trials the ensemble row averages (``top_k`` unless set; <2: none)."""
        return self.top_k if self.ensemble is None else self.ensemble

    def to_dict(self) -> dict[str, Any]:
        """Returns the spec as plain JSON-ready values."""
        return asdict(self)


def make_oracle(spec: SearchSpec, seed: int) -> kt.Oracle:
    objective = kt.Objective(OBJECTIVE, direction="max")
    # keras-tuner reads seed=0 as "no seed" (`seed or random...`), so shift it.
    common = {
        "objective": objective,
        "seed": seed + 1,
        # Diverged trials are recorded as failed and the search goes on.
        "max_consecutive_failed_trials": spec.max_trials + 1,
    }
    if spec.tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=spec.max_trials, **common)
    if spec.tuner == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(
            max_trials=spec.max_trials,
            # 3 random points for short searches, up to 10 for long ones, before the GP.
            num_initial_points=min(spec.max_trials, max(3, min(10, spec.max_trials // 3))),
            **common,
        )
    oracle = kt.oracles.HyperbandOracle(max_epochs=spec.epochs, factor=3, **common)
    # Hyperband has no trial budget of its own; the oracle stops at max_trials.
    oracle.max_trials = spec.max_trials
    return oracle


class DenseHyperModel(kt.HyperModel):
    """The tuner's view of the zoo's dense-net space (declared in ``zoo.space``).

    Args:
        input_dim: features per image.
        n_classes: number of classes.
        fixed: hyperparameters pinned to one value.
    """

    def __init__(self, input_dim: int, n_classes: int, fixed: dict[str, Any] | None = None):
        super().__init__(name="dense_net")
        if input_dim < 1 or n_classes < 2:
            raise ZooError(f"need inputs and 2+ classes (got {input_dim}, {n_classes})")
        self.input_dim = input_dim
        self.n_classes = n_classes
        self.fixed = dict(fixed or {})

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        DenseConfig.from_hp(hp, self.fixed)

    def config(self, hp: kt.HyperParameters) -> DenseConfig:
        """Reads a trial's config from its hyperparameters."""
        return DenseConfig.from_hp(hp, self.fixed)

    def build(self, hp: kt.HyperParameters):
        return build_dense_model(self.config(hp), self.input_dim, self.n_classes)


def trial_name(spec_tuner: str, trial_id: str) -> str:
    """The name of a trial's files: ``<tuner>_<trial id>``."""
    return f"{spec_tuner}_{trial_id}"


class OverBudget(RuntimeError):
    """A trial was still training when the search's time budget ran out."""


class StopAtDeadline(keras.callbacks.Callback):
    """Stops a fit at the end of the first epoch past ``deadline`` (``time.monotonic``)."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_epoch_end(self, epoch, logs=None) -> None:
        if time.monotonic() > self.deadline:
            raise OverBudget(f"after epoch {epoch + 1}")


class CVTuner(kt.Tuner):
    """A keras-tuner ``Tuner`` whose trials are scored by the run's CV folds.

    Args:
        run: the opened run (data, folds, seed).
        spec: the search settings.
        progress: receives one line per finished trial.
        **kwargs: passed to ``keras_tuner.Tuner`` (``overwrite``...).
    """

    def __init__(
        self, run: Run, spec: SearchSpec, progress: Callable[[str], None] = print, **kwargs
    ):
        self.run = run
        self.spec = spec
        self.progress = progress
        hypermodel = DenseHyperModel(run.dataset.n_features, len(run.dataset.classes), spec.fixed)
        super().__init__(
            oracle=make_oracle(spec, run.seed),
            hypermodel=hypermodel,
            directory=str(run.path / TUNER_DIR),
            project_name=spec.tuner,
            **kwargs,
        )
        self._X = run.dataset.scale(run.dataset.x_train)
        self._y = run.dataset.y_train
        self._started = time.monotonic()
        # Start of the current trial's share of the search's wall time: the
        # oracle's proposal, the training and the bookkeeping (the budget's unit).
        self._mark = self._started
        self._done_here = 0

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        """Cross-validates one configuration; returns its ``cv_accuracy``."""
        try:
            return self._cross_validate_trial(trial)
        finally:
            # The next trial compiles its own network; keep memory flat over a search.
            release_compiled()

    def _cross_validate_trial(self, trial) -> dict[str, float]:
        started = time.monotonic()
        hp = trial.hyperparameters
        name = trial_name(self.spec.tuner, trial.trial_id)
        config = self.hypermodel.config(hp)
        epochs = int(hp.values.get("tuner/epochs", self.spec.epochs))
        estimator = DenseNetClassifier.from_config(config, epochs=epochs, seed=self.run.seed)
        histories: list[dict[str, list[float]]] = []
        # Out-of-fold probabilities: row i as predicted by the fold model that
        # did not train on it; ensembles of trials are scored from these.
        out_of_fold = np.zeros((len(self._y), len(self.run.dataset.classes)), dtype="float32")

        def on_fold(index: int, model: Any, accuracy: float) -> None:
            histories.append(model.history_)
            val = self.run.folds[index][1]
            out_of_fold[val] = model.predict_proba(self._X[val])

        record = {
            "trial_id": name,
            "tuner_trial_id": trial.trial_id,
            "config": config.to_dict(),
            "epochs": epochs,
        }
        finished = _read_record(self.run.path, name)
        if (
            finished.get("status") == "COMPLETED"
            and finished.get("config") == record["config"]
            and finished.get("epochs") == epochs
        ):
            # Killed after this trial's record (its last file) was written but
            # before keras-tuner saved the trial as done: keep it, do not redo it.
            scores = finished["cv_scores"]
            return {OBJECTIVE: float(np.mean(scores)), "cv_accuracy_std": float(np.std(scores))}
        callbacks = []
        if self.spec.budget_minutes is not None:
            spent = spent_seconds(trial_records(self.run, self.spec.tuner))
            remaining = self.spec.budget_minutes * 60 - spent
            callbacks.append(StopAtDeadline(self._mark + remaining))
        try:
            scores = cross_validate(
                estimator,
                self._X,
                self._y,
                self.run.folds,
                on_fold=on_fold,
                callbacks=callbacks,
            )
        except OverBudget as error:
            message = f"stopped by the time budget ({error}); not scored"
            self._write_failed(name, record, message, started)
            raise kt.errors.FailedTrialError(message) from None
        except TrainingDiverged as error:
            self._write_failed(name, record, str(error), started)
            raise kt.errors.FailedTrialError(str(error)) from None
        except MemoryError as error:
            message = f"out of memory ({config.short()}): {error}"
            self._write_failed(name, record, message, started)
            raise kt.errors.FailedTrialError(message) from None
        except Exception as error:
            # A bug, not a bad point of the space: stop the search now instead
            # of letting keras-tuner burn trials on it.
            raise kt.errors.FatalError(
                f"trial {name} crashed with {error.__class__.__name__}: {error}\n"
                + traceback.format_exc()
            ) from error
        seconds = time.monotonic() - started
        record.update(
            status="COMPLETED",
            cv_scores=[float(s) for s in scores],
            histories=histories,
            seconds=round(seconds, 3),
            wall_seconds=round(time.monotonic() - self._mark, 3),
        )
        write_trial_log(
            self.run.path / "logs",
            name,
            {**config.to_dict(), "epochs": epochs},
            histories,
            scores,
        )
        write_out_of_fold(self.run.path, name, out_of_fold)
        # The record last: once it is on disk, the trial's other files are too.
        self._write_record(name, record)
        return {OBJECTIVE: float(np.mean(scores)), "cv_accuracy_std": float(np.std(scores))}

    def _write_failed(self, name: str, record: dict[str, Any], message: str, started: float):
        now = time.monotonic()
        self._write_record(
            name,
            {
                **record,
                "status": "FAILED",
                "message": message,
                "seconds": round(now - started, 3),
                "wall_seconds": round(now - self._mark, 3),
            },
        )

    def _write_record(self, name: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.run.path / "trials" / f"{name}.json", json.dumps(record) + "\n")

    def on_search_begin(self) -> None:
        super().on_search_begin()
        self._stop_if_over_budget(trial_records(self.run, self.spec.tuner))
        self._mark = time.monotonic()

    def _stop_if_over_budget(self, records: list[dict[str, Any]]) -> None:
        """Lets no new trial start once this search's trials have used its time budget."""
        if self.spec.budget_minutes is None:
            return
        spent = spent_seconds(records)
        if spent >= self.spec.budget_minutes * 60 and self.oracle.max_trials > len(
            self.oracle.trials
        ):
            # The oracle stops handing out trials at max_trials.
            self.oracle.max_trials = len(self.oracle.trials)
            self.progress(
                f"time budget of {self.spec.budget_minutes:g} min used ({_duration(spent)} in "
                f"{len(self.oracle.trials)} trials); no new trial starts"
            )

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        self._done_here += 1
        # Read from the trial records on disk, once: in a distributed search the
        # oracle lives in the chief, and other workers finish trials too.
        records = trial_records(self.run, self.spec.tuner)
        self.progress(self._progress_line(trial, records))
        self._stop_if_over_budget(records)
        self._mark = time.monotonic()

    def _progress_line(self, trial, records: list[dict[str, Any]]) -> str:
        scores = [np.mean(r["cv_scores"]) for r in records if r.get("cv_scores")]
        best = max(scores) if scores else float("nan")
        name = trial_name(self.spec.tuner, trial.trial_id)
        config = self.hypermodel.config(trial.hyperparameters)
        record = _read_record(self.run.path, name)
        if trial.status == "COMPLETED" and record.get("cv_scores"):
            outcome = f"cv {np.mean(record['cv_scores']):.4f} ± {np.std(record['cv_scores']):.4f}"
        else:
            # Our record says why in one line; keras-tuner's message is a traceback.
            message = record.get("message") or _first_line(trial.message or "")
            outcome = f"{str(trial.status).lower()}: {message}"
        elapsed = time.monotonic() - self._started
        total = self.spec.max_trials
        remaining = max(0, total - len(records))
        eta = elapsed / max(1, self._done_here) * remaining
        if self.spec.budget_minutes is not None:
            left = self.spec.budget_minutes * 60 - spent_seconds(records)
            eta = max(0.0, min(eta, left))
        return (
            f"[trial {len(records)}/{total}] {config.short()} | {outcome} | best {best:.4f} | "
            f"{_duration(elapsed)} elapsed, ~{_duration(eta)} left"
        )


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _read_record(run_dir: Path, name: str) -> dict[str, Any]:
    path = Path(run_dir) / "trials" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_out_of_fold(run_dir: Path, name: str, probabilities: np.ndarray) -> None:
    """Writes a trial's out-of-fold probabilities as ``trials/<name>.oof.npy`` (atomically)."""
    folder = Path(run_dir) / "trials"
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.oof.npy.tmp"
    with open(temporary, "wb") as handle:
        np.save(handle, probabilities)
    temporary.replace(folder / f"{name}.oof.npy")


def read_out_of_fold(run_dir: Path, name: str) -> np.ndarray | None:
    """A trial's out-of-fold probabilities, or ``None`` if it has none on disk."""
    path = Path(run_dir) / "trials" / f"{name}.oof.npy"
    return np.load(path) if path.is_file() else None


def trial_records(run: Run, tuner: str) -> list[dict[str, Any]]:
    """The trial records (``trials/<tuner>_*.json``) of this run's ``tuner`` search."""
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in (run.path / "trials").glob(f"{tuner}_*.json")
    ]


def spent_seconds(records: list[dict[str, Any]]) -> float:
    """The wall seconds a search's trials have spent, from their records.

    A trial's share (``wall_seconds``) runs from the end of the trial before
    it, so the oracle's proposals count too; trials recorded without it count
    their training time (``seconds``).
    """
    return sum(float(r.get("wall_seconds") or r.get("seconds") or 0.0) for r in records)


def _read_specs(run: Run) -> dict[str, Any]:
    path = run.path / SPEC_FILE
    if not path.is_file():
        return {"current": None, "searches": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def prepare_search(run: Run, spec: SearchSpec, overwrite: bool = False) -> None:
    """Records the search settings in ``RUN_DIR/search.json``, refusing an incompatible resume.

    The file keeps each tuner's settings (a run may hold a random and a
    Bayesian search side by side) and names the current one, which the
    distributed workers read.

    Raises:
        ZooError: this tuner's recorded search used other epochs or pinned values.
    """
    specs = _read_specs(run)
    recorded = specs["searches"].get(spec.tuner)
    if recorded and not overwrite:
        # More trials or another top-k extend a search; other epochs or pinned
        # values would make its trials incomparable.
        changed = [k for k in ("epochs", "fixed") if recorded.get(k) != spec.to_dict()[k]]
        if changed:
            raise ZooError(
                f"{run.path} holds a {spec.tuner} search with other settings "
                f"({', '.join(f'{k}={recorded.get(k)!r}' for k in changed)}); rerun with the same "
                "flags to resume, or pass --overwrite to start it afresh"
            )
    if overwrite:
        import shutil

        shutil.rmtree(run.path / TUNER_DIR / spec.tuner, ignore_errors=True)
        for record in (run.path / "trials").glob(f"{spec.tuner}_*.json"):
            record.unlink()
        for log in (run.path / "logs").glob(f"{spec.tuner}_*"):
            shutil.rmtree(log, ignore_errors=True)
    specs["current"] = spec.tuner
    specs["searches"][spec.tuner] = spec.to_dict()
    atomic_write_text(run.path / SPEC_FILE, json.dumps(specs, indent=2) + "\n")


def read_spec(run: Run, tuner: str | None = None) -> SearchSpec:
    """Reads the recorded settings of a run's search (the current one by default)."""
    specs = _read_specs(run)
    tuner = tuner or specs["current"]
    if tuner not in specs["searches"]:
        raise ZooError(
            f"{run.path} holds no {tuner or ''} search; start one with digits-zoo search"
        )
    return SearchSpec(**specs["searches"][tuner])


def quiet_search_warnings() -> None:
    """Silences noise to a user: the Gaussian-process fit warnings and failed trials' tracebacks.

    A failed trial (diverged, out of memory, stopped by the time budget) gets
    one progress line saying why, and its record keeps the message; any other
    exception stops the search with its traceback (``FatalError``).
    """
    from sklearn.exceptions import ConvergenceWarning

    try:
        # keras-tuner prints each failed trial's traceback while this flag is on.
        from keras_tuner.src import config as tuner_config
    except ImportError:  # a keras-tuner that moved it: tracebacks stay
        pass
    else:
        tuner_config.DEBUG = False

    warnings.filterwarnings(
        "ignore", category=ConvergenceWarning, module="sklearn.gaussian_process"
    )


def make_tuner(run: Run, spec: SearchSpec, progress: Callable[[str], None] = print) -> CVTuner:
    """Builds (or reloads, resuming) the tuner of a run."""
    return CVTuner(run, spec, progress=progress, overwrite=False)


def read_trials(run: Run, spec: SearchSpec) -> list[dict[str, Any]]:
    """Reads every trial of a search from disk: keras-tuner's state plus the trial records.

    Returns:
        One dict per trial, in trial order, with ``trial_id`` (the file name),
        ``status``, ``cv_accuracy_mean``, ``cv_accuracy_std``, ``cv_folds``,
        ``seconds``, ``epochs``, ``config`` (JSON), each hyperparameter, ``message``.
    """
    project = run.path / TUNER_DIR / spec.tuner
    rows = []
    for trial_file in sorted(project.glob("trial_*/trial.json")):
        state = json.loads(trial_file.read_text(encoding="utf-8"))
        tuner_id = state["trial_id"]
        name = trial_name(spec.tuner, tuner_id)
        record = _read_record(run.path, name)
        values = state.get("hyperparameters", {}).get("values", {})
        config = DenseConfig.from_dict({**values, **spec.fixed})
        scores = record.get("cv_scores") if state.get("status") == "COMPLETED" else None
        rows.append(
            {
                "trial_id": name,
                "status": state.get("status"),
                "cv_accuracy_mean": float(np.mean(scores)) if scores else "",
                "cv_accuracy_std": float(np.std(scores)) if scores else "",
                "cv_folds": json.dumps(scores) if scores else "",
                "seconds": record.get("seconds", ""),
                "epochs": record.get("epochs", values.get("tuner/epochs", spec.epochs)),
                "config": config.to_json(),
                **config.to_dict(),
                "message": _first_line(state.get("message") or record.get("message") or ""),
            }
        )
    return rows


def write_trials_csv(run: Run, spec: SearchSpec) -> list[dict[str, Any]]:
    """Rebuilds ``RUN_DIR/trials.csv`` from disk (every tuner's trials) and returns this search's."""
    rows = []
    recorded = _read_specs(run)["searches"]
    for tuner in TUNERS:
        if (run.path / TUNER_DIR / tuner).is_dir() and tuner in recorded:
            rows.extend(read_trials(run, read_spec(run, tuner)))
    columns = [
        "trial_id", "status", "cv_accuracy_mean", "cv_accuracy_std", "cv_folds", "seconds",
        "epochs", "config", *space_names(), "message",
    ]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run.path / TRIALS_CSV, buffer.getvalue())
    return [row for row in rows if row["trial_id"].startswith(f"{spec.tuner}_")]


def leaderboard_name(trial: dict[str, Any]) -> str:
    """The leaderboard name of a trial's model: ``search_<tuner>_<id>_<layers>x<units>_<act>``."""
    return f"search_{trial['trial_id']}_{trial['n_layers']}x{trial['units']}_{trial['activation']}"


def finish_search(
    run: Run, spec: SearchSpec, progress: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Refits the top trials on the whole training part, tests them, merges them into the leaderboard.

    Idempotent: a top trial already on the leaderboard with its model on disk
    is not refit again.

    Returns:
        The whole leaderboard, best first.
    """
    trials = write_trials_csv(run, spec)
    completed = [t for t in trials if t["status"] == "COMPLETED" and t["cv_accuracy_mean"] != ""]
    completed.sort(key=lambda t: (-t["cv_accuracy_mean"], t["trial_id"]))
    existing = {}
    if (run.path / "leaderboard.csv").is_file():
        existing = {row["model"]: row for row in read_leaderboard(run.path)}
    board = list(existing.values())
    for trial in completed[: spec.top_k]:
        name = leaderboard_name(trial)
        known = existing.get(name)
        if known and known.get("model_path") and (run.path / known["model_path"]).exists():
            continue
        config = DenseConfig.from_dict(trial)
        estimator = DenseNetClassifier.from_config(
            config, epochs=int(trial["epochs"]), seed=run.seed
        )
        started = time.monotonic()
        result = refit_and_test(
            name, "keras", estimator, run.dataset, json.loads(trial["cv_folds"])
        )
        row = result.row()
        row["source"] = "search"
        row["model_path"] = save_fitted(result.fitted, run.path, name)
        board = merge_rows(run.path, [row])
        progress(
            f"refit {name}: cv {row['cv_accuracy_mean']:.4f}, test {row['test_accuracy']:.4f} "
            f"({_duration(time.monotonic() - started)})"
        )
    if spec.ensemble_size >= 2:
        board = add_ensemble(run, spec, completed[: spec.ensemble_size], progress) or board
    return board or rank_existing(run)


def ensemble_name(spec: SearchSpec, n_members: int) -> str:
    """The leaderboard name of a search's ensemble: ``ensemble_<tuner>_top<n>``."""
    return f"ensemble_{spec.tuner}_top{n_members}"


def add_ensemble(
    run: Run,
    spec: SearchSpec,
    members: list[dict[str, Any]],
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]] | None:
    """Adds the soft-voting ensemble of the best trials to the leaderboard.

    Its CV score is measured on the run's folds with no new training: for
    fold ``f`` it averages the members' out-of-fold probabilities on fold
    ``f``'s validation rows, each predicted by the member's fold-``f`` network,
    which never trained on those rows. Its test score averages the refit
    members (already on the leaderboard) on the held-out test split.

    Returns:
        The leaderboard, or ``None`` when there are too few members with
        out-of-fold probabilities on disk (trials of an older search).
    """
    from digits_zoo.artifacts import load_fitted
    from zoo.ensemble import DenseEnsembleClassifier

    if len(members) < 2:
        return None
    probabilities = [read_out_of_fold(run.path, m["trial_id"]) for m in members]
    if any(p is None for p in probabilities):
        progress("no ensemble: some top trials have no out-of-fold probabilities on disk")
        return None
    board = {row["model"]: row for row in read_leaderboard(run.path)}
    name = ensemble_name(spec, len(members))
    fitted = [load_fitted(run.path / board[leaderboard_name(m)]["model_path"]) for m in members]
    ensemble = DenseEnsembleClassifier.from_fitted(fitted)
    known = board.get(name)
    if known and known.get("config") == config_json(ensemble) and known.get("model_path"):
        if (run.path / known["model_path"]).exists():
            return None
    y = run.dataset.y_train
    classes = np.asarray(run.dataset.classes)
    averaged = np.mean(probabilities, axis=0)
    cv_scores = [
        float(np.mean(classes[averaged[val].argmax(axis=1)] == y[val])) for _, val in run.folds
    ]
    X_test = run.dataset.scale(run.dataset.x_test)
    started = time.perf_counter()
    predicted = ensemble.predict(X_test)
    predict_seconds = time.perf_counter() - started
    member_rows = [board[leaderboard_name(m)] for m in members]
    result = Evaluation(
        model=name,
        kind="keras",
        cv_scores=cv_scores,
        test_accuracy=float(accuracy_score(run.dataset.y_test, predicted)),
        test_macro_f1=float(f1_score(run.dataset.y_test, predicted, average="macro")),
        fit_seconds=round(sum(float(r["fit_seconds"]) for r in member_rows), 4),
        predict_seconds_per_1000=round(predict_seconds * 1000 / max(1, len(predicted)), 6),
        params=model_size(ensemble),
        config=config_json(ensemble),
    )
    row = result.row()
    row["source"] = "search"
    row["model_path"] = save_fitted(ensemble, run.path, name)
    progress(
        f"ensemble of {', '.join(m['trial_id'] for m in members)}: "
        f"cv {row['cv_accuracy_mean']:.4f}, test {row['test_accuracy']:.4f}"
    )
    return merge_rows(run.path, [row])


def rank_existing(run: Run) -> list[dict[str, Any]]:
    """The run's leaderboard, or nothing if it has none yet."""
    return read_leaderboard(run.path) if (run.path / "leaderboard.csv").is_file() else []


def run_search(
    run: Run,
    *,
    tuner: str = "bayesian",
    max_trials: int = 10,
    epochs: int = 20,
    top_k: int = 3,
    workers: int = 1,
    overwrite: bool = False,
    fixed: dict[str, Any] | None = None,
    progress: Callable[[str], None] = print,
    worker_timeout: float | None = None,
    ensemble: int | None = None,
    budget_minutes: float | None = None,
) -> list[dict[str, Any]]:
    """Runs (or resumes) a search, then refits its top trials into the leaderboard.

    Args:
        run: the opened run.
        tuner: ``random``, ``bayesian`` or ``hyperband``.
        max_trials: trials in all (a resumed search counts those already run).
        epochs: epochs per fit (hyperband's maximum).
        top_k: best trials refit, tested and added to the leaderboard.
        workers: trials run at once; above 1, keras-tuner's distributed mode
            with a chief and that many worker processes on this machine.
        overwrite: forget this tuner's earlier trials in the run directory.
        fixed: hyperparameters pinned to one value.
        progress: receives the progress lines.
        worker_timeout: with workers, seconds without a finished trial after
            which the search is stopped (default: generous, from the budget).
        ensemble: how many of the top trials the ensemble row averages
            (default ``top_k``; below 2, no ensemble).
        budget_minutes: no trial starts once this search's trials (this
            session's and earlier ones') have taken this long; one process only.

    Returns:
        The whole leaderboard, best first.

    Raises:
        ZooError: bad settings, before any training.
    """
    spec = SearchSpec(
        tuner=tuner,
        max_trials=max_trials,
        epochs=epochs,
        top_k=top_k,
        fixed=fixed or {},
        ensemble=ensemble,
        budget_minutes=budget_minutes,
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ZooError(f"--workers must be an integer of at least 1 (got {workers!r})")
    if budget_minutes is not None and (workers > 1 or "KERASTUNER_ORACLE_IP" in os.environ):
        raise ZooError(BUDGET_ONE_PROCESS)
    quiet_search_warnings()
    prepare_search(run, spec, overwrite=overwrite)
    role = os.environ.get("KERASTUNER_TUNER_ID")
    if role is not None and "KERASTUNER_ORACLE_IP" in os.environ:
        # One process of a search spread over hosts by hand (see the README):
        # the chief serves the oracle, then refits; a worker runs trials.
        make_tuner(run, spec, progress).search(verbose=0)
        if "chief" not in role:
            progress(f"worker {role} done; the chief refits the top trials")
            return rank_existing(run)
    elif workers == 1:
        search_tuner = make_tuner(run, spec, progress)
        search_tuner.search(verbose=0)
    else:
        from search.distributed import run_distributed

        run_distributed(run, spec, workers, progress=progress, stall_timeout=worker_timeout)
    return finish_search(run, spec, progress)


def summarize_best(trials: list[dict[str, Any]]) -> str:
    """One line on the best completed trial, for the end of a search."""
    completed = [t for t in trials if t["status"] == "COMPLETED" and t["cv_accuracy_mean"] != ""]
    if not completed:
        return "no trial completed"
    best = max(completed, key=lambda t: t["cv_accuracy_mean"])
    failed = len([t for t in trials if t["status"] != "COMPLETED"])
    return (
        f"{len(completed)} trials completed, {failed} failed; best {best['trial_id']} "
        f"cv {best['cv_accuracy_mean']:.4f} ({DenseConfig.from_dict(best).short()})"
    )
