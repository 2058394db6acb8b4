"""Tests of the dense-net search space: one declaration, validated, the same names everywhere."""

from __future__ import annotations

import dataclasses
import json

import keras_tuner as kt
import numpy as np
import pytest

from zoo.dense import DenseNetClassifier
from zoo.errors import ZooError
from zoo.protocol import config_json
from zoo.space import (
    ChoiceSpec,
    DenseConfig,
    FloatSpec,
    IntSpec,
    describe_space,
    parse_fixed,
    space_names,
)

# The estimator's parameters that are not hyperparameters of the space.
TRAINING_PARAMS = {"epochs", "seed", "verbose"}


def test_defaults_are_valid_and_plain():
    config = DenseConfig()
    assert config.to_dict() == {
        "n_layers": 2,
        "units": 256,
        "activation": "relu",
        "dropout_rate": 0.2,
        "normalization": "none",
        "l2": 0.0,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "batch_size": 128,
        "label_smoothing": 0.0,
        "lr_schedule": "constant",
        "augment": "none",
        "augment_strength": 1.0,
        "conv_filters": 0,
    }
    for name, value in config.to_dict().items():
        assert type(value) in (int, float, str), name


def range_text(name: str) -> list[str]:
    """What a message about ``name`` must show of its valid range, read from its declaration."""
    spec = {f.name: f.metadata["spec"] for f in dataclasses.fields(DenseConfig)}[name]
    if isinstance(spec, ChoiceSpec):
        return ["must be one of", *(repr(v) if isinstance(v, str) else str(v) for v in spec.values)]
    kind = "an integer" if isinstance(spec, IntSpec) else "a number"
    return [f"must be {kind} in [{spec.low}, {spec.high}]"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_layers", 0),
        ("n_layers", 5),
        ("n_layers", 2.5),
        ("n_layers", True),
        ("n_layers", "2"),
        ("units", 100),
        ("units", None),
        ("activation", "swish"),
        ("dropout_rate", 0.6),
        ("dropout_rate", -0.1),
        ("dropout_rate", "high"),
        ("normalization", "group"),
        ("l2", 0.5),
        ("optimizer", "adagrad"),
        ("learning_rate", 0.1),
        ("learning_rate", float("nan")),
        ("learning_rate", float("inf")),
        ("batch_size", 100),
        ("batch_size", "64"),
        ("label_smoothing", 0.2),
        ("augment", "cursive"),
        ("augment_strength", -0.5),
        ("augment_strength", 3.5),
        ("augment_strength", "strong"),
    ],
)
def test_each_bad_value_names_the_parameter_its_range_and_the_value(name, value):
    with pytest.raises(ZooError) as caught:
        DenseConfig(**{name: value})
    message = str(caught.value)
    assert message.startswith(f"{name} must be ")
    for part in range_text(name):
        assert part in message
    assert f"(got {value!r})" in message or f"(got {value})" in message
    assert "\n" not in message


def test_numpy_scalars_become_plain_python_values():
    config = DenseConfig(
        n_layers=np.int64(3),
        units=np.int32(64),
        dropout_rate=np.float32(0.5),
        l2=np.float64(1e-4),
        learning_rate=np.float64(0.01),
        batch_size=np.int64(32),
        label_smoothing=np.float64(0.1),
        activation=np.str_("tanh"),
    )
    assert type(config.n_layers) is int and config.n_layers == 3
    assert type(config.units) is int and config.units == 64
    assert type(config.batch_size) is int and config.batch_size == 32
    assert type(config.dropout_rate) is float and config.dropout_rate == 0.5
    assert type(config.l2) is float and config.l2 == 1e-4
    assert type(config.learning_rate) is float and config.learning_rate == 0.01
    assert type(config.label_smoothing) is float
    assert type(config.activation) is str and config.activation == "tanh"
    # Whole-valued floats are accepted for integer parameters, as plain ints.
    assert type(DenseConfig(n_layers=2.0).n_layers) is int


def test_a_float32_round_trip_of_a_range_end_is_accepted_and_clamped():
    # float32(1e-4) is a hair below the lower bound; it must not be refused.
    low = float(np.float32(1e-4))
    assert low < 1e-4
    config = DenseConfig(learning_rate=low)
    assert config.learning_rate == 1e-4


def test_from_hp_on_fresh_hyperparameters_gives_the_defaults():
    hp = kt.HyperParameters()
    assert DenseConfig.from_hp(hp) == DenseConfig()
    assert list(hp.values) == DenseConfig.searched_names()


def test_the_convolutional_stem_joins_the_tuners_space_only_when_pinned():
    # keras-tuner's random oracle draws a seed per declared name: an undeclared one leaves
    # every seeded search's trials as they were.
    assert [name for name in space_names() if name not in DenseConfig.searched_names()] == [
        "conv_filters"
    ]
    hp = kt.HyperParameters()
    assert DenseConfig.from_hp(hp).conv_filters == 0
    assert "conv_filters" not in hp.values
    pinned = kt.HyperParameters()
    assert DenseConfig.from_hp(pinned, fixed={"conv_filters": 64}).conv_filters == 64
    assert [p.name for p in pinned.space] == [*DenseConfig.searched_names(), "conv_filters"]
    assert type(pinned.space[-1]).__name__ == "Fixed"
    described = {row[0]: row[1] for row in describe_space()}
    assert described["conv_filters"].endswith("; not searched")
    assert DenseConfig(conv_filters=32).short().startswith("conv32 2x256 relu")


