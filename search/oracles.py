"""The search's keras-tuner oracles: which configuration each trial tries.

``make_oracle`` builds a search's random, Bayesian or Hyperband oracle,
seeded, with its warm start's first trials; under a time budget the random
and Bayesian ones replace a proposal that would take too much of the budget
left (:class:`CostRule`), and the Bayesian one continues its sequence on
resume without repeating a tried configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras_tuner as kt

from search.budget import expected_seconds, overruns
from search.ktcompat import (
    gaussian_process_proposal,
    oracle_seed,
    random_proposal,
    reseed_gaussian_process_proposals,
    seed_first_trials,
)
from search.records import trial_records
from search.spec import OBJECTIVE, SearchContext, SearchSpec
from zoo.space import DenseConfig

# Random configurations drawn to replace a proposal that would overrun the budget, at most.
COST_DRAWS = 50


def make_oracle(spec: SearchSpec, seed: int, context: SearchContext | None = None) -> kt.Oracle:
    """The keras-tuner oracle of a search: random, Bayesian or Hyperband, seeded.

    With ``spec.warm_start``, its first trials are those configurations (the
    pinned values of ``spec.fixed`` override theirs). With ``context`` and
    ``spec.cost_aware``, a random or Bayesian dense search under a time budget
    replaces a proposal that would take too much of the budget left
    (:class:`CostRule`); the warm start's trials are kept as given.
    """
    rule = None
    if context is not None and cost_rule_applies(spec):
        rule = CostRule(
            spec, context.directory, context.dataset.n_features, len(context.dataset.classes)
        )
    oracle = _make_oracle(spec, seed, rule)
    if spec.warm_start:
        seed_first_trials(oracle, warm_start_values(spec))
    return oracle


def warm_start_values(spec: SearchSpec) -> list[dict[str, Any]]:
    """The hyperparameter values of the warm start's first trials, each inside the searched space.

    Pinned values (``spec.fixed``) override the given ones; a value outside the
    searched range (an earlier run may have searched or pinned another) is
    replaced by the hyperparameter's default, so the Bayesian oracle can place
    every trial in its space.
    """
    family = spec.model_family
    space = kt.HyperParameters()
    family.config.from_hp(space, spec.fixed)
    result = []
    for given in spec.warm_start:
        values = family.config.from_dict({**given, **spec.fixed}).to_dict()
        result.append(
            {
                declared.name: values[declared.name]
                if _in_space(declared, values.get(declared.name))
                else declared.default
                for declared in space.space
            }
        )
    return result


def _in_space(declared: Any, value: Any) -> bool:
    if hasattr(declared, "min_value"):  # Int, Float
        return value is not None and declared.min_value <= value <= declared.max_value
    if hasattr(declared, "value"):  # Fixed
        return value == declared.value
    return value in declared.values  # Choice, Boolean


def cost_rule_applies(spec: SearchSpec) -> bool:
    """Whether the search's proposals are checked against the budget left (:class:`CostRule`).

    Only a random or Bayesian dense search with ``cost_aware`` and a time
    budget: Hyperband keeps its own schedule, and a classic model's trial
    takes seconds.
    """
    return (
        spec.cost_aware
        and spec.budget_minutes is not None
        and spec.tuner in ("random", "bayesian")
        and spec.model_family.trains_by_epochs
    )


class CostRule:
    """Replaces a proposal expected to take too much of the time budget left.

    The expected seconds come from the search's trial records on disk
    (``search.budget.expected_seconds``: the same shape's seconds per epoch, or
    the seconds per parameter-epoch of every finished trial; none before two
    trials finished), so a resumed search judges as an uninterrupted one
    would. A proposal expected to take more than ``search.budget.COST_FRACTION``
    of the budget left gives way to the first of up to :data:`COST_DRAWS`
    random untried configurations that fits, or, if none does, to the
    cheapest of them.

    Args:
        spec: the search settings (its budget, epochs and pinned values).
        directory: the search's folder, where the trial records are.
        input_dim: features per image.
        n_classes: number of classes.
    """

    def __init__(self, spec: SearchSpec, directory: str | Path, input_dim: int, n_classes: int):
        self.spec = spec
        self.directory = Path(directory)
        self.input_dim = int(input_dim)
        self.n_classes = int(n_classes)
        self.replaced = 0

    def expected_seconds(
        self, values: dict[str, Any], records: list[dict[str, Any]]
    ) -> float | None:
        """The seconds a trial of these hyperparameter values is expected to take."""
        config = DenseConfig.from_dict({**values, **self.spec.fixed})
        return expected_seconds(config, self.spec.epochs, records, self.input_dim, self.n_classes)

    def affordable(self, oracle: kt.Oracle, proposal: dict[str, Any]) -> dict[str, Any]:
        """``proposal`` if it fits the budget left, else a random untried one that does."""
        values = proposal.get("values")
        if not values:
            return proposal
        records = trial_records(self.directory, self.spec.project)
        budget = self.spec.budget_minutes
        expected = self.expected_seconds(values, records)
        if not overruns(expected, budget, records):
            return proposal
        chosen = (expected, proposal)
        for _ in range(COST_DRAWS):
            candidate = random_proposal(oracle)
            if not candidate.get("values"):
                break
            cost = self.expected_seconds(candidate["values"], records)
            if not overruns(cost, budget, records):
                chosen = (cost, candidate)
                break
            if cost is not None and cost < chosen[0]:
                chosen = (cost, candidate)  # the cheapest so far, should none fit
        if chosen[1] is not proposal:
            self.replaced += 1
        return chosen[1]


def _make_oracle(spec: SearchSpec, seed: int, rule: CostRule | None = None) -> kt.Oracle:
    objective = kt.Objective(OBJECTIVE, direction="max")
    common = {
        "objective": objective,
        "seed": oracle_seed(seed),
        # Diverged trials are recorded as failed and the search goes on.
        "max_consecutive_failed_trials": spec.max_trials + 1,
    }
    if spec.tuner == "random":
        return CostAwareRandomOracle(max_trials=spec.max_trials, cost_rule=rule, **common)
    if spec.tuner == "bayesian":
        # 3 random points for short searches, up to 10 for long ones, before the GP; a
        # classic family's space of 2-4 names needs no more than two per searched name.
        initial = max(3, min(10, spec.max_trials // 3))
        if not spec.model_family.trains_by_epochs:
            searched = len(set(spec.model_family.config.names()) - set(spec.fixed))
            initial = min(initial, max(3, 2 * searched))
        return ResumableBayesianOracle(
            max_trials=spec.max_trials,
            num_initial_points=min(spec.max_trials, initial),
            cost_rule=rule,
            **common,
        )
    oracle = kt.oracles.HyperbandOracle(max_epochs=spec.epochs, factor=3, **common)
    # Hyperband has no trial budget of its own; the oracle stops at max_trials.
    oracle.max_trials = spec.max_trials
    return oracle


class CostAwareRandomOracle(kt.oracles.RandomSearchOracle):
    """keras-tuner's random oracle, whose draws give way to cheaper ones under a budget.

    Args:
        cost_rule: replaces a draw that would take too much of the budget
            left (:class:`CostRule`); ``None``: every draw is kept.
        **kwargs: passed to ``keras_tuner.oracles.RandomSearchOracle``.
    """

    def __init__(self, *args, cost_rule: CostRule | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cost_rule = cost_rule

    def populate_space(self, trial_id):
        proposal = super().populate_space(trial_id)
        return self.cost_rule.affordable(self, proposal) if self.cost_rule else proposal


class ResumableBayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian oracle, made to continue its sequence on resume and never repeat.

    Each proposal's random restart points are seeded from the seed and the
    trial count (see ``search.ktcompat``), so a search stopped and resumed
    proposes what an uninterrupted one would; a proposal equal to an earlier
    trial's configuration (the Gaussian process can land on a tried point) is
    replaced by a random untried one, and so is one that would take too much
    of the budget left (``cost_rule``, :class:`CostRule`). Its acquisition
    search is keras-tuner's, vectorised
    (``search.ktcompat.gaussian_process_proposal``): the same Gaussian process
    and bound, about a fifteenth of the seconds (``benchmarks/proposal_time.py``).

    Args:
        cost_rule: the budget's check of proposals, or ``None``.
        **kwargs: passed to ``keras_tuner.oracles.BayesianOptimizationOracle``.
    """

    def __init__(self, *args, cost_rule: CostRule | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cost_rule = cost_rule

    def populate_space(self, trial_id):
        reseed_gaussian_process_proposals(self, len(self.trials))
        proposal = gaussian_process_proposal(self)
        values = proposal.get("values")
        if values and any(
            _same_values(values, trial.hyperparameters.values)
            for trial in self.trials.values()
            if trial.trial_id != trial_id
        ):
            proposal = random_proposal(self)
        return self.cost_rule.affordable(self, proposal) if self.cost_rule else proposal


def _same_values(proposal: dict[str, Any], tried: dict[str, Any]) -> bool:
    shared = set(proposal) & set(tried)
    return bool(shared) and all(proposal[name] == tried[name] for name in shared)
