"""Time to a winner: wall time from a search's start until its best CV first reaches 0.990 and 0.995.

``digits-zoo search`` with its defaults (the default space, Bayesian, 5 folds,
20 epochs) on the bundled digits, seeds 0, 1 and 2, with each of the search's speed-ups
on and off, and the usual keras-tuner loop as the peer:

* ``all``: everything on (the median stopping rule, compiled trainers reused
  per shape, the strong first trial, the budget's cost rule);
* ``no-early-stop``: ``--no-early-stop``;
* ``no-compile-reuse``: every trial compiles its trainer afresh. The child
  process frees the compiled-trainer cache after every trial
  (``search.tuner.release_compiled`` replaced by ``zoo.stacked.clear_compiled``;
  ``zoo.stacked.MAX_CACHED_SHAPES = 0`` would not do it, since the cache
  always keeps its newest shape) and writes nothing to JAX's persistent
  compilation cache, so a trial of a known shape cannot load its program
  from disk either (as before the change, when the hyperparameters baked into
  a program made its every trial's program new). The child prints the
  cache's counters; the run's ``reused`` column shows 0;
* ``no-strong-start``: ``--no-strong-start``: the oracle chooses the first trial too;
* ``no-cost-aware``: ``--no-cost-aware``;
* ``usual``: ``keras_tuner.BayesianOptimization`` with ``build(hp)`` and
  ``model.fit`` per fold on TensorFlow, as ``search_throughput.py``'s usual
  way (its code, reused), over the same space but for the augmented copies
  and the learning-rate schedule, which that loop does not have (pinned to
  ``none`` and ``constant``).

Two clocks per zoo run: ``t`` until the best trial's CV reaches a
threshold, and ``t+ens`` until the best of the trials and of their greedy
ensemble does (:class:`EnsembleScores`: the ensemble the search ships, selected
from the out-of-fold probabilities of the trials finished by then, which is the
leaderboard's best row had the search ended there; its members' refits, a few
seconds each after the search, are not counted).

Each run is a child process started with an empty JAX compilation cache, with
``--budget-minutes`` the cap (``--cap-minutes``, default 5) and a large
``--max-trials``. The time axis starts when the child is started (the
process start-up counts) and ends at the cap; a threshold first reached
later is reported as not reached. The trials' end times come from their
records (``ended_at``; the usual loop writes one line per trial). A run
stops as soon as its best CV reaches the highest threshold (SIGINT, as a
user's Ctrl-C), to save machine time; a zoo run stops when ``t+ens`` reaches
it, so its ``t`` of the highest threshold may then read "not reached".

Prints a markdown table (way x seed, then the median over seeds of each
way; a threshold not reached counts as later than any reached); ``--json``
ends with one JSON line.

    .venv/bin/python benchmarks/time_to_accuracy.py [--quick] [--json] [--ways all,usual]
        [--seeds 0,1,2] [--cap-minutes 5] [--run-root DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))
sys.path.insert(0, str(BENCHMARKS))

from search_throughput import PINNED, usual_tuner  # noqa: E402

THRESHOLDS = (0.990, 0.995)
WAYS = ("all", "no-early-stop", "no-compile-reuse", "no-strong-start", "no-cost-aware", "usual")
# The zoo's ways: the flags of each beside the search's defaults.
FLAGS = {
    "all": [],
    "no-early-stop": ["--no-early-stop"],
    "no-compile-reuse": [],
    "no-strong-start": ["--no-strong-start"],
    "no-cost-aware": ["--no-cost-aware"],
}
FULL = {"seeds": "0,1,2", "ways": ",".join(WAYS), "cap_minutes": 5.0, "epochs": 20, "folds": 5}
# A check of the script only: 2 ways, 1 seed, a 1-minute cap and small trials.
QUICK = {"seeds": "0", "ways": "all,usual", "cap_minutes": 1.0, "epochs": 5, "folds": 3}
# Large enough never to end a run before its cap; any count of 30 or more gives the
# Bayesian oracle its 10 random points before the Gaussian process.
MAX_TRIALS = 200
USUAL_TRIALS_FILE = "usual_trials.jsonl"
# Seconds a run may take past its cap (the trial then running ends at an epoch's end),
# and to wind down after SIGINT, before it is terminated.
GRACE_SECONDS = 60
POLL_SECONDS = 2.0


def child_zoo(way: str, run_dir: str, seed: int, cap_minutes: float, epochs: int, folds: int):
    """Runs ``digits-zoo search`` in this process as the way asks; prints the cache's counters."""
    from zoo.environment import set_process_defaults

    set_process_defaults()
    import search.tuner
    import zoo.stacked
    from digits_zoo.cli import main

    if way == "no-compile-reuse":
        # Nothing compiled outlives its trial: the next trial of the shape compiles again.
        search.tuner.release_compiled = zoo.stacked.clear_compiled
    argv = ["search", "--run-dir", run_dir, "--seed", str(seed), "--folds", str(folds)]
    argv += ["--epochs", str(epochs), "--max-trials", str(MAX_TRIALS), "--top-k", "0"]
    argv += ["--budget-minutes", f"{cap_minutes:g}", *FLAGS[way]]
    status = main(argv)
    info = zoo.stacked.cache_info()
    print("CACHE " + json.dumps({"built": info.misses, "reused": info.hits}), flush=True)
    sys.exit(status)


