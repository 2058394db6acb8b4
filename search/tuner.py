"""The keras-tuner ``Tuner`` whose trials are scored by the run's CV folds.

A trial's objective is ``cv_accuracy``: the mean validation accuracy over the
run's cross-validation folds, the same folds every baseline is scored on, so a
trial is comparable with every leaderboard row. The held-out test split is
never seen by a trial.

One tuner serves every model family (``zoo.families``): the hypermodel
declares the family's space, and a trial builds the family's estimator and
goes through the one evaluation path, ``zoo.protocol.cross_validate``. The
dense nets' folds train together, with the time budget's callback; a classic
model trains fold by fold in a second or so, and the budget is checked
between its trials.

With ``spec.early_stop`` a dense trial stops once it trails the trials trained
in full (``search.stopping``, the median stopping rule); it is recorded as
completed with the score it had, and ``stopped_early`` in its record. Under a
time budget with ``spec.cost_aware``, the oracle swaps a proposal that would
take too much of the budget left for a cheaper one (``search.oracles.CostRule``).

State is keras-tuner's own (``tuner/<project>/``): rerunning the same search
resumes, finished trials are neither lost nor rerun. Beside it each finished
trial writes its record and out-of-fold probabilities (``search.records``)
and its TensorBoard log.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import keras_tuner as kt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from search import paths
from search.budget import OverBudget, StopAtDeadline, remaining_seconds, spent_seconds
from search.hypermodel import make_hypermodel
from search.ktcompat import quiet_failed_trial_tracebacks
from search.oracles import make_oracle
from search.records import (
    duration,
    first_line,
    read_record,
    trial_name,
    trial_records,
    write_out_of_fold,
    write_record,
)
from search.spec import OBJECTIVE, SearchContext, SearchSpec
from search.stopping import MedianStopping, completed_curves, fold_mean_curve
from search.tblog import write_trial_log
from zoo.ensemble import seed_ensemble
from zoo.network import TrainingDiverged
from zoo.protocol import cross_validate_out_of_fold
from zoo.space import SpaceConfig
from zoo.stacked import release_compiled


class CVTuner(kt.Tuner):
    """A keras-tuner ``Tuner`` whose trials are scored by the run's CV folds.

    Args:
        context: the search's folder, data, folds and seed.
        spec: the search settings.
        progress: receives one line per finished trial.
        **kwargs: passed to ``keras_tuner.Tuner`` (``overwrite``...).
    """

    def __init__(
        self,
        context: SearchContext,
        spec: SearchSpec,
        progress: Callable[[str], None] = print,
        **kwargs,
    ):
        self.context = context
        self.spec = spec
        self.family = spec.model_family
        self.progress = progress
        dataset = context.dataset
        hypermodel = make_hypermodel(spec, dataset.n_features, len(dataset.classes), context.seed)
        super().__init__(
            oracle=make_oracle(spec, context.seed, context),
            hypermodel=hypermodel,
            directory=str(paths.tuner_root(context.directory)),
            project_name=spec.project,
            **kwargs,
        )
        self._X = dataset.scale(dataset.x_train)
        self._y = dataset.y_train
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
            if self.family.trains_by_epochs:
                # Clears Keras's session between trials (memory stays flat); the trainers cached
                # per shape stay, so a later trial of a known shape reuses its compiled program.
                release_compiled()

    def _cross_validate_trial(self, trial) -> dict[str, float]:
        started = time.monotonic()
        name = trial_name(self.spec.project, trial.trial_id)
        config = self.hypermodel.config(trial.hyperparameters)
        record: dict[str, Any] = {
            "trial_id": name,
            "tuner_trial_id": trial.trial_id,
            "family": self.family.name,
            "config": config.to_dict(),
        }
        hparams = {**config.to_dict(), "family": self.family.name}
        epochs = None
        if self.family.trains_by_epochs:
            epochs = int(trial.hyperparameters.values.get("tuner/epochs", self.spec.epochs))
            record["epochs"] = hparams["epochs"] = epochs
            if self.spec.executions_per_trial > 1:
                record["executions"] = hparams["executions"] = self.spec.executions_per_trial
        finished = self._finished_scores(name, record)
        if finished is not None:
            return _objective(finished)
        histories: list[dict[str, list[float]]] = []

        deadline = self._deadline()
        # A classic model trains fold by fold (the networks' folds train together,
        # stopped by their callback): past the deadline, its next fold does not start.
        fold_deadline = None if self.family.trains_by_epochs else deadline
        n_folds = len(self.context.folds)

        def on_fold(index: int, model: Any, accuracy: float) -> None:
            # Networks keep per-epoch curves; classic models have none.
            if getattr(model, "history_", None) is not None:
                histories.append(model.history_)
            if fold_deadline is not None and index + 1 < n_folds:
                if time.monotonic() > fold_deadline:
                    raise OverBudget(f"after fold {index + 1} of {n_folds}")

        callbacks: list[Any] = [StopAtDeadline(deadline)] if deadline is not None else []
        stopper = None
        # The median rule compares one network's fold curves; a trial of several executions
        # trains its networks one after another, so it always trains in full.
        if self.spec.early_stop and epochs is not None and self.spec.executions_per_trial == 1:
            # Read from disk: in a distributed search other workers finish trials too.
            records = trial_records(self.context.directory, self.spec.project)
            stopper = MedianStopping(completed_curves(records, epochs), epochs)
            callbacks.insert(0, stopper)
        estimator = self.family.create(config, seed=self.context.seed, epochs=epochs)
        if epochs is not None:
            estimator = seed_ensemble(estimator, self.spec.executions_per_trial)
        try:
            with warnings.catch_warnings():
                # A classic model stopped by its iteration cap is a point of the space
                # like any other; its CV score says how good it is.
                warnings.simplefilter("ignore", ConvergenceWarning)
                # Out-of-fold probabilities: row i as predicted by the fold model
                # that did not train on it; ensembles of trials are scored from these.
                scores, out_of_fold = cross_validate_out_of_fold(
                    estimator,
                    self._X,
                    self._y,
                    self.context.folds,
                    classes=self.context.dataset.classes,
                    callbacks=callbacks,
                    on_fold=on_fold,
                )
        except (OverBudget, TrainingDiverged, MemoryError) as error:
            message = _failure_message(error, config)
            self._write_record(name, {**record, "status": "FAILED", "message": message}, started)
            raise kt.errors.FailedTrialError(message) from None
        except Exception as error:
            # A bug, not a bad point of the space: stop the search now instead
            # of letting keras-tuner burn trials on it.
            raise kt.errors.FatalError(
                f"trial {name} crashed with {error.__class__.__name__}: {error}\n"
                + traceback.format_exc()
            ) from error
        directory = self.context.directory
        write_trial_log(paths.logs_dir(directory), name, hparams, histories, scores)
        write_out_of_fold(directory, name, out_of_fold)
        # The record last: once it is on disk, the trial's other files are too.
        record.update(status="COMPLETED", cv_scores=[float(s) for s in scores], histories=histories)
        if epochs is not None:
            # A trial stopped by the median rule is scored by its fold models as
            # they were when it stopped: a finished trial, not a failed one.
            record["stopped_early"] = stopper is not None and stopper.stopped_epoch is not None
            record["epochs_run"] = len(fold_mean_curve(histories)) or epochs
        self._write_record(name, record, started)
        return _objective(scores)

    def _finished_scores(self, name: str, record: dict[str, Any]) -> list[float] | None:
        """The fold scores of this trial if its record says it already finished.

        A kill after the record (its last file) was written but before
        keras-tuner saved the trial as done must neither lose nor redo it.
        """
        finished = read_record(self.context.directory, name)
        if (
            finished.get("status") == "COMPLETED"
            and finished.get("config") == record["config"]
            and finished.get("epochs") == record.get("epochs")
            and finished.get("executions", 1) == record.get("executions", 1)
        ):
            return finished["cv_scores"]
        return None

    def _deadline(self) -> float | None:
        """When the time budget runs out (``time.monotonic``), or ``None`` without one."""
        if self.spec.budget_minutes is None:
            return None
        records = trial_records(self.context.directory, self.spec.project)
        return self._mark + remaining_seconds(self.spec.budget_minutes, records)

    def _write_record(self, name: str, record: dict[str, Any], started: float) -> None:
        now = time.monotonic()
        record = {
            **record,
            "seconds": round(now - started, 3),
            "wall_seconds": round(now - self._mark, 3),
            # When it ended (Unix time): what a benchmark of time to a score reads.
            "ended_at": round(time.time(), 3),
        }
        write_record(self.context.directory, name, record)

    def on_search_begin(self) -> None:
        super().on_search_begin()
        self._stop_if_over_budget(trial_records(self.context.directory, self.spec.project))
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
                f"time budget of {round(self.spec.budget_minutes, 2):g} min used ({duration(spent)} in "
                f"{len(self.oracle.trials)} trials); no new trial starts"
            )

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        self._done_here += 1
        # Read from the trial records on disk, once: in a distributed search the
        # oracle lives in the chief, and other workers finish trials too.
        records = trial_records(self.context.directory, self.spec.project)
        self.progress(self._progress_line(trial, records))
        self._stop_if_over_budget(records)
        self._mark = time.monotonic()

    def _progress_line(self, trial, records: list[dict[str, Any]]) -> str:
        scores = [np.mean(r["cv_scores"]) for r in records if r.get("cv_scores")]
        best = max(scores) if scores else float("nan")
        name = trial_name(self.spec.project, trial.trial_id)
        config = self.hypermodel.config(trial.hyperparameters)
        summary = config.short()
        if not self.family.trains_by_epochs:
            summary = f"{self.family.name} {summary}"
        record = next((r for r in records if r.get("trial_id") == name), {})
        # The trial's own time (its record's), beside the search's elapsed time.
        cost = f"{float(record['seconds']):.1f} s | " if record.get("seconds") is not None else ""
        if trial.status == "COMPLETED" and record.get("cv_scores"):
            outcome = f"cv {np.mean(record['cv_scores']):.4f} ± {np.std(record['cv_scores']):.4f}"
            if record.get("stopped_early"):
                outcome += f" (stopped at epoch {record.get('epochs_run')}/{record.get('epochs')})"
        else:
            # Our record says why in one line; keras-tuner's message is a traceback.
            message = record.get("message") or first_line(trial.message or "")
            outcome = f"{str(trial.status).lower()}: {message}"
        elapsed = time.monotonic() - self._started
        total = self.spec.max_trials
        remaining = max(0, total - len(records))
        eta = elapsed / max(1, self._done_here) * remaining
        if self.spec.budget_minutes is not None:
            eta = max(0.0, min(eta, remaining_seconds(self.spec.budget_minutes, records)))
        return (
            f"[trial {len(records)}/{total}] {summary} | {outcome} | {cost}best {best:.4f} | "
            f"{duration(elapsed)} elapsed, ~{duration(eta)} left"
        )


def _objective(scores: list[float]) -> dict[str, float]:
    return {OBJECTIVE: float(np.mean(scores)), "cv_accuracy_std": float(np.std(scores))}


def _failure_message(error: BaseException, config: SpaceConfig) -> str:
    """One line on why a trial failed at a bad point of the space (or ran out of time)."""
    if isinstance(error, OverBudget):
        return f"stopped by the time budget ({error}); not scored"
    if isinstance(error, MemoryError):
        return f"out of memory ({config.short()}): {error}"
    return str(error)


def quiet_search_warnings() -> None:
    """Silences noise to a user: the Gaussian-process fit warnings and failed trials' tracebacks.

    A failed trial (diverged, out of memory, stopped by the time budget) gets
    one progress line saying why, and its record keeps the message; any other
    exception stops the search with its traceback (``FatalError``).
    """
    quiet_failed_trial_tracebacks()
    warnings.filterwarnings(
        "ignore", category=ConvergenceWarning, module="sklearn.gaussian_process"
    )


def make_tuner(
    context: SearchContext, spec: SearchSpec, progress: Callable[[str], None] = print
) -> CVTuner:
    """Builds (or reloads, resuming) the tuner of a search."""
    return CVTuner(context, spec, progress=progress, overwrite=False)
