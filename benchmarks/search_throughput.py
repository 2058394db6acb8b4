"""Search throughput: the usual keras-tuner loop against ``digits-zoo search``.

The same search (the zoo's space, trials, epochs, folds and seed) runs in
several ways, each in its own child process so that peak memory is its own:

* ``usual``: what a keras-tuner tutorial does: a ``build(hp)`` function over
  the zoo's space, ``RandomSearch``, and per fold a fresh model and
  ``model.fit`` with Keras defaults, on Keras's default backend (TensorFlow);
* ``zoo``: ``digits-zoo search --tuner random`` on its default backend (JAX),
  training through the zoo's estimator (all folds of a trial at once), every
  trial trained in full (``--no-early-stop``, as the usual loop);
* ``zoo-early-stop``: the same with the median stopping rule on, the
  command line's default (``search.stopping``): a trial trailing the finished
  ones stops after its warm-up;
* ``zoo-2-workers``: ``zoo`` with ``--workers 2``.

Prints trials per minute, best CV accuracy and peak memory (max RSS) of each
and the speedup; for the zoo's ways also the seconds of XLA compilation and
how many trials built a new compiled trainer or reused one of the same shape
(``zoo.stacked.cache_info``). ``--fix NAME=VALUE`` pins more of the space in
both ways: pinning the shape (``n_layers``, ``units``, ``activation``,
``normalization``, ``batch_size``) measures a search whose trials share one
compiled trainer. ``--json`` ends with one JSON line of the figures.

    .venv/bin/python benchmarks/search_throughput.py [--quick] [--json] [--fix NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

FULL = {"trials": 8, "epochs": 20, "folds": 5}
QUICK = {"trials": 3, "epochs": 5, "folds": 3}
SEED = 0
WAYS = ("usual", "zoo", "zoo-early-stop", "zoo-2-workers")
# The usual loop has no augmented copies or schedule; both ways search the rest of the space.
PINNED = {"augment": "none", "lr_schedule": "constant"}


def usual_tuner(
    tuner_class,
    run_dir: str,
    trials: int,
    epochs: int,
    folds: int,
    pinned: dict,
    seed: int = SEED,
    on_trial_end=None,
):
    """The usual keras-tuner loop: ``build(hp)`` over the zoo's space, ``model.fit`` per fold.

    Args:
        tuner_class: the keras-tuner tuner (``keras_tuner.RandomSearch``,
            ``keras_tuner.BayesianOptimization``...).
        run_dir: keras-tuner's folder.
        trials: ``max_trials``.
        epochs: epochs per fit.
        folds: CV folds of the bundled digits' training part.
        pinned: hyperparameters pinned to one value.
        seed: the seed of the split, folds, fits and oracle.
        on_trial_end: called with each finished trial, if given.

    Returns:
        The tuner, its objective ``cv_accuracy``; call ``search(verbose=0)``.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import keras_tuner as kt
    import numpy as np

    from zoo.data import load_dataset
    from zoo.network import build_dense_model
    from zoo.protocol import make_folds
    from zoo.space import DenseConfig

    dataset = load_dataset(seed=seed)
    x = dataset.scale(dataset.x_train)
    y = keras.utils.to_categorical(dataset.y_train, 10)
    fold_pairs = make_folds(dataset.y_train, folds, seed)

    def build(hp):
        return build_dense_model(DenseConfig.from_hp(hp, pinned), x.shape[1], 10)

    class CVTuner(tuner_class):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            scores = []
            for train, val in fold_pairs:
                keras.utils.set_random_seed(seed)
                model = self.hypermodel.build(hp)
                model.fit(
                    x[train],
                    y[train],
                    batch_size=hp.get("batch_size"),
                    epochs=epochs,
                    validation_data=(x[val], y[val]),
                    verbose=0,
                )
                scores.append(model.evaluate(x[val], y[val], verbose=0)[1])
            return {"cv_accuracy": float(np.mean(scores))}

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if on_trial_end is not None:
                on_trial_end(trial)

    return CVTuner(
        build,
        objective=kt.Objective("cv_accuracy", "max"),
        max_trials=trials,
        seed=seed + 1,
        directory=run_dir,
        project_name="usual",
        max_consecutive_failed_trials=trials + 1,
    )