def child_usual(run_dir: str, seed: int, epochs: int, folds: int) -> None:
    """The usual loop: Bayesian keras-tuner, one line per finished trial (end time, CV)."""
    import keras_tuner as kt

    trials_file = Path(run_dir) / USUAL_TRIALS_FILE

    def record(trial) -> None:
        score = trial.score if trial.status == "COMPLETED" else None
        line = {"ended_at": time.time(), "cv": score, "status": str(trial.status)}
        with open(trials_file, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(line) + "\n")

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    tuner = usual_tuner(
        kt.BayesianOptimization,
        str(Path(run_dir) / "tuner"),
        MAX_TRIALS,
        epochs,
        folds,
        PINNED,
        seed=seed,
        on_trial_end=record,
    )
    try:
        tuner.search(verbose=0)
    except KeyboardInterrupt:
        sys.exit(130)


class EnsembleScores:
    """The CV of the greedy ensemble the search would ship if it ended after each trial.

    As ``digits_zoo.ensembles.add_shipped_ensemble`` selects it: greedy
    selection (``zoo.selection``, its default rounds) over the out-of-fold
    probabilities of the search's ``ensemble_pool`` of the trials finished so
    far (the best completed ones, trained in full). Scored on the run's folds
    with no training; the refits of its members (a few seconds each, after
    the search) are not counted in the time.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.run = None
        self.known: dict[tuple[str, ...], float] = {}

    def score(self, trials: list[dict]) -> float | None:
        """The ensemble's CV over the finished trials so far (``read_trials``-like rows)."""
        from digits_zoo.ensembles import ensemble_pool
        from search.records import read_out_of_fold
        from zoo.selection import DEFAULT_ROUNDS, greedy_selection

        pool = tuple(trial["trial_id"] for trial in ensemble_pool(trials))
        if not pool:
            return None
        if pool not in self.known:
            if self.run is None:
                from digits_zoo.runs import load_run

                self.run = load_run(self.run_dir)
            probabilities = [read_out_of_fold(self.run_dir, name) for name in pool]
            if any(p is None for p in probabilities):
                return None  # a file being written: next poll
            dataset = self.run.dataset
            selection = greedy_selection(
                probabilities, dataset.y_train, dataset.classes, self.run.folds, DEFAULT_ROUNDS
            )
            self.known[pool] = selection.cv_accuracy_mean
        return self.known[pool]


def finished_trials(
    way: str, run_dir: Path, ensembles: EnsembleScores | None = None
) -> list[tuple[float, float | None, float | None]]:
    """``(end time, CV or None, ensemble CV or None)`` of each finished trial so far, in end order.

    The ensemble's CV (zoo ways only, with ``ensembles``) is that of the greedy
    ensemble of the trials finished by then.
    """
    if way == "usual":
        path = run_dir / USUAL_TRIALS_FILE
        if not path.is_file():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return sorted((line["ended_at"], line["cv"], None) for line in lines)
    from search.records import trial_records

    trials = []
    for record in trial_records(run_dir, "bayesian"):
        if "ended_at" not in record:
            continue  # being written, or a record of another version
        scores = record.get("cv_scores")
        cv = sum(scores) / len(scores) if scores and record.get("status") == "COMPLETED" else None
        trials.append((float(record["ended_at"]), cv, record))
    trials.sort(key=lambda trial: trial[0])
    finished = []
    so_far: list[dict] = []
    for ended_at, cv, record in trials:
        if cv is not None:
            so_far.append(
                {
                    "trial_id": record["trial_id"],
                    "status": "COMPLETED",
                    "cv_accuracy_mean": cv,
                    "stopped_early": bool(record.get("stopped_early")),
                }
            )
        ensemble = ensembles.score(so_far) if ensembles is not None else None
        finished.append((ended_at, cv, ensemble))
    return finished


