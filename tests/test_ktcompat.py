"""keras-tuner's private internals used by the search, pinned to the version they were written for."""

from __future__ import annotations

from importlib.metadata import version

import keras_tuner as kt

from search import ktcompat
from search.oracles import make_oracle
from search.spec import SearchSpec


def test_keras_tuner_is_the_version_the_internals_were_written_for():
    # On an upgrade: check each function of search/ktcompat.py against the new
    # keras-tuner, then move TESTED_VERSION.
    assert version("keras-tuner") == ktcompat.TESTED_VERSION


def test_seed_zero_still_seeds_the_oracle():
    oracle = make_oracle(SearchSpec(tuner="random", max_trials=2), seed=0)
    assert oracle.seed == ktcompat.oracle_seed(0) != 0


def test_failed_trial_tracebacks_can_be_silenced():
    from keras_tuner.src import config

    ktcompat.quiet_failed_trial_tracebacks()
    assert config.DEBUG is False


def test_orphaned_running_trial_is_marked_failed(tmp_path):
    oracle = make_oracle(SearchSpec(tuner="random", max_trials=3), seed=0)
    ktcompat.attach_oracle(oracle, str(tmp_path), "random")
    oracle.hypermodel = None
    hp = kt.HyperParameters()
    hp.Int("units", 1, 4)
    oracle.hyperparameters = hp
    trial = oracle.create_trial("tuner0")
    assert trial.status == "RUNNING"
    oracle.save()
    reloaded = make_oracle(SearchSpec(tuner="random", max_trials=3), seed=0)
    ktcompat.attach_oracle(reloaded, str(tmp_path), "random")
    reloaded.reload()
    assert ktcompat.fail_orphaned_trials(reloaded, "gone") == [trial.trial_id]
    assert reloaded.trials[trial.trial_id].status == "FAILED"
    assert reloaded.trials[trial.trial_id].message == "gone"


def test_random_proposal_draws_an_untried_configuration_and_advances_the_seed(tmp_path):
    oracle = make_oracle(SearchSpec(tuner="random", max_trials=3), seed=0)
    ktcompat.attach_oracle(oracle, str(tmp_path), "random")
    hp = kt.HyperParameters()
    hp.Int("units", 1, 2)
    oracle.hyperparameters = hp
    before = oracle._seed_state
    first = ktcompat.random_proposal(oracle)
    assert first["status"] == "RUNNING" and first["values"]["units"] in (1, 2)
    assert oracle._seed_state > before
    for worker in ("tuner0", "tuner1"):
        oracle.create_trial(worker)
    # Both configurations tried: none is left.
    assert ktcompat.random_proposal(oracle) == {"status": "STOPPED", "values": None}


def _bayesian_oracle(tmp_path, completed: int):
    """A Bayesian oracle over x, y in [0, 1] whose completed trials score best at (0.7, 0.3)."""
    oracle = kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("score", "max"),
        max_trials=50,
        num_initial_points=4,
        beta=0.0,
        seed=3,
    )
    ktcompat.attach_oracle(oracle, str(tmp_path), "bayesian")
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Float("y", 0.0, 1.0)
    oracle.hyperparameters = hp
    grid = [(x, y) for x in (0.1, 0.4, 0.9) for y in (0.1, 0.5, 0.9)] + [(0.6, 0.35), (0.8, 0.2)]
    for x, y in grid[:completed]:
        trial = oracle.create_trial("tuner0")
        trial.hyperparameters.values.update(x=x, y=y)
        oracle.update_trial(trial.trial_id, {"score": -((x - 0.7) ** 2) - (y - 0.3) ** 2})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return oracle


def test_gaussian_process_proposal_finds_the_bound_s_optimum_and_is_reproducible(tmp_path):
    oracle = _bayesian_oracle(tmp_path, completed=11)
    ktcompat.reseed_gaussian_process_proposals(oracle, 11)
    proposal = ktcompat.gaussian_process_proposal(oracle)
    assert proposal["status"] == "RUNNING"
    # With beta 0 the bound is the Gaussian process's mean, highest near (0.7, 0.3).
    assert abs(proposal["values"]["x"] - 0.7) < 0.15 and abs(proposal["values"]["y"] - 0.3) < 0.15
    # keras-tuner's own search (50 L-BFGS-B starts) lands within reach of the same point.
    ktcompat.reseed_gaussian_process_proposals(oracle, 11)
    theirs = kt.oracles.BayesianOptimizationOracle.populate_space(oracle, "x")["values"]
    assert abs(theirs["x"] - proposal["values"]["x"]) < 0.1
    assert abs(theirs["y"] - proposal["values"]["y"]) < 0.1
    # The same seed state, the same proposal.
    ktcompat.reseed_gaussian_process_proposals(oracle, 11)
    assert ktcompat.gaussian_process_proposal(oracle) == proposal


def test_gaussian_process_proposal_draws_at_random_before_its_initial_points(tmp_path):
    oracle = _bayesian_oracle(tmp_path, completed=3)
    draws = [ktcompat.gaussian_process_proposal(oracle)["values"] for _ in range(2)]
    # Random draws (the GP needs 4 completed trials here): two different points.
    assert draws[0] != draws[1]
    assert all(0.0 <= draw[name] <= 1.0 for draw in draws for name in ("x", "y"))
