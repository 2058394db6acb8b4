"""Tests of the median stopping rule: the rule alone, and a search's stopped trials."""

from __future__ import annotations

import csv
import json

import pytest

import search.tuner
from digits_zoo.cli import main
from digits_zoo.ensembles import ensemble_candidates
from digits_zoo.runs import load_run, open_run
from digits_zoo.searching import search_context, search_specs
from search.oracles import warm_start_values
from search.records import best_configs, completed_trials, read_out_of_fold
from search.spec import DENSE_FIRST_TRIALS, SearchSpec, prepare_search, read_spec
from search.stopping import (
    MedianStopping,
    completed_curves,
    fold_mean_curve,
    should_stop,
    warmup_epochs,
)
from zoo.errors import ZooError
from zoo.families import get_family
from zoo.space import DenseConfig

KnnConfig = get_family("knn").config

EPOCHS = 10
# Three finished trials: fold-mean validation accuracy after each of 10 epochs.
FINISHED = [[0.80 + 0.01 * epoch + 0.01 * k for epoch in range(EPOCHS)] for k in range(3)]
WORSE = [0.5] * EPOCHS
BETTER = [0.99] * EPOCHS
TINY_FLAGS = ["--fix", "n_layers=1", "--fix", "units=16", "--fix", "augment=none"]


def test_warmup_is_three_epochs_or_a_quarter():
    assert warmup_epochs(4) == 3
    assert warmup_epochs(20) == 5


def test_clearly_worse_curve_stops_after_warmup():
    warmup = warmup_epochs(EPOCHS)
    for epoch in range(1, warmup):
        assert not should_stop(WORSE[:epoch], FINISHED, EPOCHS)
    assert should_stop(WORSE[:warmup], FINISHED, EPOCHS)


def test_better_curve_is_not_stopped():
    assert not any(should_stop(BETTER[:epoch], FINISHED, EPOCHS) for epoch in range(1, EPOCHS))


def test_best_value_so_far_is_compared_with_the_median():
    # Median at epoch 4 is 0.84; a dip below it after a value above does not stop.
    assert not should_stop([0.5, 0.5, 0.9, 0.5], FINISHED, EPOCHS)
    assert should_stop([0.5, 0.5, 0.8, 0.83], FINISHED, EPOCHS)


def test_fewer_than_three_finished_trials_stop_nothing():
    assert not should_stop(WORSE[:5], FINISHED[:2], EPOCHS)
    # Finished trials count only up to the epochs they reached.
    short = [curve[:3] for curve in FINISHED]
    assert not should_stop(WORSE[:5], short, EPOCHS)


def test_last_epoch_is_never_stopped():
    assert not should_stop(WORSE, FINISHED, EPOCHS)


def test_curves_come_from_full_trials_of_the_same_epochs():
    histories = [{"val_accuracy": [0.5, 0.7]}, {"val_accuracy": [0.7, 0.9]}]
    assert fold_mean_curve(histories) == pytest.approx([0.6, 0.8])
    records = [
        {"status": "COMPLETED", "epochs": 2, "histories": histories},
        {"status": "COMPLETED", "epochs": 2, "histories": histories, "stopped_early": True},
        {"status": "COMPLETED", "epochs": 3, "histories": histories},
        {"status": "FAILED", "epochs": 2},
    ]
    assert completed_curves(records, 2) == [pytest.approx([0.6, 0.8])]


def test_callback_reads_one_value_per_fold():
    class Model:
        stop_training = False

    stopper = MedianStopping(FINISHED, EPOCHS)
    stopper.set_model(Model())
    for epoch in range(warmup_epochs(EPOCHS)):
        stopper.on_epoch_end(epoch, {"val_accuracy": [0.4, 0.6]})
    assert stopper.curve == pytest.approx([0.5] * warmup_epochs(EPOCHS))
    assert stopper.model.stop_training
    assert stopper.stopped_epoch == warmup_epochs(EPOCHS)


def test_full_trial_ranks_ahead_of_stopped_one_with_equal_score():
    trials = [
        {"trial_id": "random_0", "status": "COMPLETED", "cv_accuracy_mean": 0.9,
         "stopped_early": True},
        {"trial_id": "random_1", "status": "COMPLETED", "cv_accuracy_mean": 0.9,
         "stopped_early": False},
        {"trial_id": "random_2", "status": "COMPLETED", "cv_accuracy_mean": 0.95,
         "stopped_early": True},
    ]  # fmt: skip
    assert [t["trial_id"] for t in completed_trials(trials)] == [
        "random_2", "random_1", "random_0",
    ]  # fmt: skip


