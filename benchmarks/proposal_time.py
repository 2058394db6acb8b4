"""Seconds per Bayesian proposal: keras-tuner's acquisition search against the zoo's vectorised one.

keras-tuner 1.4.8's ``BayesianOptimizationOracle.populate_space`` minimises
the upper confidence bound with L-BFGS-B from 50 random points, one
Gaussian-process prediction per finite-difference evaluation;
``search.ktcompat.gaussian_process_proposal`` scores those points and 2,000
more in one prediction and refines the best 5. Both run here on the same
oracle state: the zoo's dense space (``search.hypermodel.DenseHyperModel``), a
Bayesian oracle with 3 initial points, and ``--trials`` completed trials with
random scores (seed 0); before each new trial both searches propose from the
same reseeded state. No training: this measures the oracle alone.

Prints a markdown table (median and range of seconds per proposal); ``--json``
ends with one JSON line.

    .venv/bin/python benchmarks/proposal_time.py [--quick] [--trials 20] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(trials: int) -> dict[str, list[float]]:
    """Seconds of each way's proposal before each trial past the initial points."""
    from zoo.environment import set_process_defaults

    set_process_defaults()
    import keras_tuner as kt
    import numpy as np

    from search.hypermodel import DenseHyperModel
    from search.ktcompat import (
        attach_oracle,
        gaussian_process_proposal,
        reseed_gaussian_process_proposals,
    )
    from search.oracles import ResumableBayesianOracle

    oracle = ResumableBayesianOracle(
        objective=kt.Objective("cv_accuracy", "max"),
        max_trials=trials + 1,
        num_initial_points=3,
        seed=1,
    )
    attach_oracle(oracle, tempfile.mkdtemp(prefix="proposal-time-"), "bayesian")
    hp = kt.HyperParameters()
    DenseHyperModel(64, 10).declare_hyperparameters(hp)
    oracle.update_space(hp)
    generator = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {"keras-tuner": [], "vectorised": []}
    ways = {
        "keras-tuner": lambda: kt.oracles.BayesianOptimizationOracle.populate_space(oracle, "x"),
        "vectorised": lambda: gaussian_process_proposal(oracle),
    }
    for index in range(trials):
        if index >= 3:
            for way, propose in ways.items():
                reseed_gaussian_process_proposals(oracle, len(oracle.trials))
                started = time.perf_counter()
                propose()
                seconds[way].append(time.perf_counter() - started)
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"cv_accuracy": float(generator.uniform(0.8, 0.99))})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="completed trials (default 20)")
    parser.add_argument("--quick", action="store_true", help="a short run: 8 trials")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    if args.trials is None:
        args.trials = 8 if args.quick else 20
    if args.trials < 4:
        parser.error(f"--trials must be at least 4 (got {args.trials})")
    # keras-tuner's oracle prints each trial, and the Gaussian process's fit warns
    # about length scales at their bound: neither is this script's output.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = measure(args.trials)
    print(f"seconds per Bayesian proposal, {args.trials - 3} proposals, {os.cpu_count()} cores")
    print()
    print("| acquisition search | median | range |")
    print("|---|---|---|")
    for way, values in seconds.items():
        print(
            f"| {way} | {statistics.median(values):.2f} s | {min(values):.2f}-{max(values):.2f} s |"
        )
    if args.json:
        print(json.dumps({"trials": args.trials, "seconds": seconds}))


if __name__ == "__main__":
    main()
