"""Tests of the model families: each classic space declared once, searched like the dense one."""

from __future__ import annotations

import dataclasses
import json
import re

import keras_tuner as kt
import numpy as np
import pytest

from digits_zoo.artifacts import load_fitted, save_fitted
from digits_zoo.baselines import run_baselines
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.rundir import ensembles_path
from digits_zoo.runs import open_run
from digits_zoo.searching import run_searches, search_specs
from search import paths
from search.budget import DENSE_SHARE, budget_shares, carried_budget, spent_seconds
from search.hypermodel import ClassicHyperModel
from search.oracles import make_oracle
from search.records import read_trials, read_trials_csv, trial_records
from search.spec import SearchSpec, read_spec, read_specs
from zoo.errors import ZooError
from zoo.families import (
    ALL,
    DENSE,
    classic_family_names,
    expand_families,
    family_names,
    get_family,
    parse_fixed_for,
)
from zoo.space import ChoiceSpec, FloatSpec, IntSpec

CLASSIC = classic_family_names()
# A dense net that trains in seconds, and classic models pinned cheap where they can be slow.
FIX = [
    "n_layers=1", "units=32", "batch_size=128", "augment=none",
    "n_estimators=25", "hidden_units=32",
]  # fmt: skip
# Where a classic family's builder does not pass a value on unchanged, and why (documented
# in zoo/families.py): keras-tuner cannot search None or a tuple.
TRANSLATED = {
    "max_depth": lambda value, params: params["max_depth"] == (value or None),
    "hidden_layers": lambda value, params: len(params["hidden_layer_sizes"]) == value,
    "hidden_units": lambda value, params: set(params["hidden_layer_sizes"]) == {value},
}


def estimator_params(estimator) -> dict:
    """The estimator's parameters; a wrapped estimator's (the calibrated SVC) without prefix."""
    params = estimator.get_params(deep=True)
    inner = {k.split("__", 1)[1]: v for k, v in params.items() if k.startswith("estimator__")}
    return {**params, **inner}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, small_digits):
    """A run on 400 bundled digits (a CSV in the optdigits layout), 2 folds."""
    folder = tmp_path_factory.mktemp("families")
    data = folder / "small.csv"
    x = np.vstack([small_digits.x_train, small_digits.x_test])
    y = np.concatenate([small_digits.y_train, small_digits.y_test])
    np.savetxt(data, np.column_stack([x, y]), fmt="%d", delimiter=",")
    return folder, data


@pytest.fixture(scope="module")
def searched_classic(small_run):
    """2 random trials of each classic family, the top 2 of each refit, beside a baseline.

    The specs are those of ``--family all`` but its last, the dense nets, which the
    slow test at the end of this file adds to the same run.
    """
    folder, data = small_run
    run = open_run(folder / "all", str(data), seed=0, n_folds=2)
    run_baselines(run, ["knn_k1"], progress=lambda line: None)
    specs = search_specs(ALL, FIX, tuner="random", max_trials=2, epochs=2, top_k=2)
    assert specs[-1].family == DENSE
    lines: list[str] = []
    run_searches(run, specs[:-1], progress=lines.append)
    return run, specs, lines


# The spaces ----------------------------------------------------------------------------------


def test_the_families_and_all():
    assert family_names() == [DENSE, *CLASSIC]
    assert CLASSIC == [
        "svc", "knn", "random_forest", "extra_trees", "logistic_regression", "mlp",
    ]  # fmt: skip
    assert expand_families(ALL) == [*CLASSIC, DENSE]
    assert expand_families("classic") == CLASSIC
    assert expand_families("svc") == ["svc"]
    with pytest.raises(ZooError, match=r"--family must be one of dense, svc, .* \(got 'svm'\)"):
        get_family("svm")


@pytest.mark.parametrize("name", family_names())
def test_one_set_of_names_for_config_tuner_and_fix_flag(name):
    family = get_family(name)
    names = family.config.names()
    hp = kt.HyperParameters()
    assert family.config.from_hp(hp) == family.config()
    # Every name but those a search declares only when pinned (the dense conv_filters).
    assert [parameter.name for parameter in hp.space] == family.config.searched_names()
    assert set(names) - set(family.config.searched_names()) <= {"conv_filters"}
    defaults = family.config().to_dict()
    assert list(defaults) == names
    # --fix NAME=VALUE takes every name, its default spelled as on a command line.
    assert family.config.parse_fixed([f"{n}={v}" for n, v in defaults.items()]) == defaults
    assert family.config.from_dict({**defaults, "seed": 3, "epochs": 9}) == family.config()


