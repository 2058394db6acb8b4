"""Search spaces, each declared once; here the dense-network space.

Every hyperparameter of the zoo's dense networks is one field of
:class:`DenseConfig`. Its declaration (type, range, default) lives in the
field's metadata, and that single declaration serves all of these:

* the keras-tuner space (:meth:`SpaceConfig.from_hp` calls ``hp.Int``,
  ``hp.Float`` or ``hp.Choice`` with the same name, range and default),
* validation of a plain config (:meth:`SpaceConfig.__post_init__`),
* the parameters of :class:`zoo.dense.DenseNetClassifier`,
* the leaderboard's ``config`` column and the ``--fix NAME=VALUE`` flag.

:class:`SpaceConfig` holds what every space shares (declaring, reading,
validating, parsing ``--fix``); the classic models' spaces in
:mod:`zoo.families` are subclasses declared the same way.

A declaration holds two ranges: the values a config may take (validation,
``--fix``, the estimator) and, where narrower, the values a search explores
(``search=``). The searched ranges leave out what measured poorly or costly on
the bundled digits under a time budget (sigmoid and tanh, widths below 256,
four layers, learning rates far from 1e-3, SGD and RMSprop, batch 32, the
strongest L2); every value stays valid, and ``--fix`` still pins any of
them.

The zoo never imports keras-tuner: ``from_hp`` only calls methods of the
``hp`` object it is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zoo.augment import KINDS, MAX_STRENGTH
from zoo.errors import ZooError


@dataclass(frozen=True)
class IntSpec:
    """An integer hyperparameter valid in ``[low, high]``, searched in ``search`` (default: all)."""

    low: int
    high: int
    search: tuple[int, int] | None = None

    def declare(self, hp: Any, name: str, default: int) -> int:
        low, high = self.search or (self.low, self.high)
        return hp.Int(name, low, high, default=default)

    def coerce(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not _is_integral(value):
            raise ZooError(
                f"{name} must be an integer in [{self.low}, {self.high}] (got {value!r})"
            )
        value = int(value)
        if not self.low <= value <= self.high:
            raise ZooError(f"{name} must be an integer in [{self.low}, {self.high}] (got {value})")
        return value

    def describe(self) -> str:
        searched = f"; searched [{self.search[0]}, {self.search[1]}]" if self.search else ""
        return f"int in [{self.low}, {self.high}]{searched}"


@dataclass(frozen=True)
class FloatSpec:
    """A float hyperparameter in ``[low, high]``, sampled linearly or on a log scale."""

    low: float
    high: float
    sampling: str = "linear"
    step: float | None = None
    search: tuple[float, float] | None = None

    def declare(self, hp: Any, name: str, default: float) -> float:
        low, high = self.search or (self.low, self.high)
        return hp.Float(name, low, high, step=self.step, sampling=self.sampling, default=default)

    def coerce(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_number(value):
            raise ZooError(f"{name} must be a number in [{self.low}, {self.high}] (got {value!r})")
        value = float(value)
        # A tiny tolerance lets values that went through a float32 round trip pass.
        tolerance = 1e-9 * max(1.0, abs(self.high))
        if not (math.isfinite(value) and self.low - tolerance <= value <= self.high + tolerance):
            raise ZooError(f"{name} must be a number in [{self.low}, {self.high}] (got {value})")
        return min(max(value, self.low), self.high)

    def describe(self) -> str:
        scale = ", log scale" if self.sampling == "log" else ""
        searched = f"; searched [{self.search[0]}, {self.search[1]}]" if self.search else ""
        return f"float in [{self.low}, {self.high}{scale}]{searched}"


@dataclass(frozen=True)
class ChoiceSpec:
    """A hyperparameter with a fixed list of allowed values."""

    values: tuple
    search: tuple | None = None

    def declare(self, hp: Any, name: str, default: Any) -> Any:
        return hp.Choice(name, list(self.search or self.values), default=default)

    def coerce(self, name: str, value: Any) -> Any:
        for allowed in self.values:
            if isinstance(allowed, str):
                if value == allowed:
                    return allowed
            elif not isinstance(value, (str, bool)) and _is_number(value) and value == allowed:
                return type(allowed)(value)
        listed = ", ".join(repr(v) for v in self.values)
        raise ZooError(f"{name} must be one of {listed} (got {value!r})")

    def describe(self) -> str:
        text = "one of " + ", ".join(str(v) for v in self.values)
        if self.search:
            text += "; searched " + ", ".join(str(v) for v in self.search)
        return text


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str)


def _is_integral(value: Any) -> bool:
    return _is_number(value) and float(value) == int(float(value))


def hyperparameter(
    spec: IntSpec | FloatSpec | ChoiceSpec, default: Any, help_text: str, searched: bool = True
):
    """Declares one hyperparameter of a space: its spec, default and one-line help.

    ``searched=False`` keeps it out of the keras-tuner space unless ``--fix`` pins it: the
    search trains its default. keras-tuner's random oracle draws one seed per declared
    hyperparameter, so declaring a new one would change every later trial of a seeded
    search; one declared only when pinned leaves the searches recorded before it unchanged.
    """
    return field(default=default, metadata={"spec": spec, "help": help_text, "searched": searched})


_Config = TypeVar("_Config", bound="SpaceConfig")


class SpaceConfig:
    """What every search space's config shares; subclasses are frozen dataclasses.

    A subclass declares one field per hyperparameter with :func:`hyperparameter`
    (its spec, default and one-line help). The field names are the keras-tuner
    hyperparameter names, the estimator's parameters, the keys of the
    leaderboard's ``config`` column and the ``--fix`` names.

    Raises:
        ZooError: a value is outside its declared range, naming the parameter.
    """

    def __post_init__(self) -> None:
        for spec_field in dataclasses.fields(self):
            spec = spec_field.metadata["spec"]
            value = spec.coerce(spec_field.name, getattr(self, spec_field.name))
            object.__setattr__(self, spec_field.name, value)

    @classmethod
    def names(cls) -> list[str]:
        """Returns the hyperparameter names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def searched_names(cls) -> list[str]:
        """Returns the names a search declares when none is pinned, in declaration order."""
        return [f.name for f in dataclasses.fields(cls) if f.metadata["searched"]]

    @classmethod
    def specs(cls) -> dict[str, IntSpec | FloatSpec | ChoiceSpec]:
        """Returns each hyperparameter's declaration, by name."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """Returns ``(name, range, default, help)`` for every hyperparameter."""
        return [
            (
                f.name,
                f.metadata["spec"].describe()
                + ("" if f.metadata["searched"] else "; not searched"),
                f.default,
                f.metadata["help"],
            )
            for f in dataclasses.fields(cls)
        ]

    @classmethod
    def from_hp(cls: type[_Config], hp: Any, fixed: dict[str, Any] | None = None) -> _Config:
        """Declares the space on a keras-tuner ``HyperParameters`` and reads a config.

        Args:
            hp: a ``keras_tuner.HyperParameters`` (only its methods are used).
            fixed: names pinned to one value (``hp.Fixed``), already validated.

        Returns:
            The config holding the values ``hp`` chose (its defaults on a fresh ``hp``).
        """
        fixed = fixed or {}
        values = {}
        for spec_field in dataclasses.fields(cls):
            name = spec_field.name
            if name in fixed:
                values[name] = hp.Fixed(name, fixed[name])
            elif not spec_field.metadata["searched"]:
                values[name] = spec_field.default
            else:
                values[name] = spec_field.metadata["spec"].declare(hp, name, spec_field.default)
        return cls(**values)

    @classmethod
    def from_dict(cls: type[_Config], values: dict[str, Any]) -> _Config:
        """Builds a config from a mapping, ignoring keys that are not hyperparameters."""
        names = set(cls.names())
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def parse_fixed(cls, assignments: list[str]) -> dict[str, Any]:
        """Parses ``NAME=VALUE`` strings into validated hyperparameter values.

        Raises:
            ZooError: an unknown name, a missing ``=`` or a value out of range.
        """
        specs = cls.specs()
        fixed = {}
        for text in assignments:
            name, value = split_assignment(text)
            if name not in specs:
                raise ZooError(
                    f"unknown hyperparameter {name!r} in --fix; valid names: {', '.join(specs)}"
                )
            fixed[name] = specs[name].coerce(name, value)
        return fixed

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as a plain dict of ``int``/``float``/``str``."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Returns the config as sorted, compact JSON (the leaderboard's ``config``)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def short(self) -> str:
        """Returns a short human-readable summary, for progress lines."""
        return " ".join(
            f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
            for name, value in self.to_dict().items()
        )


def split_assignment(text: str) -> tuple[str, Any]:
    """Splits one ``--fix NAME=VALUE`` into the name and the value (JSON where it parses).

    Raises:
        ZooError: no ``=``.
    """
    name, sep, raw = text.partition("=")
    if not sep:
        raise ZooError(f"--fix takes NAME=VALUE (got {text!r}); for example --fix n_layers=2")
    value: Any = raw.strip()
    try:
        value = json.loads(value)
    except ValueError:
        pass
    return name.strip().replace("-", "_"), value


@dataclass(frozen=True)
class DenseConfig(SpaceConfig):
    """The hyperparameters of one dense network: a plain, validated, serialisable value.

    Values are converted to plain ``int``/``float``/``str`` (Keras ``Dense``
    rejects ``np.int64`` units) and checked against the declared ranges.

    Raises:
        ZooError: a value is outside its declared range, naming the parameter.
    """

    n_layers: int = hyperparameter(IntSpec(1, 4, search=(1, 3)), 2, "number of hidden layers")
    units: int = hyperparameter(
        ChoiceSpec((8, 16, 32, 64, 128, 256, 512, 1024), search=(256, 512, 1024)),
        256,
        "units in each hidden layer",
    )
    activation: str = hyperparameter(
        ChoiceSpec(
            ("relu", "elu", "gelu", "selu", "tanh", "sigmoid"), search=("relu", "elu", "gelu")
        ),
        "relu",
        "activation of the hidden layers (and of a convolutional stem)",
    )
    dropout_rate: float = hyperparameter(
        FloatSpec(0.0, 0.5, step=0.1, search=(0.1, 0.5)), 0.2, "dropout after each hidden layer"
    )
    normalization: str = hyperparameter(
        ChoiceSpec(("none", "batch", "layer")), "none", "normalization before each activation"
    )
    l2: float = hyperparameter(
        ChoiceSpec((0.0, 1e-5, 1e-4, 1e-3), search=(0.0, 1e-5, 1e-4)),
        0.0,
        "L2 penalty on the hidden layers' (and a convolutional stem's) kernels",
    )
    optimizer: str = hyperparameter(
        ChoiceSpec(("adam", "adamw", "rmsprop", "sgd"), search=("adam", "adamw")),
        "adam",
        "optimizer",
    )
    learning_rate: float = hyperparameter(
        FloatSpec(1e-4, 3e-2, sampling="log", search=(3e-4, 3e-3)), 1e-3, "initial learning rate"
    )
    batch_size: int = hyperparameter(
        ChoiceSpec((32, 64, 128, 256), search=(64, 128, 256)), 128, "examples per training step"
    )
    label_smoothing: float = hyperparameter(
        ChoiceSpec((0.0, 0.05, 0.1)), 0.0, "label smoothing of the cross-entropy"
    )
    lr_schedule: str = hyperparameter(
        ChoiceSpec(("constant", "cosine")),
        "constant",
        "learning rate held, or decayed to zero over the fit (cosine)",
    )
    # Handwriting copies are searched, and the strong first trials use them at strength
    # 0.5 (search.spec): on UCI's writer-independent test they read as well as affine
    # copies, and another population's digits (MNIST's SD-3) about 5 points better
    # (benchmarks/RESULTS.md, "Reading other writers").
    augment: str = hyperparameter(
        ChoiceSpec(KINDS, search=("none", "shift", "affine", "handwriting")),
        "none",
        "training copies: none, 1-pixel shifts (9x), shifts plus turns and scaling (17x) or "
        "those plus slant, stroke width and elastic distortion (17x)",
    )
    # Always declared, though only affine and handwriting copies read it: a
    # conditional keras-tuner scope would make the space awkward to pin and
    # warm-start, and the tuner soon learns a value that changes nothing. The
    # default keeps the first affine copies; the search reaches lower, where
    # affine copies did best on UCI's writer-independent test (strength 0.5:
    # 20 errors of 1,797 against 28 at 1 and 37.5 at 2).
    augment_strength: float = hyperparameter(
        FloatSpec(0.0, MAX_STRENGTH, step=0.25, search=(0.25, 1.5)),
        1.0,
        "scales the random training copies' turns, shifts, slant, stroke and distortion",
    )

    # Declared only when pinned (--fix conv_filters=64): a search trains dense networks
    # unless asked. On optdigits' 8x8 rows one 64-filter net made one error more than the
    # dense ensemble on UCI's 13 new writers (11 against 10) and read MNIST's SD-3 digits
    # 1.6-2.0 points better with no help and 1.5-1.6 after adapting to 20 of them per class
    # (benchmarks/RESULTS.md, "A convolutional stem on the same rows").
    conv_filters: int = hyperparameter(
        ChoiceSpec((0, 8, 16, 32, 64, 96, 128)),
        0,
        "convolutional stem before the hidden layers: 0 for none, else the filters of its "
        "first two 3x3 convolutions (then 2x2 pooling, two of twice the filters, pooling); "
        "needs square pictures",
        searched=False,
    )

    def short(self) -> str:
        """Returns a short human-readable summary, for progress lines."""
        text = f"{self.n_layers}x{self.units} {self.activation}"
        if self.conv_filters:
            text = f"conv{self.conv_filters} " + text
        if self.dropout_rate:
            text += f" drop{self.dropout_rate:g}"
        if self.normalization != "none":
            text += f" {self.normalization}norm"
        if self.l2:
            text += f" l2={self.l2:g}"
        if self.label_smoothing:
            text += f" ls{self.label_smoothing:g}"
        if self.augment != "none":
            text += f" aug-{self.augment}"
            if self.augment_strength != 1.0:
                text += f"x{self.augment_strength:g}"
        if self.lr_schedule != "constant":
            text += f" {self.lr_schedule}"
        return text + f" {self.optimizer} lr={self.learning_rate:.2g} bs{self.batch_size}"


def space_names() -> list[str]:
    """Returns the dense space's hyperparameter names, in declaration order."""
    return DenseConfig.names()


def describe_space() -> list[tuple[str, str, Any, str]]:
    """Returns ``(name, range, default, help)`` for every hyperparameter of the dense space."""
    return DenseConfig.describe()


def parse_fixed(assignments: list[str]) -> dict[str, Any]:
    """Parses ``NAME=VALUE`` strings into validated values of the dense space.

    Raises:
        ZooError: an unknown name, a missing ``=`` or a value out of range.
    """
    return DenseConfig.parse_fixed(assignments)
