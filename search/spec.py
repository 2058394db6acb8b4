"""What a search runs (:class:`SearchSpec`) and what it runs on (:class:`SearchContext`).

Both are recorded in the folder's ``search.json`` so that resumes and
distributed workers agree with the process that started the search.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from search import paths
from zoo.data import Dataset, load_dataset
from zoo.errors import ZooError
from zoo.families import DENSE, Family, get_family
from zoo.files import atomic_write_text, read_json
from zoo.protocol import Folds, make_folds
from zoo.validation import check_integer

TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVE = "cv_accuracy"
# The network of the augmentation study (benchmarks/augmentation.py) and of notebook 05:
# 1x256 ReLU, batch norm, dropout 0.2, affine copies at strength 0.5, cosine decay, batch 64,
# Adam at 1e-3. It was the search's one first trial before DENSE_FIRST_TRIALS.
RELU_1X256: dict[str, Any] = {
    "n_layers": 1,
    "units": 256,
    "activation": "relu",
    "dropout_rate": 0.2,
    "normalization": "batch",
    "l2": 0.0,
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 64,
    "label_smoothing": 0.0,
    "lr_schedule": "cosine",
    "augment": "affine",
    # Half of the strength the affine copies had before it was searched: 20 errors
    # against 28 on the 13 new writers (benchmarks/augmentation.py, 4 seeds).
    "augment_strength": 0.5,
}
# The first trials of a fresh dense search from the command line (without --warm-start),
# in order. Three cheap 1x256 networks (10-15 s a trial on 2 cores): GELU, layer norm, label
# smoothing 0.1, cosine decay and gentle copies, which differ in dropout and batch size. Of
# 20 configurations measured on the bundled digits' folds of seeds 0, 1 and 2
# (benchmarks/RESULTS.md, "Strong first trials"), they scored highest among the cheap ones
# with affine copies: 0.9924-0.9951 CV alone, and 0.9951, 0.9958 and 0.9944 as the greedy
# ensemble of the three (RELU_1X256: 0.9896, 0.9930, 0.9910 alone). A strong score early and
# cheaply also sets a high bar for the median stopping rule. Their copies are handwriting
# ones at strength 0.5 (affine plus slant, stroke width and elastic distortion): against
# affine ones (seed 0, the same three) the bundled digits' CV went from 0.9937, 0.9944,
# 0.9944 to 0.9951, 0.9951, 0.9958, UCI's 13 new writers from 0.9878, 0.9889, 0.9905 to
# 0.9894, 0.9911, 0.9922, and the shipped export's k = 0 reading of another population
# (MNIST's SD-3) from 0.775 to 0.823 (benchmarks/RESULTS.md, "Reading other writers").
_GELU_1X256: dict[str, Any] = {
    **RELU_1X256,
    "activation": "gelu",
    "normalization": "layer",
    "dropout_rate": 0.3,
    "label_smoothing": 0.1,
    "learning_rate": 2e-3,
}
DENSE_FIRST_TRIALS: tuple[dict[str, Any], ...] = (
    {**_GELU_1X256, "batch_size": 128, "learning_rate": 3e-3, "augment": "handwriting"},
    {**_GELU_1X256, "augment": "handwriting"},
    {**_GELU_1X256, "dropout_rate": 0.4, "augment": "handwriting"},
)
# The second first trial with two layers of 256: on optdigits it read UCI's 13 new writers at
# 0.9944 / 0.9950 (seeds 0 / 1) against 0.9911 / 0.9889, and MNIST's SD-3 digits 1.4 points
# better (benchmarks/RESULTS.md, "Capacity and copies at k = 0"), at about three times a 1x256
# trial's time (127 s against 38-48 s on optdigits' 5 folds, 2 cores). It takes the third
# first trial's place in a search given at least ROOMY_BUDGET_MINUTES: as the fourth it would
# face the median stopping rule, which stops a slow starter at its first chance.
DENSE_WIDE_FIRST_TRIAL: dict[str, Any] = {**DENSE_FIRST_TRIALS[1], "n_layers": 2}
ROOMY_BUDGET_MINUTES = 5.0
# The convolutional stem's configuration (zoo.space.DenseConfig.conv_filters): 64 filters, then
# one hidden layer of 256 ReLU units, handwriting copies at strength 0.5. One trial of it on
# optdigits' 30 writers read UCI's 13 new writers at 0.9939 and MNIST's SD-3 digits 1.6 points
# better with no help than the 30-minute job's dense ensemble (benchmarks/RESULTS.md, "A
# convolutional stem on the same rows"). It trains CONV_STEM_EPOCHS passes over its 17x copies
# (150 s an epoch on optdigits' 5 folds, 2 cores), where the 1x256 dense trials train 20, so it
# is searched on its own, every hyperparameter pinned (benchmarks/accuracy.py).
CONV_STEM_TRIAL: dict[str, Any] = {
    **RELU_1X256,
    "conv_filters": 64,
    "normalization": "none",
    "dropout_rate": 0.4,
    "label_smoothing": 0.05,
    "augment": "handwriting",
}
CONV_STEM_EPOCHS = 3
# Its networks per trial (SearchSpec.executions_per_trial): the stem, and the same stem
# seeded one more, averaged.
CONV_STEM_EXECUTIONS = 2


def dense_first_trials(budget_minutes: float | None) -> tuple[dict[str, Any], ...]:
    """A fresh dense search's first trials: :data:`DENSE_FIRST_TRIALS`, the third replaced by
    :data:`DENSE_WIDE_FIRST_TRIAL` under a budget of at least :data:`ROOMY_BUDGET_MINUTES`.

    Without a budget, or under a shorter one (``make demo``'s minute), the three cheap ones."""
    if budget_minutes is not None and float(budget_minutes) >= ROOMY_BUDGET_MINUTES:
        return (*DENSE_FIRST_TRIALS[:2], DENSE_WIDE_FIRST_TRIAL)
    return DENSE_FIRST_TRIALS


BUDGET_ONE_PROCESS = (
    "--budget-minutes works in one process only; drop it or use --max-trials "
    "to bound a distributed search"
)


@dataclass(frozen=True)
class SearchSpec:
    """What a search runs; recorded in ``search.json`` so workers and resumes agree.

    ``family`` is the model family searched (``zoo.families``): ``dense`` (the
    default) or a classic one. ``epochs`` applies to the dense family only, and
    so does ``ensemble`` (the rounds of greedy selection over the networks); a classic
    family's trials train until their estimator's own stopping rule.

    ``early_stop`` stops a dense trial that trails the finished trials
    (``search.stopping``, the median stopping rule); a ``search.json`` written
    before it existed reads as off, so such a search resumes unchanged.
    Hyperband keeps its own schedule and refuses it.

    ``cost_aware`` replaces, under a time budget, a proposal of a random or
    Bayesian dense search expected to take more than a third of the budget
    left (``search.oracles.CostRule``); it does nothing elsewhere. Like
    ``early_stop``, a ``search.json`` written before it existed resumes without it.

    ``warm_start`` holds configurations (hyperparameter values, e.g. the best of
    an earlier run, ``search.records.best_configs``) the first trials take, in order.

    ``executions_per_trial`` (keras-tuner's name) trains a dense trial's network that
    many times, seeded the run's seed, then one more, and so on; the trial is scored,
    refit and shipped as their equal-weight ensemble (``zoo.ensemble.seed_ensemble``).
    A ``search.json`` written before it existed reads as 1.
    """

    tuner: str = "bayesian"
    max_trials: int = 10
    epochs: int = 20
    top_k: int = 3
    fixed: dict[str, Any] = field(default_factory=dict)
    ensemble: int | None = None
    budget_minutes: float | None = None
    family: str = DENSE
    early_stop: bool = False
    cost_aware: bool = True
    warm_start: list[dict[str, Any]] = field(default_factory=list)
    executions_per_trial: int = 1

    def __post_init__(self) -> None:
        if self.tuner not in TUNERS:
            raise ZooError(f"--tuner must be one of {', '.join(TUNERS)} (got {self.tuner!r})")
        family = get_family(self.family)
        if self.tuner == "hyperband" and not family.trains_by_epochs:
            raise ZooError(
                "--tuner hyperband shares out training epochs, which a classic family does "
                f"not have (got the {self.family} family); use --tuner bayesian or random, or "
                "--family dense"
            )
        unknown = sorted(set(self.fixed) - set(family.config.names()))
        if unknown:
            raise ZooError(
                f"unknown hyperparameter {unknown[0]!r} pinned for the {self.family} family; "
                f"valid names: {', '.join(family.config.names())}"
            )
        check_integer("--max-trials", self.max_trials, 1)
        check_integer("--epochs", self.epochs, 1)
        check_integer("--top-k", self.top_k, 0)
        if self.ensemble is not None:
            check_integer("--ensemble", self.ensemble, 0)
        check_integer("--executions-per-trial", self.executions_per_trial, 1)
        if self.executions_per_trial > 1 and not family.trains_by_epochs:
            raise ZooError(
                "--executions-per-trial trains a network again with other seeds, which the "
                f"{self.family} family is not (got {self.executions_per_trial}); drop it or "
                "use --family dense"
            )
        budget = self.budget_minutes
        if budget is not None and (
            isinstance(budget, bool)
            or not isinstance(budget, (int, float))
            or not 0 < budget < float("inf")
        ):
            raise ZooError(f"--budget-minutes must be a positive number (got {budget!r})")
        if not isinstance(self.early_stop, bool):
            raise ZooError(f"early_stop must be True or False (got {self.early_stop!r})")
        if not isinstance(self.cost_aware, bool):
            raise ZooError(f"cost_aware must be True or False (got {self.cost_aware!r})")
        if self.early_stop and self.tuner == "hyperband":
            raise ZooError(
                "hyperband stops trials on its own schedule (got early_stop with --tuner "
                "hyperband); pass --no-early-stop or use --tuner bayesian or random"
            )
        if self.early_stop and not family.trains_by_epochs:
            raise ZooError(
                f"early stopping compares per-epoch curves, which the {self.family} family does "
                "not have (got early_stop); pass --no-early-stop or --family dense"
            )
        if self.warm_start:
            if self.tuner == "hyperband":
                raise ZooError(
                    "--warm-start sets the first trials of a random or bayesian search (got "
                    "--tuner hyperband); use --tuner bayesian or random"
                )
            if len(self.warm_start) > self.max_trials:
                raise ZooError(
                    f"--warm-start gives {len(self.warm_start)} first trials, more than "
                    f"--max-trials (got {self.max_trials}); raise --max-trials"
                )
            for values in self.warm_start:
                if not isinstance(values, dict):
                    raise ZooError(f"a warm-start configuration must be a dict (got {values!r})")
                family.config.from_dict({**values, **self.fixed})
        if self.tuner == "hyperband" and self.epochs < 3:
            raise ZooError(
                f"--epochs must be at least 3 for hyperband (got {self.epochs}); "
                "it trains trials for 1/3 of the epochs and then the full count"
            )

    @property
    def model_family(self) -> Family:
        """The searched family: its space and how to build its estimator."""
        return get_family(self.family)

    @property
    def project(self) -> str:
        """keras-tuner's project name, which names the search's folder, trials and records.

        The tuner's name for the dense networks (``bayesian``: run directories
        made before there were families resume as they were), and
        ``<tuner>_<family>`` for a classic family (``bayesian_svc``).
        """
        return self.tuner if self.family == DENSE else f"{self.tuner}_{self.family}"

    def to_dict(self) -> dict[str, Any]:
        """Returns the spec as plain JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True)
class SearchContext:
    """What a search runs on: its folder, the data, the CV folds and the seed.

    Args:
        directory: the folder the search keeps its state in (the run directory).
        dataset: the data; trials see its training part only.
        folds: the CV folds every trial is scored on.
        seed: the seed of the oracle and of every fit.
        source: how another process reloads the same data and folds:
            ``data`` (a path, or ``None`` for the bundled digits), ``test_size``
            and ``folds`` (the fold count).
    """

    directory: Path
    dataset: Dataset
    folds: Folds
    seed: int
    source: dict[str, Any]

    @classmethod
    def from_source(cls, directory: str | Path, source: dict[str, Any]) -> SearchContext:
        """Reloads the data and folds that ``source`` records (in a worker process)."""
        dataset = load_dataset(source["data"], test_size=source["test_size"], seed=source["seed"])
        folds = make_folds(dataset.y_train, source["folds"], source["seed"])
        return cls(Path(directory), dataset, folds, source["seed"], dict(source))


def read_specs(directory: str | Path) -> dict[str, Any]:
    """The whole ``search.json``: the current search, each search's settings, the data source.

    Searches are keyed by their project (:attr:`SearchSpec.project`).
    """
    path = paths.spec_path(directory)
    if not path.is_file():
        return {"current": None, "searches": {}}
    specs = read_json(path, "search settings")
    if not isinstance(specs, dict) or not isinstance(specs.get("searches"), dict):
        raise ZooError(
            f"{path} is not a digits-zoo search record (damaged or edited); restore it, or "
            "delete it and rerun the search with --overwrite"
        )
    return specs


def prepare_search(context: SearchContext, spec: SearchSpec, overwrite: bool = False) -> SearchSpec:
    """Records the search settings in ``search.json``, refusing an incompatible resume.

    The file keeps each search's settings under its project (a folder may hold
    a random and a Bayesian search side by side, and a search per family),
    names the current one and records the data source, which the distributed
    workers read.

    A resumed search keeps early stopping only if it had it: a search recorded
    without it (or before the setting existed) resumes without it, so its
    trials stay comparable; a resume may turn it off. The budget's cost rule
    (``cost_aware``) resumes the same way, so a resumed search proposes what
    an uninterrupted one would. A resumed search keeps its recorded warm start.

    Returns:
        The settings the search runs with (``spec``, with the resumed
        search's early stopping and cost rule).

    Raises:
        ZooError: this project's recorded search used other epochs, executions per trial or
            pinned values.
    """
    directory = context.directory
    specs = read_specs(directory)
    recorded = specs["searches"].get(spec.project)
    if recorded and not overwrite:
        # More trials or another top-k extend a search; other epochs, executions or
        # pinned values would make its trials incomparable. Epochs mean nothing to a
        # classic family's trials.
        keys = ("fixed",)
        if spec.model_family.trains_by_epochs:
            keys = ("epochs", "executions_per_trial", "fixed")
        defaults = {"executions_per_trial": 1}
        changed = [k for k in keys if recorded.get(k, defaults.get(k)) != spec.to_dict()[k]]
        if changed:
            what = spec.tuner if spec.family == DENSE else f"{spec.tuner} {spec.family}"
            raise ZooError(
                f"{directory} holds a {what} search with other settings "
                f"({', '.join(f'{k}={recorded.get(k)!r}' for k in changed)}); rerun with the same "
                "flags to resume, or pass --overwrite to start it afresh"
            )
    if recorded and not overwrite and spec.early_stop:
        spec = replace(spec, early_stop=bool(recorded.get("early_stop", False)))
    if recorded and not overwrite and spec.cost_aware:
        spec = replace(spec, cost_aware=bool(recorded.get("cost_aware", False)))
    if recorded and not overwrite:
        # The oracle hands the warm start's configurations out by trial count: a
        # resume keeps the recorded ones.
        spec = replace(spec, warm_start=list(recorded.get("warm_start", [])))
    if overwrite:
        shutil.rmtree(paths.tuner_project(directory, spec.project), ignore_errors=True)
        for leftover in paths.trial_files(directory, spec.project):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink()
    specs["current"] = spec.project
    specs["searches"][spec.project] = spec.to_dict()
    specs["source"] = {**context.source, "seed": context.seed}
    atomic_write_text(paths.spec_path(directory), json.dumps(specs, indent=2) + "\n")
    return spec


def read_spec(directory: str | Path, project: str | None = None) -> SearchSpec:
    """Reads the recorded settings of a folder's search (the current one by default).

    Args:
        directory: the search's folder.
        project: the search's project (``bayesian``, ``bayesian_svc``...).
    """
    specs = read_specs(directory)
    project = project or specs["current"]
    if project not in specs["searches"]:
        raise ZooError(
            f"{directory} holds no {project or ''} search; start one with digits-zoo search"
        )
    return SearchSpec(**specs["searches"][project])


def read_context(directory: str | Path) -> SearchContext:
    """Reloads the context of the folder's recorded search (for a worker process)."""
    specs = read_specs(directory)
    if "source" not in specs:
        raise ZooError(
            f"{paths.spec_path(directory)} records no data source; rerun digits-zoo search there"
        )
    return SearchContext.from_source(directory, specs["source"])