@pytest.mark.parametrize("name", family_names())
def test_searched_ranges_lie_inside_the_valid_values_and_hold_the_default(name):
    family = get_family(name)
    for spec_name, spec in family.config.specs().items():
        default = family.config().to_dict()[spec_name]
        if isinstance(spec, ChoiceSpec):
            assert set(spec.search or spec.values) <= set(spec.values), spec_name
            assert default in (spec.search or spec.values), spec_name
        else:
            assert isinstance(spec, (IntSpec, FloatSpec))
            low, high = spec.search or (spec.low, spec.high)
            assert spec.low <= low <= default <= high <= spec.high, spec_name


@pytest.mark.parametrize("name", CLASSIC)
def test_a_config_is_frozen_plain_and_validated_naming_the_parameter(name):
    config_class = get_family(name).config
    defaults = config_class().to_dict()
    as_numpy = {
        key: np.float64(value) if isinstance(value, float) else np.int64(value)
        for key, value in defaults.items()
        if not isinstance(value, str)
    }
    config = config_class(**as_numpy)
    assert {key: type(value) for key, value in config.to_dict().items()} == {
        key: type(value) for key, value in defaults.items()
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, next(iter(defaults)), 1)
    for key, spec in config_class.specs().items():
        bad = "no such value" if isinstance(spec, ChoiceSpec) else spec.high * 10
        with pytest.raises(ZooError, match=rf"^{key} must be .* \(got {bad!r}\)$"):
            config_class(**{key: bad})


@pytest.mark.parametrize("name", CLASSIC)
def test_the_names_are_the_estimators_parameters(name):
    family = get_family(name)
    config = family.config()
    params = estimator_params(family.create(config, seed=5))
    for key, value in config.to_dict().items():
        if key in TRANSLATED:
            assert TRANSLATED[key](value, params), key
        else:
            assert params[key] == value, key
    assert params.get("random_state", 5) == 5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", CLASSIC)
def test_the_default_builds_a_classifier_that_fits_and_saves(name, small_digits, tmp_path):
    family = get_family(name)
    x = small_digits.scale(small_digits.x_train)
    model = family.default_estimator(seed=0).fit(x, small_digits.y_train)
    x_test = small_digits.scale(small_digits.x_test)
    probabilities = model.predict_proba(x_test)
    assert probabilities.shape == (len(x_test), 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert model.score(x_test, small_digits.y_test) > 0.75
    # Its model file is one the run directory's loader trusts (export ships it).
    (tmp_path / "run").mkdir()
    saved = save_fitted(model, tmp_path / "run", f"search_random_{name}_0")
    loaded = load_fitted(tmp_path / "run" / saved)
    assert np.array_equal(loaded.predict(x_test), model.predict(x_test))


def test_a_classic_bayesian_search_starts_from_two_random_points_per_searched_name():
    assert make_oracle(SearchSpec(family="svc", max_trials=500), seed=0).num_initial_points == 6
    pinned = SearchSpec(family="svc", max_trials=500, fixed={"kernel": "rbf"})
    assert make_oracle(pinned, seed=0).num_initial_points == 4
    assert make_oracle(SearchSpec(family="svc", max_trials=2), seed=0).num_initial_points == 2
    assert make_oracle(SearchSpec(max_trials=500), seed=0).num_initial_points == 10


def test_classic_hypermodel_builds_the_default_estimator():
    hypermodel = ClassicHyperModel(get_family("knn"), {"n_neighbors": 3})
    estimator = hypermodel.build(kt.HyperParameters())
    assert (estimator.n_neighbors, estimator.weights) == (3, "uniform")


def test_fix_pins_a_name_in_every_family_that_has_it():
    fixed = parse_fixed_for(expand_families(ALL), ["C=3", "n_layers=2", "gamma=0.2"])
    assert fixed["svc"] == {"C": 3.0, "gamma": 0.2}
    assert fixed["logistic_regression"] == {"C": 3.0}
    assert fixed[DENSE] == {"n_layers": 2}
    assert fixed["knn"] == {}
    with pytest.raises(ZooError, match="unknown hyperparameter 'depth' in --fix for svc, knn"):
        parse_fixed_for(expand_families(ALL), ["depth=2"])
    with pytest.raises(ZooError, match="unknown hyperparameter 'n_layers' in --fix; valid names"):
        parse_fixed_for(["svc"], ["n_layers=2"])
    with pytest.raises(ZooError, match=r"gamma must be a number in \[0.0001, 10.0\]"):
        parse_fixed_for(["svc"], ["gamma=20"])


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--family", "svm"], "--family must be one of dense, svc"),
        (["--family", "svc", "--tuner", "hyperband"], "hyperband shares out training epochs"),
        (["--family", ALL, "--tuner", "hyperband"], "hyperband shares out training epochs"),
        (["--family", "svc", "--fix", "n_layers=2"], "unknown hyperparameter 'n_layers'"),
        (["--family", "knn", "--fix", "n_neighbors=0"], "n_neighbors must be an integer"),
    ],
)
def test_bad_family_flags_fail_before_any_data_is_read(cli_error, tmp_path, argv, match):
    cli_error("search", "--run-dir", tmp_path / "run", *argv, match=match)
    assert not (tmp_path / "run").exists()


