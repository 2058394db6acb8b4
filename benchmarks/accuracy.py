"""Accuracy at a stated budget: the default search and the baselines under one protocol.

Runs, in one run directory and one process, what a user would type:

    digits-zoo baselines --run-dir DIR
    digits-zoo search --run-dir DIR --tuner bayesian --max-trials 500 --epochs 20 \\
        --top-k 5 --budget-minutes 24

on the bundled digits (seed 0, stratified 5-fold CV of the training part, a
20% test split no search sees). The search space is the zoo's default one:
nothing is pinned. The budget of the whole job is 30 minutes on 2 cores: 24
for the search's trials (a trial still training when they run out is stopped
and not scored), the rest for the baselines, the refits of the top 5 trials
and their ensemble. Prints the leaderboard's top rows, then the best dense
net's and the best baseline's CV and test accuracy; ``--json`` ends with one
JSON line of the figures, ``run_dir`` included so the winner can be exported
and checked elsewhere (``digits-zoo export RUN_DIR``).

    .venv/bin/python benchmarks/accuracy.py [--quick] [--json] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FULL = {
    "budget_minutes": 30.0,
    "search_minutes": 24.0,
    "epochs": 20,
    "max_trials": 500,
    "top_k": 5,
    "baselines": None,
}
QUICK = {
    "budget_minutes": 3.0,
    "search_minutes": 1.0,
    "epochs": 3,
    "max_trials": 4,
    "top_k": 2,
    "baselines": "knn_k1,logistic_regression",
}
SEED = 0


def run(settings: dict, run_dir: Path) -> dict:
    from digits_zoo.cli import main
    from digits_zoo.leaderboard import format_table, read_leaderboard

    started = time.monotonic()
    common = ["--run-dir", str(run_dir), "--seed", str(SEED)]
    baselines = ["baselines", *common]
    if settings["baselines"]:
        baselines += ["--models", settings["baselines"]]
    if main(baselines) != 0:
        raise SystemExit("the baselines failed")
    search = [
        "search",
        *common,
        "--tuner",
        "bayesian",
        "--max-trials",
        str(settings["max_trials"]),
        "--epochs",
        str(settings["epochs"]),
        "--top-k",
        str(settings["top_k"]),
        "--budget-minutes",
        str(settings["search_minutes"]),
    ]
    if main(search) != 0:
        raise SystemExit("the search failed")
    wall = time.monotonic() - started
    rows = read_leaderboard(run_dir)
    dense = [r for r in rows if r["kind"] == "keras"]
    classic = [r for r in rows if r["kind"] != "keras"]
    if not dense or not classic:
        raise SystemExit("the leaderboard lacks a dense or a baseline row")
    best_dense = max(dense, key=lambda r: r["cv_accuracy_mean"])
    best_classic = max(classic, key=lambda r: r["cv_accuracy_mean"])
    # The baseline with the best test accuracy need not be the one with the best CV.
    best_classic_test = max(classic, key=lambda r: r["test_accuracy"])
    trials = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((run_dir / "trials").glob("bayesian_*.json"))
    ]
    print("\n== accuracy at the stated budget ==")
    print(format_table(rows[:10]))
    print()
    print(
        f"best dense:    {best_dense['model']}  cv {best_dense['cv_accuracy_mean']:.4f} "
        f"± {best_dense['cv_accuracy_std']:.4f}  test {best_dense['test_accuracy']:.4f}"
    )
    print(
        f"best baseline: {best_classic['model']}  cv {best_classic['cv_accuracy_mean']:.4f} "
        f"± {best_classic['cv_accuracy_std']:.4f}  test {best_classic['test_accuracy']:.4f}"
    )
    print(
        f"best baseline test: {best_classic_test['model']}  "
        f"test {best_classic_test['test_accuracy']:.4f}"
    )
    completed = sum(t.get("status") == "COMPLETED" for t in trials)
    print(
        f"trials: {completed} scored, {len(trials) - completed} not; wall time "
        f"{wall / 60:.1f} min against a budget of {settings['budget_minutes']:g} min "
        f"({settings['search_minutes']:g} for the search's trials)"
    )
    return {
        "best_dense_cv": round(float(best_dense["cv_accuracy_mean"]), 6),
        "best_dense_cv_std": round(float(best_dense["cv_accuracy_std"]), 6),
        "best_dense_test": round(float(best_dense["test_accuracy"]), 6),
        "best_dense_model": best_dense["model"],
        "best_baseline_cv": round(float(best_classic["cv_accuracy_mean"]), 6),
        "best_baseline_model": best_classic["model"],
        "best_baseline_test": round(float(best_classic_test["test_accuracy"]), 6),
        "best_baseline_test_model": best_classic_test["model"],
        "dense_beats_every_baseline": all(
            float(best_dense[k]) > max(float(r[k]) for r in classic)
            for k in ("cv_accuracy_mean", "test_accuracy")
        ),
        "trials_scored": completed,
        "trials_stopped_or_failed": len(trials) - completed,
        "budget_seconds": settings["budget_minutes"] * 60,
        "search_budget_seconds": settings["search_minutes"] * 60,
        "wall_seconds": round(wall, 1),
        "seed": SEED,
        "run_dir": str(run_dir.resolve()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget, to check the script")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument("--run-dir", default=None, help="default runs/accuracy[-quick]")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    run_dir = Path(args.run_dir or ("runs/accuracy-quick" if args.quick else "runs/accuracy"))
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(
            f"{run_dir} is not empty; pass another --run-dir (the benchmark starts afresh)"
        )
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    figures = run(settings, run_dir)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