def test_spec_settings(tmp_path):
    with pytest.raises(ZooError, match="hyperband stops trials on its own schedule"):
        SearchSpec(tuner="hyperband", early_stop=True)
    with pytest.raises(ZooError, match="early stopping compares per-epoch curves"):
        SearchSpec(family="knn", early_stop=True)
    # A classic family searched beside the dense nets gets no early stopping.
    specs = search_specs("all", tuner="random", early_stop=True)
    assert {spec.family: spec.early_stop for spec in specs}["dense"] is True
    assert not any(spec.early_stop for spec in specs if spec.family != "dense")
    # A search recorded without the setting (older search.json) resumes without it.
    run = open_run(tmp_path / "run", seed=0, n_folds=2)
    context = search_context(run)
    prepare_search(context, SearchSpec(tuner="random"))
    specs_file = run.path / "search.json"
    recorded = json.loads(specs_file.read_text())
    del recorded["searches"]["random"]["early_stop"]
    specs_file.write_text(json.dumps(recorded))
    assert read_spec(run.path).early_stop is False
    resumed = prepare_search(context, SearchSpec(tuner="random", early_stop=True))
    assert resumed.early_stop is False
    assert read_spec(run.path).early_stop is False


def _search(run_dir, *flags):
    args = ["search", "--run-dir", str(run_dir), "--seed", "0", "--folds", "2", "--tuner",
            "random", "--max-trials", "2", "--epochs", "4", "--top-k", "1", *TINY_FLAGS]  # fmt: skip
    return main([*args, *flags])


def _records(run_dir):
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((run_dir / "trials").glob("*.json"))
    }


def test_stopped_trial_is_recorded_and_resumes_stopped(tmp_path, monkeypatch, capsys):
    # Three finished trials far above anything 4 epochs reach: every trial stops.
    monkeypatch.setattr(
        search.tuner, "completed_curves", lambda records, epochs: [[1.0] * epochs] * 3
    )
    run_dir = tmp_path / "run"
    assert _search(run_dir) == 0
    assert "(stopped at epoch 3/4)" in capsys.readouterr().out
    assert read_spec(run_dir).early_stop is True
    records = _records(run_dir)
    assert len(records) == 2
    for record in records.values():
        assert record["status"] == "COMPLETED"
        assert record["stopped_early"] is True
        assert record["epochs_run"] == 3 and record["epochs"] == 4
        assert len(record["histories"][0]["val_accuracy"]) == 3
        assert len(record["cv_scores"]) == 2
    # Its last score is its CV score.
    for record in records.values():
        last = [history["val_accuracy"][-1] for history in record["histories"]]
        assert record["cv_scores"] == pytest.approx(last, abs=1e-6)
    with open(run_dir / "trials.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["status"], r["stopped_early"], r["epochs_run"]) for r in rows] == [
        ("COMPLETED", "True", "3")
    ] * 2
    assert all(r["cv_accuracy_mean"] for r in rows)

    # Their out-of-fold probabilities are kept, but stopped networks do not stand for
    # their refits (which train every epoch): no ensemble chooses them.
    for name in records:
        assert read_out_of_fold(run_dir, name) is not None
    assert ensemble_candidates(load_run(run_dir)) == []

    # The same search again: the stopped trials are kept, none trains again.
    def no_training(*args, **kwargs):
        raise AssertionError("a stopped trial was trained again")

    monkeypatch.setattr(search.tuner, "cross_validate_out_of_fold", no_training)
    stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir / "trials").glob("*.json")}
    assert _search(run_dir) == 0
    assert _records(run_dir) == records
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (run_dir / "trials").glob("*.json")}