def usual_way(run_dir: str, trials: int, epochs: int, folds: int, pinned: dict) -> dict:
    """A plain keras-tuner RandomSearch with model.fit per fold (Keras defaults)."""
    import keras_tuner as kt

    from zoo.space import DenseConfig

    tuner = usual_tuner(kt.RandomSearch, run_dir, trials, epochs, folds, pinned)
    started = time.perf_counter()
    tuner.search(verbose=0)
    seconds = time.perf_counter() - started
    best = tuner.oracle.get_best_trials(1)[0].score
    scores = {
        DenseConfig.from_dict(t.hyperparameters.values).to_json(): float(t.score)
        for t in tuner.oracle.trials.values()
        if t.score is not None
    }
    return {
        "seconds": seconds,
        "trials": trials,
        "best_cv": float(best),
        "backend": "tensorflow",
        "scores": scores,
    }


def zoo_way(
    run_dir: str,
    trials: int,
    epochs: int,
    folds: int,
    pinned: dict,
    workers: int = 1,
    early_stop: bool = False,
) -> dict:
    """``digits-zoo search`` through its library call, without the refit.

    ``early_stop`` turns on the median stopping rule, as the command line's
    default does (the configurations drawn stay the same: no strong first trials).
    """
    # What the command line does first: the zoo's process defaults (the JAX backend)
    # before Keras is imported; the empty compilation cache set by measure() wins.
    from zoo.environment import set_process_defaults

    set_process_defaults()
    import jax

    from digits_zoo.runs import device_description, open_run
    from digits_zoo.searching import run_search
    from search.records import read_trials
    from search.spec import SearchSpec
    from zoo.stacked import cache_info

    compile_seconds = [0.0]

    def count_compilation(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compile_seconds[0] += duration

    jax.monitoring.register_event_duration_secs_listener(count_compilation)
    run = open_run(run_dir, seed=SEED, n_folds=folds)
    started = time.perf_counter()
    run_search(
        run,
        SearchSpec(
            tuner="random",
            max_trials=trials,
            epochs=epochs,
            top_k=0,
            fixed=pinned,
            early_stop=early_stop,
        ),
        workers=workers,
        progress=print,
    )
    seconds = time.perf_counter() - started
    info = cache_info()
    rows = read_trials(
        run.path, SearchSpec(tuner="random", max_trials=trials, epochs=epochs, fixed=pinned)
    )
    best = max(r["cv_accuracy_mean"] for r in rows if r["cv_accuracy_mean"] != "")
    return {
        "seconds": seconds,
        "trials": trials,
        "best_cv": float(best),
        "backend": device_description(),
        "scores": {r["config"]: r["cv_accuracy_mean"] for r in rows if r["cv_accuracy_mean"] != ""},
        # Of this process only: with --workers 2 the trials train in the workers.
        "compile_seconds": compile_seconds[0] if workers == 1 else None,
        "trainers_built": info.misses if workers == 1 else None,
        "trainers_reused": info.hits if workers == 1 else None,
    }


def child(args) -> None:
    budget = QUICK if args.quick else FULL
    pinned = pinned_values(args.fix)
    run_dir = tempfile.mkdtemp(prefix=f"throughput-{args.way}-")
    if args.way == "usual":
        result = usual_way(run_dir, budget["trials"], budget["epochs"], budget["folds"], pinned)
    else:
        workers = 2 if args.way == "zoo-2-workers" else 1
        result = zoo_way(
            run_dir,
            budget["trials"],
            budget["epochs"],
            budget["folds"],
            pinned,
            workers,
            early_stop=args.way == "zoo-early-stop",
        )
    # Peak resident memory (Linux reports kilobytes) of this process, or of its
    # largest worker process for a distributed search.
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    result["peak_rss_mb"] = peak / 1024.0
    print("RESULT " + json.dumps(result), flush=True)


def pinned_values(fixes: list[str]) -> dict:
    """The benchmark's pinned hyperparameters plus ``--fix NAME=VALUE`` ones (validated)."""
    from zoo.space import parse_fixed

    return {**PINNED, **parse_fixed(fixes)}


def measure(way: str, quick: bool, fixes: list[str]) -> dict:
    """Runs one way in a child process; returns its figures (peak RSS included)."""
    command = [sys.executable, __file__, "--child", way] + (["--quick"] if quick else [])
    command += [f"--fix={fix}" for fix in fixes]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    if way == "usual":
        env["KERAS_BACKEND"] = "tensorflow"
    else:
        env.pop("KERAS_BACKEND", None)
        # Start from an empty compilation cache: no help from earlier runs.
        env["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="throughput-jax-cache-")
    finished = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if finished.returncode != 0:
        raise SystemExit(
            f"{way} way failed (exit {finished.returncode}):\n{finished.stdout[-3000:]}"
        )
    line = next(line for line in finished.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["trials_per_minute"] = result["trials"] / result["seconds"] * 60
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ways",
        default=",".join(WAYS),
        help=f"comma-separated ways to run (default all: {', '.join(WAYS)})",
    )
    parser.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pin a hyperparameter in both ways (repeatable), as digits-zoo search --fix",
    )
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.way = args.child
        child(args)
        return
    budget = QUICK if args.quick else FULL
    pinned = pinned_values(args.fix)
    print(
        f"search throughput: {budget['trials']} random trials x {budget['folds']} folds x "
        f"{budget['epochs']} epochs, bundled digits, seed {SEED}, {os.cpu_count()} cores, "
        f"pinned {json.dumps(pinned, sort_keys=True)}"
    )
    ways = [way.strip() for way in args.ways.split(",") if way.strip()]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown:
        parser.error(f"unknown way {', '.join(unknown)}; choose from {', '.join(WAYS)}")
    results = {way: measure(way, args.quick, args.fix) for way in ways}
    print()
    print(
        f"{'way':<14} {'backend':<11} {'seconds':>8} {'trials/min':>11} {'best cv':>8} "
        f"{'peak MB':>8} {'compile s':>10} {'built/reused':>13}"
    )
    for name, result in results.items():
        compiled = result.get("compile_seconds")
        built, reused = result.get("trainers_built"), result.get("trainers_reused")
        print(
            f"{name:<14} {result['backend']:<11} {result['seconds']:>8.1f} "
            f"{result['trials_per_minute']:>11.2f} {result['best_cv']:>8.4f} "
            f"{result['peak_rss_mb']:>8.0f} "
            f"{'-' if compiled is None else f'{compiled:.1f}':>10} "
            f"{'-' if built is None else f'{built}/{reused}':>13}"
        )
    figures: dict = {**budget, "pinned": pinned, **results}
    if "usual" in results and "zoo" in results:
        figures["speedup"] = (
            results["zoo"]["trials_per_minute"] / results["usual"]["trials_per_minute"]
        )
        print(f"\nspeedup (zoo trials/min over usual): {figures['speedup']:.2f}x")
        # Both ways draw the same configs (same space, same oracle seed): compare them pairwise.
        usual, zoo = results["usual"]["scores"], results["zoo"]["scores"]
        shared = sorted(set(usual) & set(zoo))
        if shared:
            differences = [zoo[c] - usual[c] for c in shared]
            figures["paired_cv_difference_mean"] = sum(differences) / len(differences)
            figures["paired_configs"] = len(shared)
            wins = sum(d > 0 for d in differences)
            print(
                f"same {len(shared)} configs, zoo CV minus usual CV: mean "
                f"{figures['paired_cv_difference_mean']:+.4f}, min {min(differences):+.4f}, "
                f"max {max(differences):+.4f} (zoo higher on {wins})"
            )
    if "usual" in results and "zoo-early-stop" in results:
        figures["speedup_early_stop"] = (
            results["zoo-early-stop"]["trials_per_minute"] / results["usual"]["trials_per_minute"]
        )
        print(
            f"speedup with the median stopping rule (the search's default): "
            f"{figures['speedup_early_stop']:.2f}x"
        )
    if "zoo" in results and "zoo-2-workers" in results:
        figures["workers_speedup"] = (
            results["zoo-2-workers"]["trials_per_minute"] / results["zoo"]["trials_per_minute"]
        )
        print(f"--workers 2 over --workers 1: {figures['workers_speedup']:.2f}x")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