def test_trial_names_of_one_project_do_not_match_another():
    assert paths.is_trial_of("bayesian_07", "bayesian")
    assert not paths.is_trial_of("bayesian_svc_07", "bayesian")
    assert paths.is_trial_of("bayesian_svc_07", "bayesian_svc")
    assert not paths.is_trial_of("bayesian_svc_07", "bayesian_s")
    assert SearchSpec(family="svc").project == "bayesian_svc"
    assert SearchSpec(tuner="random").project == "random"


def test_a_search_recorded_before_there_were_families_reads_as_dense(tmp_path):
    recorded = {"tuner": "bayesian", "max_trials": 8, "epochs": 20, "top_k": 3, "fixed": {}}
    paths.spec_path(tmp_path).write_text(
        json.dumps({"current": "bayesian", "searches": {"bayesian": recorded}})
    )
    spec = read_spec(tmp_path)
    assert (spec.family, spec.project, spec.top_k) == (DENSE, "bayesian", 3)


def test_budget_shares_give_dense_four_fifths_and_split_the_rest(cli):
    shares = budget_shares(24.0, expand_families(ALL))
    assert shares[DENSE] == pytest.approx(24.0 * DENSE_SHARE) == pytest.approx(19.2)
    assert all(shares[name] == pytest.approx(0.8) for name in CLASSIC)
    assert budget_shares(6.0, expand_families("classic")) == {name: 1.0 for name in CLASSIC}
    # The help text states the same shares.
    _, out, _ = cli("search", "--help")
    fraction = round(1 / budget_shares(1.0, expand_families(ALL))["svc"])
    assert f"M/{fraction} plus what the families before it left unspent" in " ".join(out.split())
    assert f"(at least {round(DENSE_SHARE * 5)}M/5)" in " ".join(out.split())
    assert budget_shares(6.0, [DENSE]) == {DENSE: 6.0}
    # The next family gets its share and whatever the ones before it left.
    assert carried_budget([2.0, 2.0], spent_before=0.5) == 3.5
    assert carried_budget([2.0, 2.0], spent_before=4.5) == -0.5


# A search of every family ----------------------------------------------------------------------


def test_every_family_ran_in_its_own_project(searched_classic):
    run, specs, lines = searched_classic
    assert sorted(p.name for p in paths.tuner_root(run.path).iterdir()) == sorted(
        f"random_{name}" for name in CLASSIC
    )
    assert sum(line.startswith("[trial ") for line in lines) == 2 * len(CLASSIC)
    assert any(line.startswith("[trial 1/2] svc ") for line in lines)
    assert "== svc: random search of 2 trials ==" in lines
    recorded = read_specs(run.path)["searches"]
    assert recorded["random_svc"]["family"] == "svc"
    assert recorded["random_mlp"]["fixed"] == {"hidden_units": 32}
    assert recorded["random_extra_trees"]["fixed"] == {"n_estimators": 25}


