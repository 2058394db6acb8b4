"""keras-tuner's private internals used by the search, pinned to the version they were written for."""

from __future__ import annotations

from importlib.metadata import version

import keras_tuner as kt

from search import ktcompat
from search.hypermodel import make_oracle
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
