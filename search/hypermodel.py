"""The tuner's view of a family's space (the dense nets' or a classic model's), and the oracle."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from search.ktcompat import oracle_seed, reseed_gaussian_process_proposals, seed_first_trials
from search.spec import OBJECTIVE, SearchSpec
from zoo.errors import ZooError
from zoo.families import Family
from zoo.network import build_dense_model
from zoo.space import DenseConfig, SpaceConfig


def make_oracle(spec: SearchSpec, seed: int) -> kt.Oracle:
    """The keras-tuner oracle of a search: random, Bayesian or Hyperband, seeded.

    With ``spec.warm_start``, its first trials are those configurations (the
    pinned values of ``spec.fixed`` override theirs).
    """
    oracle = _make_oracle(spec, seed)
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


def _make_oracle(spec: SearchSpec, seed: int) -> kt.Oracle:
    objective = kt.Objective(OBJECTIVE, direction="max")
    common = {
        "objective": objective,
        "seed": oracle_seed(seed),
        # Diverged trials are recorded as failed and the search goes on.
        "max_consecutive_failed_trials": spec.max_trials + 1,
    }
    if spec.tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=spec.max_trials, **common)
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
            **common,
        )
    oracle = kt.oracles.HyperbandOracle(max_epochs=spec.epochs, factor=3, **common)
    # Hyperband has no trial budget of its own; the oracle stops at max_trials.
    oracle.max_trials = spec.max_trials
    return oracle


class ResumableBayesianOracle(kt.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian oracle, made to continue its sequence on resume and never repeat.

    Each proposal's random restart points are seeded from the seed and the
    trial count (see ``search.ktcompat``), so a search stopped and resumed
    proposes what an uninterrupted one would; a proposal equal to an earlier
    trial's configuration (the Gaussian process can land on a tried point) is
    replaced by a random untried one.
    """

    def populate_space(self, trial_id):
        reseed_gaussian_process_proposals(self, len(self.trials))
        proposal = super().populate_space(trial_id)
        values = proposal.get("values")
        if values and any(
            _same_values(values, trial.hyperparameters.values)
            for trial in self.trials.values()
            if trial.trial_id != trial_id
        ):
            return self._random_populate_space()
        return proposal


def _same_values(proposal: dict[str, Any], tried: dict[str, Any]) -> bool:
    shared = set(proposal) & set(tried)
    return bool(shared) and all(proposal[name] == tried[name] for name in shared)


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
        """Declares the space's hyperparameters on ``hp`` (pinned ones as fixed)."""
        DenseConfig.from_hp(hp, self.fixed)

    def config(self, hp: kt.HyperParameters) -> DenseConfig:
        """Reads a trial's config from its hyperparameters."""
        return DenseConfig.from_hp(hp, self.fixed)

    def build(self, hp: kt.HyperParameters):
        """The default-config network for ``hp`` (keras-tuner's smoke test of the space)."""
        return build_dense_model(self.config(hp), self.input_dim, self.n_classes)


class ClassicHyperModel(kt.HyperModel):
    """The tuner's view of a classic family's space (declared in ``zoo.families``).

    ``build(hp)`` returns the unfitted scikit-learn classifier of ``hp``'s
    config, as keras-tuner's ``SklearnTuner`` expects of a hypermodel.

    Args:
        family: the classic family.
        fixed: hyperparameters pinned to one value.
        seed: the seed of the estimators it builds.
    """

    def __init__(self, family: Family, fixed: dict[str, Any] | None = None, seed: int = 0):
        super().__init__(name=family.name)
        if family.trains_by_epochs:
            raise ZooError(f"{family.name} is not a classic family; use DenseHyperModel")
        self.family = family
        self.fixed = dict(fixed or {})
        self.seed = seed

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        """Declares the family's hyperparameters on ``hp`` (pinned ones as fixed)."""
        self.family.config.from_hp(hp, self.fixed)

    def config(self, hp: kt.HyperParameters) -> SpaceConfig:
        """Reads a trial's config from its hyperparameters."""
        return self.family.config.from_hp(hp, self.fixed)

    def build(self, hp: kt.HyperParameters):
        """The unfitted classifier of ``hp``'s config (the defaults on a fresh ``hp``)."""
        return self.family.create(self.config(hp), seed=self.seed)


def make_hypermodel(spec: SearchSpec, input_dim: int, n_classes: int, seed: int) -> kt.HyperModel:
    """The hypermodel of a search's family: it declares the space and reads trials' configs."""
    family = spec.model_family
    if family.trains_by_epochs:
        return DenseHyperModel(input_dim, n_classes, spec.fixed)
    return ClassicHyperModel(family, spec.fixed, seed)
