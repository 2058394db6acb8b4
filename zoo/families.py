"""The model families a search explores: the dense networks and six classic scikit-learn models.

Each classic family's space is declared once, as the fields of a config
(:class:`SVCConfig`, :class:`KNNConfig`, :class:`TreesConfig`,
:class:`LogisticRegressionConfig`, :class:`MLPConfig`), exactly like the dense
space (:class:`zoo.space.DenseConfig`): a field's name is the keras-tuner
hyperparameter, the key of the leaderboard's ``config`` column and the
``--fix NAME=VALUE`` name, and its spec holds the valid values, the searched
ones and the default. A family's builder hands the values as plain keyword
arguments to the scikit-learn estimator, under the estimator's own parameter
names, with two exceptions that scikit-learn spells in a form keras-tuner
cannot search (its ``Choice`` takes values of one type, and no tuple):

* ``max_depth=0`` of the tree families means no limit (scikit-learn's ``None``);
* ``hidden_layers`` and ``hidden_units`` of ``mlp`` become
  ``hidden_layer_sizes=(hidden_units,) * hidden_layers``.

Every family's estimator is a scikit-learn classifier with ``predict_proba``
(the SVC through the same calibration wrapper as the ``svc_rbf`` baseline), so
one evaluation path, the out-of-fold records and the model files serve them all.

The searched ranges come from 5-fold CV of the bundled digits' training part
(pixels / 16): SVC's rbf kernel peaks near gamma 0.1-0.3 (99.0% at C=1,
gamma 0.3) and drops below gamma 0.05 or C 0.3 (93-98%), where a Bayesian
search over wider ranges spent most of its trials; the poly kernel gives 98.9%
for almost any C and gamma, a plateau the Gaussian process kept proposing
points on, and linear and sigmoid 97-98%, so only rbf is searched (all four
stay valid: ``--fix kernel=poly``). KNN peaks at k=1-3, the trees gain
nothing past 300 trees and little from a depth limit, and logistic regression
with an L1 share trains 10-25x longer than without.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

from zoo.dense import DenseNetClassifier
from zoo.errors import ZooError
from zoo.space import (
    ChoiceSpec,
    DenseConfig,
    FloatSpec,
    IntSpec,
    SpaceConfig,
    hyperparameter,
    split_assignment,
)

DENSE = "dense"
# --family names that stand for several families.
ALL = "all"
CLASSIC = "classic"


# Spaces -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SVCConfig(SpaceConfig):
    """The hyperparameters of a support vector machine (scikit-learn's ``SVC``)."""

    C: float = hyperparameter(
        FloatSpec(1e-3, 1e4, sampling="log", search=(0.3, 300.0)),
        10.0,
        "penalty of a misclassified training point (log scale)",
    )
    gamma: float = hyperparameter(
        FloatSpec(1e-4, 10.0, sampling="log", search=(0.05, 1.0)),
        0.1,
        "kernel width of rbf, poly and sigmoid (log scale); 0.1 is scikit-learn's "
        "'scale' on the bundled digits",
    )
    kernel: str = hyperparameter(
        ChoiceSpec(("rbf", "poly", "linear", "sigmoid"), search=("rbf",)),
        "rbf",
        "kernel (poly: degree 3); the search tries rbf only",
    )

    def short(self) -> str:
        return f"{self.kernel} C={self.C:.3g} gamma={self.gamma:.3g}"


@dataclass(frozen=True)
class KNNConfig(SpaceConfig):
    """The hyperparameters of k-nearest neighbours (scikit-learn's ``KNeighborsClassifier``)."""

    n_neighbors: int = hyperparameter(IntSpec(1, 50, search=(1, 15)), 5, "neighbours that vote (k)")
    weights: str = hyperparameter(
        ChoiceSpec(("uniform", "distance")), "uniform", "votes equal or weighted by 1/distance"
    )
    metric: str = hyperparameter(
        ChoiceSpec(
            ("euclidean", "manhattan", "chebyshev", "cosine"),
            search=("euclidean", "manhattan", "cosine"),
        ),
        "euclidean",
        "distance between images",
    )

    def short(self) -> str:
        return f"k={self.n_neighbors} {self.weights} {self.metric}"


@dataclass(frozen=True)
class TreesConfig(SpaceConfig):
    """The hyperparameters of a forest (``RandomForestClassifier``, ``ExtraTreesClassifier``)."""

    n_estimators: int = hyperparameter(
        ChoiceSpec((25, 50, 100, 200, 300, 500, 1000), search=(100, 200, 300, 500)),
        100,
        "trees in the forest",
    )
    max_depth: int = hyperparameter(
        ChoiceSpec((0, 4, 6, 8, 10, 12, 16, 20, 24, 32), search=(0, 8, 12, 16, 24)),
        0,
        "deepest a tree may grow; 0: no limit, grown until pure (scikit-learn's None)",
    )
    max_features: float = hyperparameter(
        FloatSpec(0.01, 1.0, sampling="log", search=(0.05, 0.5)),
        0.125,
        "fraction of the features tried at each split (log scale); 0.125 is "
        "scikit-learn's 'sqrt' on 8x8 images",
    )
    min_samples_leaf: int = hyperparameter(
        IntSpec(1, 20, search=(1, 4)), 1, "fewest training images in a leaf"
    )

    def short(self) -> str:
        depth = self.max_depth or "unlimited"
        return (
            f"{self.n_estimators} trees depth {depth} max_features={self.max_features:.2g} "
            f"leaf>={self.min_samples_leaf}"
        )


@dataclass(frozen=True)
class LogisticRegressionConfig(SpaceConfig):
    """The hyperparameters of multinomial logistic regression (``LogisticRegression``).

    The penalty is spelled as scikit-learn 1.8+ spells it: ``l1_ratio`` (0: L2,
    1: L1, between: elastic net); ``penalty=`` is deprecated there.
    """

    C: float = hyperparameter(
        FloatSpec(1e-4, 1e4, sampling="log", search=(0.01, 1000.0)),
        1.0,
        "inverse strength of the penalty (log scale)",
    )
    l1_ratio: float = hyperparameter(
        ChoiceSpec((0.0, 0.25, 0.5, 0.75, 1.0), search=(0.0, 0.5, 1.0)),
        0.0,
        "the penalty: 0 is L2 (lbfgs), 1 is L1, between is elastic net (saga)",
    )

    def short(self) -> str:
        return f"C={self.C:.3g} l1_ratio={self.l1_ratio:g}"


@dataclass(frozen=True)
class MLPConfig(SpaceConfig):
    """The hyperparameters of scikit-learn's multilayer perceptron (``MLPClassifier``)."""

    hidden_layers: int = hyperparameter(IntSpec(1, 4, search=(1, 3)), 1, "number of hidden layers")
    hidden_units: int = hyperparameter(
        ChoiceSpec((16, 32, 64, 128, 256, 512, 1024), search=(64, 128, 256, 512)),
        128,
        "units in each hidden layer",
    )
    alpha: float = hyperparameter(
        FloatSpec(1e-7, 1.0, sampling="log", search=(1e-6, 0.1)),
        1e-4,
        "L2 penalty on the weights (log scale)",
    )
    learning_rate_init: float = hyperparameter(
        FloatSpec(1e-5, 0.1, sampling="log", search=(3e-4, 0.01)),
        1e-3,
        "Adam's learning rate (log scale)",
    )

    def short(self) -> str:
        return (
            f"{self.hidden_layers}x{self.hidden_units} alpha={self.alpha:.2g} "
            f"lr={self.learning_rate_init:.2g}"
        )


# Builders: a config in, an unfitted scikit-learn classifier out ------------------------------


def build_dense(config: DenseConfig, seed: int = 0, epochs: int = 20) -> DenseNetClassifier:
    """The dense network of ``config``, trained for ``epochs`` with ``seed``."""
    return DenseNetClassifier.from_config(config, epochs=epochs, seed=seed)


def build_svc(config: SVCConfig, seed: int = 0) -> CalibratedClassifierCV:
    """The SVC of ``config``, with class probabilities from sigmoid calibration."""
    # scikit-learn 1.9 deprecates SVC(probability=True) for this wrapper; it is the
    # svc_rbf baseline's, so its saved types are the ones the model files trust.
    svc = SVC(C=config.C, gamma=config.gamma, kernel=config.kernel, random_state=seed)
    return CalibratedClassifierCV(svc, ensemble=False, cv=5)


def build_knn(config: KNNConfig, seed: int = 0) -> KNeighborsClassifier:
    """The k-nearest-neighbours classifier of ``config`` (nothing in it is random)."""
    return KNeighborsClassifier(
        n_neighbors=config.n_neighbors, weights=config.weights, metric=config.metric
    )


def _forest_params(config: TreesConfig, seed: int) -> dict[str, Any]:
    return {
        "n_estimators": config.n_estimators,
        "max_depth": config.max_depth or None,
        "max_features": config.max_features,
        "min_samples_leaf": config.min_samples_leaf,
        "random_state": seed,
        "n_jobs": 1,
    }


def build_random_forest(config: TreesConfig, seed: int = 0) -> RandomForestClassifier:
    """The random forest of ``config``."""
    return RandomForestClassifier(**_forest_params(config, seed))


def build_extra_trees(config: TreesConfig, seed: int = 0) -> ExtraTreesClassifier:
    """The extremely randomized trees of ``config``."""
    return ExtraTreesClassifier(**_forest_params(config, seed))


def build_logistic_regression(
    config: LogisticRegressionConfig, seed: int = 0
) -> LogisticRegression:
    """The logistic regression of ``config``: lbfgs for a pure L2 penalty, saga otherwise."""
    solver = "lbfgs" if config.l1_ratio == 0 else "saga"
    return LogisticRegression(
        C=config.C, l1_ratio=config.l1_ratio, solver=solver, max_iter=1000, random_state=seed
    )


def build_mlp(config: MLPConfig, seed: int = 0) -> MLPClassifier:
    """scikit-learn's MLP of ``config`` (Adam, 200 epochs at most, as the mlp baseline)."""
    return MLPClassifier(
        hidden_layer_sizes=(config.hidden_units,) * config.hidden_layers,
        alpha=config.alpha,
        learning_rate_init=config.learning_rate_init,
        max_iter=200,
        random_state=seed,
    )


# The families ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One model family a search explores: its space and how to build its estimator.

    Attributes:
        name: the ``--family`` name.
        kind: the leaderboard's ``kind`` of its models, ``keras`` or ``sklearn``.
        config: its space, a :class:`zoo.space.SpaceConfig` subclass.
        builder: ``builder(config, seed=..., [epochs=...])``, an unfitted classifier.
        description: one line for help texts.
        trains_by_epochs: whether its estimator takes ``epochs`` (the dense nets);
            the classic models train until their own stopping rule.
    """

    name: str
    kind: str
    config: type[SpaceConfig]
    builder: Callable[..., Any]
    description: str
    trains_by_epochs: bool = False

    def create(self, config: SpaceConfig, seed: int = 0, epochs: int | None = None) -> Any:
        """Returns an unfitted classifier of this family for ``config``.

        Raises:
            ZooError: ``config`` is of another family's space.
        """
        if not isinstance(config, self.config):
            raise ZooError(
                f"the {self.name} family needs a {self.config.__name__} "
                f"(got {type(config).__name__})"
            )
        if self.trains_by_epochs:
            return self.builder(config, seed=seed, epochs=20 if epochs is None else epochs)
        return self.builder(config, seed=seed)

    def default_estimator(self, seed: int = 0) -> Any:
        """Returns the classifier of this family's default config."""
        return self.create(self.config(), seed=seed)


_FAMILIES: dict[str, Family] = {}


def _register(family: Family) -> None:
    if family.name in _FAMILIES or family.name in (ALL, CLASSIC):
        raise ValueError(f"model family {family.name!r} is already registered")
    _FAMILIES[family.name] = family


for _family in (
    Family(DENSE, "keras", DenseConfig, build_dense, "Keras dense networks", True),
    Family("svc", "sklearn", SVCConfig, build_svc, "support vector machine: C, gamma, kernel"),
    Family("knn", "sklearn", KNNConfig, build_knn, "k-nearest neighbours: k, weights, metric"),
    Family(
        "random_forest",
        "sklearn",
        TreesConfig,
        build_random_forest,
        "random forest: trees, depth, max_features, min_samples_leaf",
    ),
    Family(
        "extra_trees",
        "sklearn",
        TreesConfig,
        build_extra_trees,
        "extremely randomized trees: trees, depth, max_features, min_samples_leaf",
    ),
    Family(
        "logistic_regression",
        "sklearn",
        LogisticRegressionConfig,
        build_logistic_regression,
        "multinomial logistic regression: C, penalty (l1_ratio)",
    ),
    Family(
        "mlp",
        "sklearn",
        MLPConfig,
        build_mlp,
        "scikit-learn's MLP: layers, width, alpha, learning rate",
    ),
):
    _register(_family)


def family_names() -> list[str]:
    """Returns every family's name: ``dense`` first, then the classic ones."""
    return list(_FAMILIES)


def classic_family_names() -> list[str]:
    """Returns the classic (scikit-learn) families' names, in search order."""
    return [name for name, family in _FAMILIES.items() if family.kind == "sklearn"]


def get_family(name: str) -> Family:
    """Returns the family called ``name``.

    Raises:
        ZooError: no such family; the message lists the valid names.
    """
    if name not in _FAMILIES:
        raise ZooError(
            f"--family must be one of {', '.join(_FAMILIES)}, {CLASSIC} or {ALL} (got {name!r})"
        )
    return _FAMILIES[name]


def expand_families(name: str) -> list[str]:
    """The families ``--family name`` searches, in search order.

    One family; ``classic``: the six classic ones; ``all``: the classic ones,
    then ``dense``.

    Raises:
        ZooError: an unknown name.
    """
    if name == ALL:
        return [*classic_family_names(), DENSE]
    if name == CLASSIC:
        return classic_family_names()
    return [get_family(name).name]


def parse_fixed_for(families: list[str], assignments: list[str]) -> dict[str, dict[str, Any]]:
    """Parses ``--fix NAME=VALUE`` for the searched families.

    Each assignment pins its name in every one of ``families`` that declares
    it (``C`` in both ``svc`` and ``logistic_regression``); a name that none of
    them declares is an error.

    Returns:
        The pinned values of each family, by family name.

    Raises:
        ZooError: a missing ``=``, a name no searched family declares, or a
            value out of a family's range.
    """
    if len(families) == 1:
        return {families[0]: get_family(families[0]).config.parse_fixed(assignments)}
    fixed: dict[str, dict[str, Any]] = {name: {} for name in families}
    for text in assignments:
        name, _ = split_assignment(text)
        owners = [family for family in families if name in get_family(family).config.names()]
        if not owners:
            valid = dict.fromkeys(n for f in families for n in get_family(f).config.names())
            searched = ", ".join(families)
            raise ZooError(
                f"unknown hyperparameter {name!r} in --fix for {searched}; "
                f"valid names: {', '.join(valid)}"
            )
        for family in owners:
            fixed[family].update(get_family(family).config.parse_fixed([text]))
    return fixed