def test_from_hp_declares_each_name_with_the_configs_range_and_default():
    hp = kt.HyperParameters()
    DenseConfig.from_hp(hp)
    declared = {parameter.name: parameter for parameter in hp.space}
    for spec_field in dataclasses.fields(DenseConfig):
        if not spec_field.metadata["searched"]:
            assert spec_field.name not in declared
            continue
        parameter = declared[spec_field.name]
        spec = spec_field.metadata["spec"]
        assert parameter.default == spec_field.default, spec_field.name
        if isinstance(spec, ChoiceSpec):
            assert isinstance(parameter, kt.engine.hyperparameters.Choice)
            assert tuple(parameter.values) == (spec.search or spec.values)
            assert set(parameter.values) <= set(spec.values)
        elif isinstance(spec, IntSpec):
            assert isinstance(parameter, kt.engine.hyperparameters.Int)
            searched = spec.search or (spec.low, spec.high)
            assert (parameter.min_value, parameter.max_value) == searched
            assert spec.low <= searched[0] <= searched[1] <= spec.high
        else:
            assert isinstance(spec, FloatSpec)
            assert isinstance(parameter, kt.engine.hyperparameters.Float)
            searched = spec.search or (spec.low, spec.high)
            assert (parameter.min_value, parameter.max_value) == searched
            assert spec.low <= searched[0] <= searched[1] <= spec.high
            assert parameter.sampling == spec.sampling


def test_from_hp_reads_the_values_the_tuner_chose_and_the_fixed_ones():
    hp = kt.HyperParameters()
    DenseConfig.from_hp(hp)
    hp.values["units"] = 64
    hp.values["activation"] = "tanh"
    config = DenseConfig.from_hp(hp)
    assert (config.units, config.activation) == (64, "tanh")
    pinned = kt.HyperParameters()
    config = DenseConfig.from_hp(pinned, fixed={"n_layers": 3, "optimizer": "sgd"})
    assert (config.n_layers, config.optimizer) == (3, "sgd")
    kinds = {parameter.name: type(parameter).__name__ for parameter in pinned.space}
    assert kinds["n_layers"] == "Fixed" and kinds["optimizer"] == "Fixed"
    assert kinds["units"] == "Choice"


def test_one_set_of_names_for_config_estimator_tuner_leaderboard_and_fix_flag():
    names = space_names()
    assert names == [f.name for f in dataclasses.fields(DenseConfig)]
    assert [row[0] for row in describe_space()] == names
    # The estimator's parameters are the space's names plus how to train.
    estimator_params = DenseNetClassifier().get_params()
    assert set(estimator_params) - TRAINING_PARAMS == set(names)
    assert {name: estimator_params[name] for name in names} == DenseConfig().to_dict()
    # keras-tuner's hyperparameter names.
    hp = kt.HyperParameters()
    DenseConfig.from_hp(hp)
    assert [parameter.name for parameter in hp.space] == DenseConfig.searched_names()
    # The leaderboard's config column of a network.
    column = json.loads(config_json(DenseNetClassifier()))
    assert set(column) - TRAINING_PARAMS == set(names)
    # --fix NAME=VALUE takes every name (its default, spelled as on a command line).
    defaults = DenseConfig().to_dict()
    assert parse_fixed([f"{name}={value}" for name, value in defaults.items()]) == defaults


def test_to_json_from_dict_round_trip_ignores_other_keys():
    config = DenseConfig(n_layers=3, units=512, activation="gelu", l2=1e-5, learning_rate=0.003)
    text = config.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True)
    values = {**json.loads(text), "epochs": 40, "seed": 7}
    assert DenseConfig.from_dict(values) == config


def test_short_summary_names_the_shape_and_training():
    text = DenseConfig(n_layers=3, units=64, normalization="batch", l2=1e-4).short()
    assert text.startswith("3x64 relu")
    assert "batchnorm" in text and "l2=0.0001" in text and "adam" in text and "bs128" in text


def test_short_summary_names_the_augmentation_and_a_strength_other_than_one():
    assert "aug-affine " in DenseConfig(augment="affine").short()
    assert (
        "aug-handwritingx1.5 " in DenseConfig(augment="handwriting", augment_strength=1.5).short()
    )
    assert "aug" not in DenseConfig(augment_strength=2.0).short()


def test_augment_strength_is_searched_within_its_valid_range_around_its_default():
    spec = DenseConfig.specs()["augment_strength"]
    assert isinstance(spec, FloatSpec)
    low, high = spec.search
    assert spec.low <= low < DenseConfig().augment_strength < high <= spec.high


def test_a_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DenseConfig().units = 64


def test_parse_fixed_reads_typed_values():
    fixed = parse_fixed(
        [
            "n_layers=3",
            "units = 64",
            "activation=tanh",
            "learning-rate=0.01",
            "l2=1e-4",
            "label_smoothing=0",
        ]
    )
    assert fixed == {
        "n_layers": 3,
        "units": 64,
        "activation": "tanh",
        "learning_rate": 0.01,
        "l2": 1e-4,
        "label_smoothing": 0.0,
    }
    assert type(fixed["label_smoothing"]) is float and type(fixed["units"]) is int
    assert parse_fixed([]) == {}


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("n_layers", "--fix takes NAME=VALUE (got 'n_layers')"),
        ("layers=2", "unknown hyperparameter 'layers' in --fix; valid names: n_layers, units"),
        ("n_layers=9", "n_layers must be an integer in [1, 4] (got 9)"),
        ("activation=swish", "activation must be one of"),
    ],
)
def test_parse_fixed_errors_say_what_is_wrong(assignment, expected):
    with pytest.raises(ZooError) as caught:
        parse_fixed([assignment])
    assert expected in str(caught.value)