def test_no_early_stop_trains_every_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(
        search.tuner, "completed_curves", lambda records, epochs: [[1.0] * epochs] * 3
    )
    run_dir = tmp_path / "run"
    assert _search(run_dir, "--no-early-stop") == 0
    assert read_spec(run_dir).early_stop is False
    # Without --warm-start the first trials are the strong defaults (as many as
    # --max-trials 2 allows), pinned values kept.
    fixed = {"n_layers": 1, "units": 16, "augment": "none"}
    assert read_spec(run_dir).warm_start == list(DENSE_FIRST_TRIALS[:2])
    # Hyperparameters the first trials leave out take their defaults.
    for index, values in enumerate(DENSE_FIRST_TRIALS[:2]):
        expected = {**DenseConfig().to_dict(), **values, **fixed}
        assert _records(run_dir)[f"random_{index}"]["config"] == expected
    for record in _records(run_dir).values():
        assert record["stopped_early"] is False
        assert record["epochs_run"] == 4
    # Trained in full, they are the ensembles' candidates.
    candidates = ensemble_candidates(load_run(run_dir))
    assert sorted(c.trial["trial_id"] for c in candidates) == sorted(_records(run_dir))


# Warm start: an earlier run's best configurations are the first trials.

WARM = [
    DenseConfig(n_layers=1, units=16, augment="none", activation="elu", dropout_rate=0.3),
    DenseConfig(n_layers=1, units=16, augment="none", activation="gelu", lr_schedule="cosine"),
    DenseConfig(n_layers=1, units=16, augment="none", activation="tanh", normalization="batch"),
]


def _earlier_run(directory):
    directory.mkdir()
    rows = [
        ("random_0", "dense", "COMPLETED", "0.95", WARM[1]),
        ("random_1", "dense", "COMPLETED", "0.97", WARM[0]),
        ("random_2", "dense", "FAILED", "", WARM[2]),
        ("random_3", "dense", "COMPLETED", "0.90", WARM[2]),
        ("random_4", "dense", "COMPLETED", "0.90", WARM[0]),
        ("random_knn_0", "knn", "COMPLETED", "0.99", KnnConfig()),
    ]
    with open(directory / "trials.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["trial_id", "family", "status", "cv_accuracy_mean", "config"])
        writer.writerows(
            [name, family, status, score, config.to_json()]
            for name, family, status, score, config in rows
        )
    return directory


def test_best_configs_are_distinct_best_first(tmp_path):
    earlier = _earlier_run(tmp_path / "earlier")
    assert best_configs(earlier, "dense", 5) == [c.to_dict() for c in (WARM[0], WARM[1], WARM[2])]
    assert best_configs(earlier, "dense", 2) == [WARM[0].to_dict(), WARM[1].to_dict()]
    with pytest.raises(ZooError, match="--warm-start needs a run directory with trials.csv"):
        best_configs(tmp_path / "nowhere", "dense", 3)


def test_warm_start_values_stay_in_the_searched_space():
    spec = SearchSpec(tuner="bayesian", fixed={"units": 16}, warm_start=[WARM[2].to_dict()])
    (values,) = warm_start_values(spec)
    assert values["activation"] == "relu"  # tanh is not searched: the default
    assert values["normalization"] == "batch" and values["units"] == 16
    with pytest.raises(ZooError, match="--warm-start sets the first trials"):
        SearchSpec(tuner="hyperband", warm_start=[WARM[0].to_dict()])
    with pytest.raises(ZooError, match="more than --max-trials"):
        SearchSpec(max_trials=1, warm_start=[WARM[0].to_dict()] * 2)


@pytest.mark.parametrize("tuner", ["random", "bayesian"])
def test_warm_start_first_trials_are_the_given_configs(tmp_path, tuner):
    earlier = _earlier_run(tmp_path / "earlier")
    run_dir = tmp_path / "run"
    args = ["search", "--run-dir", str(run_dir), "--seed", "0", "--folds", "2", "--tuner",
            tuner, "--max-trials", "3", "--epochs", "1", "--top-k", "0", "--no-early-stop",
            "--warm-start", str(earlier), *TINY_FLAGS]  # fmt: skip
    assert main(args) == 0
    spec = read_spec(run_dir)
    assert spec.warm_start == [c.to_dict() for c in WARM]
    records = _records(run_dir)
    configs = [records[f"{tuner}_{index}"]["config"] for index in range(3)]
    assert configs[:2] == [WARM[0].to_dict(), WARM[1].to_dict()]
    assert configs[2] == {**WARM[2].to_dict(), "activation": "relu"}
