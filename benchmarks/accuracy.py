"""Accuracy at a stated budget: the networks and the tuned classic models under one protocol.

Runs, in one run directory and one process, what a user would type:

    digits-zoo baselines --run-dir DIR
    digits-zoo search --run-dir DIR --family all --tuner bayesian --max-trials 500 \\
        --epochs 20 --top-k 5 --budget-minutes 24
    digits-zoo search --run-dir DIR --tuner random --max-trials 1 --epochs 3 --top-k 1 \\
        --ensemble 25 --fix conv_filters=64 --fix n_layers=1 ... (every hyperparameter)

on the bundled digits (seed 0, stratified 5-fold CV of the training part, a
20% test split no search sees). The search spaces are the zoo's default ones:
nothing is pinned. The budget of the whole job is 30 minutes on 2 cores: 24
for the searches' trials, the rest for the fixed baselines, the refits of each
family's top 5 trials and the networks' ensemble. ``--family all`` shares the
24 minutes: the six classic families first, each with 48 s plus what the ones
before it left unspent (4.8 minutes in all), then the dense networks with the
rest (at least 19.2 minutes; a network trial still training at the end is
stopped and not scored). So the leaderboard holds the fixed baselines, the
tuned ones (``search_bayesian_<family>_<trial>``) and the networks, all on the
same folds and test split.

Then, outside the 30 minutes, the convolutional stems' search: one trial of
``search.spec.CONV_STEM_TRIAL`` (64 filters, then 1x256 ReLU), every
hyperparameter pinned, for its own 3 epochs where the networks' trials train
20, with two executions (``--executions-per-trial 2``: the stem seeded 0 and
1, averaged; 15 minutes of CV on optdigits, 2 cores), refit as one row
(``search_random_0_conv64_1x256_relu_2seeds``). ``--no-stem`` leaves it out;
``--quick`` trains it with 8 filters for 1 epoch.

``--family classic --search-minutes 4.8`` runs the classic part alone (the
same shares); ``--family dense`` the benchmark as it was before there were
tuned baselines. ``--data optdigits`` switches to UCI's writer-independent
protocol (the zoo's named dataset): train (and cross-validate) on UCI's
``optdigits.tra`` (3,823 digits by 30 writers), test on the bundled digits
(UCI's ``optdigits.tes``: 1,797 digits by 13 other writers).

Then it ships: ``digits-zoo export RUN_DIR --model STEMS`` (the two stems'
row, with its temperature; without the stems, ``digits-zoo export RUN_DIR``,
the leaderboard's best Keras row, as ``make demo`` does), scored on the test
part, so the figures include the shipped winner's accuracy, errors and
calibrated expected calibration error (ECE, 15 bins); then ``digits-zoo export
RUN_DIR --model STEMS --refit-full``, the same row refit on the training part
and the test part together, as the next version (the one a server serves; its
test figure is not held out, ``benchmarks/other_writers.py`` measures it on
other writers). The stems ship rather than the best CV row because they read
other people's handwriting best once adapted, within 0.1 points of it on the
writer-independent test (``benchmarks/RESULTS.md``, "Two convolutional stems").

Prints the leaderboard's top rows, then the best network's, the best fixed
baseline's and each tuned family's CV and test accuracy; ``--json`` ends with
one JSON line of the figures, ``run_dir`` included.

    .venv/bin/python benchmarks/accuracy.py [--quick] [--json] [--run-dir DIR]
        [--family NAME] [--search-minutes M] [--data digits|optdigits] [--no-stem]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.spec import CONV_STEM_EPOCHS, CONV_STEM_EXECUTIONS, CONV_STEM_TRIAL  # noqa: E402
from zoo.families import DENSE  # noqa: E402

FULL = {
    "budget_minutes": 30.0,
    "search_minutes": 24.0,
    "epochs": 20,
    "max_trials": 500,
    "top_k": 5,
    "baselines": None,
    # The convolutional stem's pinned search (search.spec.CONV_STEM_TRIAL): its epochs, filters.
    "stem": (CONV_STEM_EPOCHS, CONV_STEM_TRIAL["conv_filters"]),
}
QUICK = {
    "budget_minutes": 3.0,
    "search_minutes": 1.0,
    "epochs": 3,
    "max_trials": 4,
    "top_k": 2,
    "baselines": "knn_k1,logistic_regression",
    "stem": (1, 8),
}
SEED = 0
# The tuner of the stems' search: its trial is named search_<tuner>_0_conv...
STEM_TUNER = "random"


def _line(label: str, row: dict) -> str:
    return (
        f"{label:<24} {row['model']:<40} cv {row['cv_accuracy_mean']:.4f} "
        f"± {row['cv_accuracy_std']:.4f}  test {row['test_accuracy']:.4f}"
    )


def _figures(row: dict) -> dict:
    return {
        "model": row["model"],
        "cv": round(float(row["cv_accuracy_mean"]), 6),
        "cv_std": round(float(row["cv_accuracy_std"]), 6),
        "test": round(float(row["test_accuracy"]), 6),
        "config": json.loads(row["config"]),
    }


def shipped_winner(run_dir: Path, model: str | None = None) -> dict:
    """Exports ``model``'s row (default: the leaderboard's best Keras row) as a user would and
    scores it on the test part, then exports it refit on every labelled digit (the next
    version, the one served)."""
    import numpy as np

    from digits_zoo.runs import load_run
    from digits_zoo.ship.evaluate import evaluate_export
    from digits_zoo.ship.export import export_run
    from digits_zoo.ship.load import load_export

    exported = export_run(run_dir, model=model)
    dataset = load_run(run_dir).dataset
    test_csv = run_dir / "test_split.csv"
    np.savetxt(test_csv, np.column_stack([dataset.x_test, dataset.y_test]), fmt="%d", delimiter=",")
    scored = evaluate_export(load_export(exported.path), test_csv)
    served = export_run(run_dir, model=exported.metadata.get("model"), refit_full=True)
    return {
        "served": str(served.path),
        "model": exported.metadata.get("model"),
        "export": str(exported.path),
        "test": round(float(scored["accuracy"]), 6),
        "test_errors": int(scored["rows"] - scored["correct"]),
        "test_rows": int(scored["rows"]),
        "ece": round(float(scored["ece"]), 6),
        "temperature": scored["temperature"],
    }


def stem_search(stem: tuple[int, int], common: list[str]) -> list[str]:
    """The convolutional stems' search: one trial of :data:`search.spec.CONV_STEM_TRIAL`, every
    hyperparameter pinned, ``stem`` its epochs and filters, trained
    :data:`search.spec.CONV_STEM_EXECUTIONS` times (seeds 0, 1) and averaged."""
    epochs, filters = stem
    values = {**CONV_STEM_TRIAL, "conv_filters": filters}
    fixed = [part for name, value in values.items() for part in ("--fix", f"{name}={value}")]
    return [
        "search",
        *common,
        "--family",
        DENSE,
        "--tuner",
        STEM_TUNER,
        "--max-trials",
        "1",
        "--epochs",
        str(epochs),
        "--top-k",
        "1",
        "--executions-per-trial",
        str(CONV_STEM_EXECUTIONS),
        *fixed,
    ]


def run(settings: dict, run_dir: Path, family: str, data: str) -> dict:
    from digits_zoo.cli import main
    from digits_zoo.leaderboard import format_table, read_leaderboard
    from zoo.families import expand_families, get_family

    started = time.monotonic()
    common = ["--run-dir", str(run_dir), "--seed", str(SEED)]
    if data != "digits":
        common += ["--data", data]
    baselines = ["baselines", *common]
    if settings["baselines"]:
        baselines += ["--models", settings["baselines"]]
    if main(baselines) != 0:
        raise SystemExit("the baselines failed")
    search = [
        "search",
        *common,
        "--family",
        family,
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
    stem_wall = None
    if settings["stem"] and DENSE in expand_families(family):
        if main(stem_search(settings["stem"], common)) != 0:
            raise SystemExit("the convolutional stem's search failed")
        stem_wall = time.monotonic() - started - wall
    rows = read_leaderboard(run_dir)
    dense = [r for r in rows if r["kind"] == "keras"]
    fixed = [r for r in rows if r["source"] == "baselines" and r["kind"] != "keras"]
    tuned = [r for r in rows if r["source"] == "search" and r["kind"] != "keras"]
    if not fixed:
        raise SystemExit("the leaderboard lacks a baseline row")
    best_fixed = max(fixed, key=lambda r: r["cv_accuracy_mean"])
    # The baseline with the best test accuracy need not be the one with the best CV.
    best_fixed_test = max(fixed, key=lambda r: r["test_accuracy"])
    classic = fixed + tuned
    families = [name for name in expand_families(family) if get_family(name).kind != "keras"]
    best_tuned = {}
    for name in families:
        mine = [r for r in tuned if r["model"].startswith(f"search_bayesian_{name}_")]
        if mine:
            best_tuned[name] = mine[0]  # the leaderboard is ranked: best CV, then test
    trials = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((run_dir / "trials").glob("bayesian_*.json"))
    ]
    print("\n== accuracy at the stated budget ==")
    print(format_table(rows[:15]))
    print()
    figures: dict = {}
    if dense:
        best_dense = max(dense, key=lambda r: r["cv_accuracy_mean"])
        print(_line("best network", best_dense))
        figures.update(
            best_dense_cv=round(float(best_dense["cv_accuracy_mean"]), 6),
            best_dense_cv_std=round(float(best_dense["cv_accuracy_std"]), 6),
            best_dense_test=round(float(best_dense["test_accuracy"]), 6),
            best_dense_model=best_dense["model"],
            # Against every classic row, fixed or tuned: the fair comparison.
            dense_beats_every_baseline=all(
                float(best_dense[k]) > max(float(r[k]) for r in classic)
                for k in ("cv_accuracy_mean", "test_accuracy")
            ),
        )
    stem = next((r for r in dense if r["model"].startswith(f"search_{STEM_TUNER}_")), None)
    if stem is not None:
        print(_line("convolutional stems", stem))
        figures["stem"] = _figures(stem)
    print(_line("best fixed baseline", best_fixed))
    print(f"{'best fixed baseline test':<24} {best_fixed_test['model']:<40} test "
          f"{best_fixed_test['test_accuracy']:.4f}")  # fmt: skip
    for name, row in best_tuned.items():
        print(_line(f"tuned {name}", row) + f"  {row['config']}")
    by_family: dict[str, list] = {}
    for trial in trials:
        by_family.setdefault(trial.get("family", "dense"), []).append(trial)
    scored = {k: sum(t.get("status") == "COMPLETED" for t in v) for k, v in by_family.items()}
    spent = {
        k: round(sum(float(t.get("wall_seconds") or t.get("seconds") or 0) for t in v), 1)
        for k, v in by_family.items()
    }
    print(
        "trials scored: "
        + ", ".join(f"{k} {scored[k]} in {spent[k]:.0f} s" for k in by_family)
        + f"; wall time {wall / 60:.1f} min against a budget of {settings['budget_minutes']:g} "
        f"min ({settings['search_minutes']:g} for the searches' trials)"
        + ("" if stem_wall is None else f", then the stem's search {stem_wall / 60:.1f} min")
    )
    from digits_zoo.rundir import ensembles_path

    if ensembles_path(run_dir).is_file():
        # The greedy selections: the shipped one (networks) and the mixed one (not exported).
        ensembles = json.loads(ensembles_path(run_dir).read_text(encoding="utf-8"))
        for part in ("shipped", "mixed"):
            chosen = ensembles.get(part)
            if chosen:
                members = ", ".join(
                    f"{m if isinstance(m, str) else m['model']} {w:.2f}"
                    for m, w in zip(chosen["members"], chosen["weights"], strict=True)
                )
                print(
                    f"{part} greedy ensemble: cv {chosen['cv_accuracy_mean']:.4f} test "
                    f"{chosen['test_accuracy']} ({members})"
                )
        figures["ensembles"] = ensembles
    figures.update(
        best_baseline_cv=round(float(best_fixed["cv_accuracy_mean"]), 6),
        best_baseline_model=best_fixed["model"],
        best_baseline_test=round(float(best_fixed_test["test_accuracy"]), 6),
        best_baseline_test_model=best_fixed_test["model"],
        tuned={name: _figures(row) for name, row in best_tuned.items()},
        trials_scored=scored,
        trial_seconds=spent,
        trials_stopped_or_failed=len(trials) - sum(scored.values()),
        family=family,
        data=data,
        protocol="writer-independent (UCI)" if data == "optdigits" else "random split",
        budget_seconds=settings["budget_minutes"] * 60,
        search_budget_seconds=settings["search_minutes"] * 60,
        wall_seconds=round(wall, 1),
        stem_wall_seconds=None if stem_wall is None else round(stem_wall, 1),
        seed=SEED,
        run_dir=str(run_dir.resolve()),
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget, to check the script")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument("--run-dir", default=None, help="default runs/accuracy[-quick]")
    parser.add_argument(
        "--family",
        default="all",
        help="what the search explores (default all: the classic families' 4.8 of the 24 "
        "minutes, then the networks); dense, classic or one family's name",
    )
    parser.add_argument(
        "--search-minutes",
        type=float,
        default=None,
        metavar="M",
        help="the searches' time budget (default 24, --quick 1)",
    )
    parser.add_argument(
        "--data",
        choices=("digits", "optdigits"),
        default="digits",
        help="digits (default: the bundled digits, a random split of 13 writers) or "
        "optdigits (UCI's writer-independent protocol: 30 writers to train, 13 new to test)",
    )
    parser.add_argument(
        "--no-stem",
        action="store_true",
        help="leave out the convolutional stems' pinned search: the budgeted searches alone, "
        "and the best Keras row shipped",
    )
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    if args.no_stem:
        settings["stem"] = None
    if args.search_minutes is not None:
        # The rest of the job (baselines, refits) keeps its time.
        extra = settings["budget_minutes"] - settings["search_minutes"]
        settings["search_minutes"] = args.search_minutes
        settings["budget_minutes"] = args.search_minutes + extra
    run_dir = Path(args.run_dir or ("runs/accuracy-quick" if args.quick else "runs/accuracy"))
    if run_dir.exists() and any(run_dir.iterdir()):
        raise SystemExit(
            f"{run_dir} is not empty; pass another --run-dir (the benchmark starts afresh)"
        )
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    figures = run(settings, run_dir, args.family, args.data)
    winner = shipped_winner(run_dir, (figures.get("stem") or {}).get("model"))
    print(
        f"shipped winner {winner['model']}: test {winner['test']:.4f} "
        f"({winner['test_errors']} errors in {winner['test_rows']}), calibrated ECE "
        f"{winner['ece']:.4f} at temperature {winner['temperature']}; served, refit on every "
        f"labelled digit: {winner['served']}"
    )
    figures["shipped_winner"] = winner
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
