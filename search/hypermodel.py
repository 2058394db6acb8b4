"""The tuner's view of a family's space: the dense nets' or a classic model's hypermodel."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from search.spec import SearchSpec
from zoo.errors import ZooError
from zoo.families import Family
from zoo.network import build_dense_model
from zoo.space import DenseConfig, SpaceConfig


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