@pytest.mark.parametrize("name", CLASSIC)
def test_a_classic_trial_leaves_the_records_of_a_network_trial(searched_classic, name):
    run, specs, _ = searched_classic
    spec = next(s for s in specs if s.family == name)
    trials = read_trials(run.path, spec)
    assert [t["trial_id"] for t in trials] == [f"random_{name}_0", f"random_{name}_1"]
    y = run.dataset.y_train
    for trial in trials:
        assert trial["status"] == "COMPLETED" and trial["family"] == name
        assert trial["epochs"] == ""
        config = json.loads(trial["config"])
        assert list(config) == sorted(get_family(name).config.names())
        record = json.loads(paths.record_path(run.path, trial["trial_id"]).read_text())
        assert record["family"] == name and "epochs" not in record
        assert record["histories"] == [] and len(record["cv_scores"]) == 2
        # Out-of-fold probabilities, as a network trial's: each fold's rows predicted by
        # the fold model that did not train on them, so they score the recorded folds.
        probabilities = np.load(paths.out_of_fold_path(run.path, trial["trial_id"]))
        assert probabilities.shape == (len(y), len(run.dataset.classes))
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        scores = [float(np.mean(probabilities[val].argmax(1) == y[val])) for _, val in run.folds]
        assert scores == pytest.approx(record["cv_scores"], abs=1e-9)
        assert list((paths.logs_dir(run.path) / trial["trial_id"]).glob("events.out.tfevents.*"))


def test_trials_csv_holds_every_family_with_its_own_columns(searched_classic):
    run, _, _ = searched_classic
    rows = read_trials_csv(run.path)
    assert [row["family"] for row in rows] == [name for name in CLASSIC for _ in range(2)]
    svc = next(row for row in rows if row["family"] == "svc")
    assert svc["kernel"] and svc["gamma"] and not svc["n_layers"] and not svc["n_neighbors"]


def test_tuned_classic_rows_join_the_leaderboard(searched_classic):
    run, _, _ = searched_classic
    board = read_leaderboard(run.path)
    assert "knn_k1" in [row["model"] for row in board]
    # Two tuned rows per classic family, named search_<tuner>_<family>_<trial>, and
    # no ensemble of classic models (the ensemble averages networks).
    for name in CLASSIC:
        rows = [row for row in board if row["model"].startswith(f"search_random_{name}_")]
        assert len(rows) == 2, name
        for row in rows:
            assert row["kind"] == "sklearn" and row["source"] == "search"
            config = json.loads(row["config"])
            assert set(config) == {*get_family(name).config.names(), "seed"}
            assert config["seed"] == 0
            model = load_fitted(run.path / row["model_path"])
            x_test = run.dataset.scale(run.dataset.x_test)
            assert np.mean(model.predict(x_test) == run.dataset.y_test) == pytest.approx(
                row["test_accuracy"]
            )
    assert not any(row["model"].startswith("ensemble_") for row in board)


def test_rerunning_resumes_without_redoing_any_trial(searched_classic):
    run, specs, _ = searched_classic
    records = sorted(paths.trials_dir(run.path).glob("*.json"))
    stamps = {path: path.stat().st_mtime_ns for path in records}
    board_before = (run.path / "leaderboard.csv").read_text()
    lines: list[str] = []
    run_searches(run, specs[:-1], progress=lines.append)
    assert not any(line.startswith("[trial ") or line.startswith("refit ") for line in lines)
    assert {path: path.stat().st_mtime_ns for path in records} == stamps
    assert (run.path / "leaderboard.csv").read_text() == board_before


# Resume and budget of a classic search -----------------------------------------------------


def test_a_classic_search_resumes_and_extends(small_run):
    folder, data = small_run
    run = open_run(folder / "knn", str(data), seed=0, n_folds=2)
    first = search_specs("knn", [], tuner="bayesian", max_trials=2, top_k=1)
    run_searches(run, first, progress=lambda line: None)
    kept = paths.record_path(run.path, "bayesian_knn_0").read_text()
    lines: list[str] = []
    more = search_specs("knn", [], tuner="bayesian", max_trials=3, top_k=1)
    run_searches(run, more, progress=lines.append)
    assert [line.split("]")[0] for line in lines if line.startswith("[trial")] == ["[trial 3/3"]
    assert paths.record_path(run.path, "bayesian_knn_0").read_text() == kept
    configs = [t["config"] for t in read_trials(run.path, more[0])]
    assert len(configs) == 3 and len(set(configs)) == 3
    # Pinning a value the recorded search did not pin is another search.
    with pytest.raises(ZooError, match="holds a bayesian knn search with other settings"):
        run_searches(run, search_specs("knn", ["n_neighbors=4"], max_trials=3), progress=print)