def times_to_thresholds(
    trials: list[tuple[float, float | None, float | None]],
    started: float,
    cap_seconds: float,
    with_ensemble: bool = False,
) -> tuple[dict[str, float | None], float | None, int]:
    """When the best CV first reached each threshold (seconds from ``started``), within the cap.

    With ``with_ensemble`` the best CV is the best of the trials' and of the
    greedy ensemble's (the leaderboard's best row had the search ended then).

    Returns:
        The seconds per threshold (``None``: not reached within the cap), the
        best CV within the cap, and the trials finished within it.
    """
    reached: dict[str, float | None] = {f"{t:.3f}": None for t in THRESHOLDS}
    best = None
    count = 0
    for ended_at, cv, ensemble in trials:
        elapsed = ended_at - started
        if elapsed > cap_seconds:
            break
        count += 1
        if with_ensemble and ensemble is not None:
            cv = ensemble if cv is None else max(cv, ensemble)
        if cv is None:
            continue
        best = cv if best is None else max(best, cv)
        for threshold in THRESHOLDS:
            key = f"{threshold:.3f}"
            if reached[key] is None and best >= threshold:
                reached[key] = elapsed
    return reached, best, count


def run_one(way: str, seed: int, settings: dict, run_root: Path) -> dict:
    """Runs one way and seed in a child process; returns its times to the thresholds."""
    # The search refuses a folder that is not a run: its log and cache go beside it.
    run_dir = run_root / f"{way}-seed{seed}"
    run_root.mkdir(parents=True, exist_ok=True)
    cap_seconds = settings["cap_minutes"] * 60
    command = [sys.executable, __file__, "--child", way, "--seed", str(seed)]
    command += ["--run-dir", str(run_dir), "--cap-minutes", f"{settings['cap_minutes']:g}"]
    command += ["--epochs", str(settings["epochs"]), "--folds", str(settings["folds"])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    if way == "usual":
        env["KERAS_BACKEND"] = "tensorflow"
    else:
        env.pop("KERAS_BACKEND", None)
        # A cold compilation cache, as a fresh clone's first search.
        env["JAX_COMPILATION_CACHE_DIR"] = str(run_root / f"{way}-seed{seed}-jax-cache")
        if way == "no-compile-reuse":
            # Nothing compiled is written to disk for a later trial to load.
            env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1000000"
    log_path = run_root / f"{way}-seed{seed}.log"
    top = f"{max(THRESHOLDS):.3f}"
    ensembles = None if way == "usual" else EnsembleScores(run_dir)
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.time()
        # SIGINT as Ctrl-C delivers it, even where this script runs in the background
        # (a shell starts background jobs with SIGINT ignored, which children inherit).
        child = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        stop = "exit"
        interrupted_at = None
        while child.poll() is None:
            time.sleep(POLL_SECONDS)
            now = time.time()
            # Stops once the leaderboard's best row (trial or ensemble) reaches the top.
            reached, _, _ = times_to_thresholds(
                finished_trials(way, run_dir, ensembles), started, cap_seconds, with_ensemble=True
            )
            if interrupted_at is None and (reached[top] is not None or now - started > cap_seconds):
                stop = f"reached {top}" if reached[top] is not None else "cap"
                child.send_signal(signal.SIGINT)
                interrupted_at = now
            elif interrupted_at is not None and now - interrupted_at > GRACE_SECONDS:
                child.terminate()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    finished = finished_trials(way, run_dir, ensembles)
    reached, best, count = times_to_thresholds(finished, started, cap_seconds)
    reached_ensemble, best_ensemble, _ = times_to_thresholds(
        finished, started, cap_seconds, with_ensemble=True
    )
    result = {
        "way": way,
        "seed": seed,
        "seconds_to": reached,
        "best_cv": best,
        "seconds_to_with_ensemble": reached_ensemble,
        "best_cv_with_ensemble": best_ensemble,
        "trials": count,
        "stopped": stop,
        "exit": child.returncode,
        "log": str(log_path),
    }
    cache = [line for line in log_path.read_text().splitlines() if line.startswith("CACHE ")]
    if cache:
        result.update(json.loads(cache[-1][len("CACHE ") :]))
    return result


def median_seconds(values: list[float | None]) -> float | None:
    """The median over seeds, a threshold not reached counting as later than any reached."""
    median = statistics.median([math.inf if value is None else value for value in values])
    return None if math.isinf(median) else median


def format_seconds(seconds: float | None, cap_minutes: float) -> str:
    if seconds is None:
        return f"not reached (> {cap_minutes:g} min)"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def table(results: list[dict], ways: list[str], cap_minutes: float) -> str:
    """The markdown table: each run, then the median over seeds of each way.

    ``t(x)`` counts the best trial; ``t+ens(x)`` the best of the trials and of
    the greedy ensemble of the trials finished by then (zoo ways only).
    """
    keys = [f"{t:.3f}" for t in THRESHOLDS]
    lines = [
        "| way | seed | "
        + " | ".join(f"t({key})" for key in keys)
        + " | "
        + " | ".join(f"t+ens({key})" for key in keys)
        + " | trials | best trial CV | best with ensemble | trainers built/reused |",
        "|---|---|" + "---|" * (2 * len(keys)) + "---|---|---|---|",
    ]

    def cells(values: list[float | None], bold: bool = False, missing: str | None = None) -> str:
        """Seconds per threshold; ``missing`` (if given) stands for a threshold not reached."""
        texts = [
            missing if value is None and missing else format_seconds(value, cap_minutes)
            for value in values
        ]
        return " | ".join(f"**{text}**" if bold else text for text in texts)

    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    def medians(runs: list[dict], field: str) -> list[float | None]:
        return [median_seconds([r[field][k] for r in runs]) for k in keys]

    dashes = " | ".join("-" for _ in keys)
    for way in ways:
        runs = [r for r in results if r["way"] == way]
        ensemble = way != "usual"
        for run in runs:
            cache = f"{run['built']}/{run['reused']}" if "built" in run else "-"
            # Stopped when the ensemble reached the top: the trials had no more time.
            stopped = (
                "not reached before the stop" if run["stopped"].startswith("reached") else None
            )
            plain = cells([run["seconds_to"][k] for k in keys], missing=stopped)
            both = cells([run["seconds_to_with_ensemble"][k] for k in keys]) if ensemble else dashes
            best_both = figure(run["best_cv_with_ensemble"]) if ensemble else "-"
            lines.append(
                f"| {way} | {run['seed']} | {plain} | {both} | {run['trials']} | "
                f"{figure(run['best_cv'])} | {best_both} | {cache} |"
            )
        if len(runs) > 1:
            plain = cells(medians(runs, "seconds_to"), True)
            both = cells(medians(runs, "seconds_to_with_ensemble"), True) if ensemble else dashes
            trials = statistics.median(r["trials"] for r in runs)
            lines.append(f"| {way} | median | {plain} | {both} | {trials:g} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="check the script: tiny runs")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument(
        "--ways", default=None, help=f"comma-separated, from {', '.join(WAYS)} (default all)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument(
        "--cap-minutes", type=float, default=None, help="each run's cap (default 5; quick 1)"
    )
    parser.add_argument(
        "--run-root",
        default=None,
        help="folder of the runs' folders (default: a new temporary one)",
    )
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folds", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # TensorFlow's start-up chatter, where this process reads a run (EnsembleScores).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    settings = dict(QUICK if args.quick else FULL)
    for name in ("ways", "seeds", "cap_minutes", "epochs", "folds"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.child == "usual":
        child_usual(args.run_dir, args.seed, settings["epochs"], settings["folds"])
        return
    if args.child:
        child_zoo(
            args.child,
            args.run_dir,
            args.seed,
            settings["cap_minutes"],
            settings["epochs"],
            settings["folds"],
        )
        return
    ways = [way.strip() for way in settings["ways"].split(",") if way.strip()]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown:
        parser.error(f"unknown way {', '.join(unknown)}; choose from {', '.join(WAYS)}")
    try:
        seeds = [int(seed) for seed in settings["seeds"].split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers (got {settings['seeds']!r})")
    if not settings["cap_minutes"] > 0:
        parser.error(f"--cap-minutes must be positive (got {settings['cap_minutes']})")
    run_root = Path(args.run_root or tempfile.mkdtemp(prefix="time-to-accuracy-"))
    print(
        f"time to accuracy: bayesian, {settings['folds']} folds x {settings['epochs']} epochs, "
        f"bundled digits, seeds {','.join(map(str, seeds))}, cap {settings['cap_minutes']:g} min, "
        f"{os.cpu_count()} cores, runs in {run_root}",
        flush=True,
    )
    results = []
    for way in ways:
        for seed in seeds:
            result = run_one(way, seed, settings, run_root)
            results.append(result)
            times = ", ".join(
                f"t({key}) {format_seconds(value, settings['cap_minutes'])}"
                for key, value in result["seconds_to"].items()
            )
            if way != "usual":
                times += ", with the ensemble: " + ", ".join(
                    f"t({key}) {format_seconds(value, settings['cap_minutes'])}"
                    for key, value in result["seconds_to_with_ensemble"].items()
                )
            print(
                f"{way} seed {seed}: {times}; {result['trials']} trials, stopped: "
                f"{result['stopped']}",
                flush=True,
            )
    print()
    print(table(results, ways, settings["cap_minutes"]))
    if args.json:
        medians = {
            way: {
                field: {
                    key: median_seconds([r[field][key] for r in results if r["way"] == way])
                    for key in (f"{t:.3f}" for t in THRESHOLDS)
                }
                for field in ("seconds_to", "seconds_to_with_ensemble")
            }
            for way in ways
        }
        print(json.dumps({**settings, "seeds": seeds, "runs": results, "medians": medians}))


if __name__ == "__main__":
    main()
