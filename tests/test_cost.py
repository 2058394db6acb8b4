"""Tests of the budget's cost rule: the estimate, the rule, the oracles and the flags."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import keras_tuner as kt
import pytest

import digits_zoo.searching
from digits_zoo.cli import main
from digits_zoo.runs import open_run
from digits_zoo.searching import search_context
from search.budget import (
    COST_FRACTION,
    cost_shape,
    expected_seconds,
    overruns,
    training_work,
)
from search.oracles import CostRule, make_oracle
from search.records import trial_records, write_record
from search.spec import (
    CONV_STEM_EPOCHS,
    CONV_STEM_EXECUTIONS,
    CONV_STEM_TRIAL,
    DENSE_FIRST_TRIALS,
    DENSE_WIDE_FIRST_TRIAL,
    ROOMY_BUDGET_MINUTES,
    SearchSpec,
    prepare_search,
    read_spec,
)
from zoo.augment import n_copies
from zoo.errors import ZooError
from zoo.space import DenseConfig

EPOCHS = 20
CHEAP = DenseConfig(n_layers=1, units=256, batch_size=64, augment="affine")
WIDE = DenseConfig(n_layers=3, units=1024, batch_size=64, augment="affine")
# Two 1x256 trials of 30 s each: 60 s of a 5-minute budget spent, 240 s left, 80 s per trial.
SPEC = SearchSpec(tuner="random", max_trials=50, epochs=EPOCHS, budget_minutes=5.0)


def fake_record(index: int, config: DenseConfig, seconds: float, **extra) -> dict:
    return {
        "trial_id": f"random_{index}",
        "status": "COMPLETED",
        "config": config.to_dict(),
        "epochs": EPOCHS,
        "epochs_run": EPOCHS,
        "seconds": seconds,
        "wall_seconds": seconds,
        "cv_scores": [0.99, 0.99],
        **extra,
    }


@pytest.fixture
def records_dir(tmp_path):
    # The same two trials for a random and a Bayesian search.
    for project in ("random", "bayesian"):
        for index in range(2):
            record = {**fake_record(index, CHEAP, 30.0), "trial_id": f"{project}_{index}"}
            write_record(tmp_path, record["trial_id"], record)
    return tmp_path


def test_estimate_needs_two_finished_trials():
    one = [fake_record(0, CHEAP, 30.0)]
    failed = {**fake_record(1, CHEAP, 30.0), "status": "FAILED"}
    assert expected_seconds(CHEAP, EPOCHS, one, 64, 10) is None
    assert expected_seconds(CHEAP, EPOCHS, [*one, failed], 64, 10) is None


def test_estimate_from_the_same_shape_per_epoch():
    # A trial stopped after 5 of 20 epochs counts 10 s per epoch.
    stopped = fake_record(1, CHEAP, 50.0, epochs_run=5, stopped_early=True)
    records = [fake_record(0, CHEAP, 40.0), stopped]
    assert expected_seconds(CHEAP, EPOCHS, records, 64, 10) == pytest.approx((2 + 10) / 2 * 20)
    # Other regularization, same shape: the same estimate.
    other = dataclasses.replace(CHEAP, dropout_rate=0.5, learning_rate=0.01)
    assert cost_shape(other) == cost_shape(CHEAP)
    assert expected_seconds(other, 10, records, 64, 10) == pytest.approx(6 * 10)


def test_estimate_of_a_new_shape_scales_seconds_per_parameter_epoch():
    records = [fake_record(0, CHEAP, 30.0), fake_record(1, CHEAP, 30.0)]
    per_work = 60.0 / (2 * training_work(CHEAP, 64, 10, EPOCHS))
    assert expected_seconds(WIDE, EPOCHS, records, 64, 10) == pytest.approx(
        per_work * training_work(WIDE, 64, 10, EPOCHS)
    )
    # Copies of each row count: no augmentation is cheaper than the same net with it.
    plain = dataclasses.replace(CHEAP, augment="none")
    assert training_work(plain, 64, 10, EPOCHS) < training_work(CHEAP, 64, 10, EPOCHS)


def test_a_convolutional_stem_is_its_own_cost_shape_and_counts_each_pixel_it_slides_over():
    conv = dataclasses.replace(CHEAP, conv_filters=16)
    assert cost_shape(conv) != cost_shape(CHEAP)
    # 3x3 kernels over 8x8 pixels (16 and 16 filters), then 4x4 (32 and 32), then 2x2x32 in.
    stem = (10 * 16 + 145 * 16) * 64 + (145 * 32 + 289 * 32) * 16
    dense_part = training_work(CHEAP, 2 * 2 * 32, 10, 1) / n_copies(CHEAP.augment)
    assert training_work(conv, 64, 10, 1) == pytest.approx(
        (stem + dense_part) * n_copies(CHEAP.augment)
    )


def test_overrun_is_more_than_a_third_of_the_budget_left():
    records = [fake_record(0, CHEAP, 30.0), fake_record(1, CHEAP, 30.0)]
    left = 5 * 60 - 60
    assert COST_FRACTION == pytest.approx(1 / 3)
    assert overruns(left / 3 + 0.1, 5.0, records)
    assert not overruns(left / 3 - 0.1, 5.0, records)
    assert not overruns(None, 5.0, records)
    assert not overruns(1e9, None, records)


def _oracle_on_the_space(spec: SearchSpec, context=None) -> kt.Oracle:
    oracle = make_oracle(spec, seed=0, context=context)
    hp = kt.HyperParameters()
    DenseConfig.from_hp(hp, spec.fixed)
    oracle.hyperparameters = hp
    return oracle


def test_proposal_predicted_to_overrun_is_replaced_and_one_that_fits_is_kept(records_dir):
    rule = CostRule(SPEC, records_dir, 64, 10)
    oracle = _oracle_on_the_space(SPEC)
    records = trial_records(records_dir, SPEC.project)
    fits = {"status": "RUNNING", "values": CHEAP.to_dict()}
    assert rule.affordable(oracle, fits) is fits
    overrun = {"status": "RUNNING", "values": WIDE.to_dict()}
    assert overruns(rule.expected_seconds(WIDE.to_dict(), records), 5.0, records)
    replaced = rule.affordable(oracle, overrun)
    assert replaced["values"] != WIDE.to_dict()
    assert not overruns(rule.expected_seconds(replaced["values"], records), 5.0, records)
    assert rule.replaced == 1


def test_oracle_proposals_fit_the_budget_left_unless_the_flag_is_off(records_dir):
    run = open_run(records_dir / "run", seed=0, n_folds=2)
    context = dataclasses.replace(search_context(run), directory=records_dir)
    records = trial_records(records_dir, SPEC.project)

    def proposals(spec: SearchSpec) -> list[dict]:
        oracle = _oracle_on_the_space(spec, context)
        return [oracle.populate_space(f"{index:02d}")["values"] for index in range(8)]

    def expected(values: dict) -> float:
        return CostRule(SPEC, records_dir, 64, 10).expected_seconds(values, records)

    on = proposals(SPEC)
    assert not any(overruns(expected(values), 5.0, records) for values in on)
    off = proposals(dataclasses.replace(SPEC, cost_aware=False))
    assert any(overruns(expected(values), 5.0, records) for values in off)
    bayesian = proposals(dataclasses.replace(SPEC, tuner="bayesian"))
    assert not any(overruns(expected(values), 5.0, records) for values in bayesian)


def test_rule_applies_to_budgeted_random_and_bayesian_dense_searches_only(records_dir):
    run = open_run(records_dir / "run", seed=0, n_folds=2)
    context = search_context(run)
    assert isinstance(make_oracle(SPEC, 0, context).cost_rule, CostRule)
    for spec in (
        dataclasses.replace(SPEC, cost_aware=False),
        dataclasses.replace(SPEC, budget_minutes=None),
        dataclasses.replace(SPEC, family="knn"),
    ):
        assert make_oracle(spec, 0, context).cost_rule is None
    assert not hasattr(
        make_oracle(dataclasses.replace(SPEC, tuner="hyperband"), 0, context), "cost_rule"
    )
    # Without a context (a stand-alone oracle) there are no records to read.
    assert make_oracle(SPEC, 0).cost_rule is None


def test_cost_aware_setting_is_checked_recorded_and_resumed(tmp_path):
    with pytest.raises(ZooError, match="cost_aware must be True or False"):
        SearchSpec(cost_aware="yes")
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    context = search_context(run)
    prepare_search(context, SearchSpec(tuner="random", cost_aware=False))
    assert read_spec(run.path).cost_aware is False
    # A search recorded without it resumes without it; one recorded with it may turn it off.
    assert prepare_search(context, SearchSpec(tuner="random")).cost_aware is False
    prepare_search(context, SearchSpec(tuner="random"), overwrite=True)
    assert read_spec(run.path).cost_aware is True
    assert prepare_search(context, SearchSpec(tuner="random", cost_aware=False)).cost_aware is False


def test_cli_flags_reach_the_search(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(
        digits_zoo.searching, "run_searches", lambda run, specs, **kwargs: ran.append(specs) or []
    )
    base = ["search", "--folds", "2", "--max-trials", "2", "--budget-minutes", "1"]
    assert main([*base, "--run-dir", str(tmp_path / "a")]) == 0
    assert (
        main([*base, "--run-dir", str(tmp_path / "b"), "--no-cost-aware", "--no-strong-start"]) == 0
    )
    default, flagged = ran[0][0], ran[1][0]
    assert default.cost_aware is True and default.warm_start == list(DENSE_FIRST_TRIALS[:2])
    assert flagged.cost_aware is False and flagged.warm_start == []


def test_a_roomy_budget_starts_with_a_two_layer_network(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(
        digits_zoo.searching, "run_searches", lambda run, specs, **kwargs: ran.append(specs) or []
    )
    base = ["search", "--folds", "2", "--max-trials", "3"]
    for name, budget in (("short", ["--budget-minutes", "1"]), ("none", []), ("roomy", None)):
        minutes = ["--budget-minutes", f"{ROOMY_BUDGET_MINUTES:g}"] if budget is None else budget
        assert main([*base, *minutes, "--run-dir", str(tmp_path / name)]) == 0
    short, unbounded, roomy = (specs[0].warm_start for specs in ran)
    assert short == unbounded == list(DENSE_FIRST_TRIALS)
    assert roomy == [*DENSE_FIRST_TRIALS[:2], DENSE_WIDE_FIRST_TRIAL]
    assert DENSE_WIDE_FIRST_TRIAL == {**DENSE_FIRST_TRIALS[1], "n_layers": 2}


def test_the_jobs_stem_search_pins_every_hyperparameter(tmp_path, monkeypatch):
    # benchmarks/accuracy.py's search of the convolutional stem, parsed by the command line.
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "accuracy.py"
    loader = importlib.util.spec_from_file_location("accuracy_job", script)
    job = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(job)
    ran = []
    monkeypatch.setattr(
        digits_zoo.searching, "run_searches", lambda run, specs, **kwargs: ran.append(specs) or []
    )
    common = ["--run-dir", str(tmp_path), "--seed", "0"]
    assert main(job.stem_search(job.FULL["stem"], common)) == 0
    (spec,) = ran[0]
    assert spec.fixed == CONV_STEM_TRIAL
    assert set(DenseConfig.searched_names()) | {"conv_filters"} == set(spec.fixed)
    assert (spec.tuner, spec.max_trials, spec.epochs, spec.top_k) == (
        "random",
        1,
        CONV_STEM_EPOCHS,
        1,
    )
    # Two stems, seeds 0 and 1, averaged: one row, the one the job ships.
    assert spec.executions_per_trial == CONV_STEM_EXECUTIONS == 2
    assert spec.ensemble is None
    assert DenseConfig(**CONV_STEM_TRIAL).conv_filters == 64