def test_families_share_one_budget_with_the_unspent_time_carried(small_run):
    folder, data = small_run
    run = open_run(folder / "budget", str(data), seed=0, n_folds=2)
    specs = search_specs(ALL, [], tuner="random", max_trials=2, top_k=0, budget_minutes=1.0)[:2]
    lines: list[str] = []
    run_searches(run, specs, budget_minutes=1.0, progress=lines.append)
    recorded = read_specs(run.path)["searches"]
    svc_spent = spent_seconds(trial_records(run.path, "random_svc")) / 60
    assert recorded["random_svc"]["budget_minutes"] == pytest.approx(0.5)
    assert recorded["random_knn"]["budget_minutes"] == pytest.approx(1.0 - svc_spent)
    assert "== svc: random search of 2 trials, budget 0.50 min ==" in lines


# The dense nets beside them: last, since it adds them to the shared run ------------------------


@pytest.mark.slow
def test_all_families_share_one_leaderboard_and_resume(searched_classic):
    run, specs, _ = searched_classic
    lines: list[str] = []
    # The whole of --family all: the classic families resume (nothing to do), then dense.
    board = run_searches(run, specs, progress=lines.append)
    assert [line.split("]")[0] for line in lines if line.startswith("[trial")] == [
        "[trial 1/2",
        "[trial 2/2",
    ]
    # The dense search keeps its pre-family names: project random, trials random_<id>.
    assert [r["trial_id"] for r in trial_records(run.path, "random")] == ["random_0", "random_1"]
    assert read_specs(run.path)["searches"]["random"]["family"] == DENSE
    board = read_leaderboard(run.path)
    names = [row["model"] for row in board]
    assert [row["rank"] for row in board] == list(range(1, len(board) + 1))
    keys = [(-row["cv_accuracy_mean"], -row["test_accuracy"], row["model"]) for row in board]
    assert keys == sorted(keys)
    networks = [
        row["model"] for row in board if row["kind"] == "keras" and row["source"] == "search"
    ]
    # The greedy ensemble of the networks is a row when it kept two of them or more;
    # every model of the run was a candidate of the mixed one (ensembles.json).
    selections = json.loads(ensembles_path(run.path).read_text())
    shipped = [selections["shipped"]["model"]] if selections["shipped"]["model"] else []
    assert shipped in ([], ["ensemble_random_greedy"])
    assert len(networks) == 2 + len(shipped) and set(shipped) <= set(networks)
    for name in set(networks) - set(shipped):
        assert re.fullmatch(r"search_random_[01]_1x32_[a-z]+", name), name
    assert len([row for row in board if row["kind"] == "sklearn"]) == 1 + 2 * len(CLASSIC)
    assert sum(name.startswith("ensemble_") for name in names) == len(shipped)
    if selections["mixed"]:
        mixed_names = {member["model"] for member in selections["mixed"]["members"]}
        assert mixed_names <= set(names)
        assert selections["mixed"]["cv_accuracy_mean"] >= board[0]["cv_accuracy_mean"] - 1e-6
    assert [row["family"] for row in read_trials_csv(run.path)] == [DENSE] * 2 + [
        name for name in CLASSIC for _ in range(2)
    ]
    # And a second run of the whole command does nothing new.
    stamps = {p: p.stat().st_mtime_ns for p in paths.trials_dir(run.path).glob("*.json")}
    again: list[str] = []
    run_searches(run, specs, progress=again.append)
    assert not any(line.startswith(("[trial ", "refit ", "ensemble ")) for line in again)
    assert {p: p.stat().st_mtime_ns for p in paths.trials_dir(run.path).glob("*.json")} == stamps


def test_a_classic_trial_past_the_budget_stops_between_folds(small_run):
    folder, data = small_run
    run = open_run(folder / "deadline", str(data), seed=0, n_folds=2)
    # 6 ms: the first trial starts (nothing is spent yet), and its first fold outlasts it.
    specs = search_specs("random_forest", ["n_estimators=25"], max_trials=3, budget_minutes=1e-4)
    lines: list[str] = []
    run_searches(run, specs, budget_minutes=1e-4, progress=lines.append)
    records = trial_records(run.path, "bayesian_random_forest")
    assert [r["status"] for r in records] == ["FAILED"]
    assert records[0]["message"] == "stopped by the time budget (after fold 1 of 2); not scored"
    assert any("no new trial starts" in line for line in lines)
    assert not (run.path / "leaderboard.csv").exists()
