"""Subcommands ``list``, ``baselines`` and ``leaderboard``."""

from __future__ import annotations

import argparse

from digits_zoo.baselines import run_baselines
from digits_zoo.leaderboard import format_table, read_leaderboard, render
from digits_zoo.rundir import (
    DEFAULT_RUN_DIR,
    leaderboard_path,
    logs_dir,
    models_dir,
    trials_csv_path,
)
from digits_zoo.runs import open_run
from zoo.errors import ZooError
from zoo.families import ALL, CLASSIC, DENSE, classic_family_names, family_names
from zoo.registry import list_models, model_entry
from zoo.validation import check_integer

# The most rounds of greedy ensemble selection: 40 times the default (25, AutoGluon's
# ensemble_size). Its weights are multiples of 1/rounds, so 1000 rounds already weigh to
# 0.001, finer than a few thousand out-of-fold rows can tell apart, in well under a second
# (about 0.2 ms a round); a billion would hold the run's lock for days.
MAX_ENSEMBLE_ROUNDS = 1000


def _ensemble_rounds(text: str) -> int:
    """``--ensemble``'s value: a whole number of rounds from 0 to :data:`MAX_ENSEMBLE_ROUNDS`."""
    try:
        rounds = int(text)
    except ValueError:
        rounds = -1
    if not 0 <= rounds <= MAX_ENSEMBLE_ROUNDS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of rounds from 0 to {MAX_ENSEMBLE_ROUNDS} (got {text!r})"
        )
    return rounds


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that choose a run's data and protocol (shared by commands)."""
    parser.add_argument(
        "--data",
        action="append",
        default=None,
        metavar="SOURCE",
        help="optdigits (UCI's writer-independent protocol: 30 writers to train, 13 new ones "
        "to test), a .csv (optdigits layout), a .npz (MNIST layout), a folder of MNIST IDX "
        "files or a folder of pictures (one subfolder per class: 0/, 1/, ...); default: "
        "scikit-learn's bundled digits. Repeatable: the first source is the protocol (its "
        "test split, image format and classes), each later one adds training rows in that "
        "format (pictures converted by its recipe), e.g. --data optdigits --data collected.csv",
    )
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the split, the folds and the models (default 0)",
    )
    parser.add_argument(
        "--test-size", type=float, default=0.2, help="held-out test fraction (default 0.2)"
    )
    parser.add_argument(
        "--run-dir", default=DEFAULT_RUN_DIR, help=f"run directory (default {DEFAULT_RUN_DIR})"
    )


def register(subparsers) -> None:
    listing = subparsers.add_parser("list", help="print the zoo's models")
    listing.add_argument("--kind", choices=("keras", "sklearn"), help="only this kind")
    listing.set_defaults(handler=_list)

    baselines = subparsers.add_parser(
        "baselines", help="evaluate the classic baselines into the run's leaderboard"
    )
    add_run_arguments(baselines)
    baselines.add_argument(
        "--models", default=None, help="comma-separated zoo names (default: every sklearn entry)"
    )
    baselines.set_defaults(handler=_baselines)

    search = subparsers.add_parser(
        "search",
        help="search a model family's space (dense nets by default) with keras-tuner, scored by "
        "the run's CV folds",
    )
    add_run_arguments(search)
    classic = classic_family_names()
    search.add_argument(
        "--family",
        default=DENSE,
        metavar="NAME",
        help=f"the models searched: {', '.join(family_names())}; {CLASSIC} (the "
        f"{len(classic)} classic families one after another) or {ALL} (those, then {DENSE}); "
        f"default {DENSE}. With --budget-minutes M, {ALL} gives each classic family "
        f"M/{len(classic) * 5} plus what the families before it left unspent, and {DENSE} "
        f"the rest (at least 4M/5); {CLASSIC} splits M equally",
    )
    search.add_argument(
        "--tuner",
        default="bayesian",
        help="random, bayesian or hyperband (hyperband: dense only)",
    )
    search.add_argument(
        "--max-trials", type=int, default=10, help="trials in all, per family (default 10)"
    )
    search.add_argument(
        "--epochs", type=int, default=20, help="epochs per fit of a dense net (default 20)"
    )
    search.add_argument(
        "--top-k", type=int, default=3, help="best trials refit and tested into the leaderboard"
    )
    search.add_argument(
        "--ensemble",
        type=_ensemble_rounds,
        default=None,
        metavar="N",
        help="rounds of greedy ensemble selection over the run's networks (default: 25 when "
        "--top-k is 2 or more, else none; 0 or 1: none)",
    )
    search.add_argument(
        "--executions-per-trial",
        type=int,
        default=1,
        metavar="N",
        help="train each dense trial's network N times, seeded the run's seed and the next "
        "ones, scored, refit and shipped as their average (default 1; keras-tuner's name)",
    )
    search.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        metavar="M",
        help="start no trial once this search's trials have taken M minutes, shared among "
        "the families with --family all (one process)",
    )
    search.add_argument(
        "--workers", type=int, default=1, help="trials at once (keras-tuner distributed mode)"
    )
    search.add_argument(
        "--fix",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pin a hyperparameter of the family, e.g. --fix n_layers=2 or --fix gamma=0.2 "
        "(repeatable; with --family all, in every family that has it)",
    )
    search.add_argument(
        "--overwrite",
        action="store_true",
        help="forget this tuner's earlier trials of the family in the run",
    )
    search.add_argument(
        "--warm-start",
        default=None,
        metavar="RUN_DIR",
        help="begin with the best configurations (up to 3) of an earlier run's trials, "
        "any dataset (random and bayesian; without it a dense search begins with a strong "
        "start: three 1x256 GELU nets with layer norm and handwriting copies at strength 0.5)",
    )
    search.add_argument(
        "--no-early-stop",
        dest="early_stop",
        action="store_false",
        help="train every dense trial for all its epochs (by default random and bayesian "
        "searches stop a trial trailing the median of the finished ones; hyperband never)",
    )
    search.add_argument(
        "--no-strong-start",
        dest="strong_start",
        action="store_false",
        help="let the oracle choose a dense search's first trial too (by default it is a "
        "strong start, three 1x256 nets, unless --warm-start gives the first trials)",
    )
    search.add_argument(
        "--no-cost-aware",
        dest="cost_aware",
        action="store_false",
        help="keep every proposal under --budget-minutes (by default a random or bayesian "
        "dense search replaces one expected to take over a third of the budget left, "
        "estimated from the finished trials, by a random one that fits)",
    )
    search.set_defaults(handler=_search)

    board = subparsers.add_parser("leaderboard", help="print a run's leaderboard")
    board.add_argument("run_dir", metavar="RUN_DIR")
    board.add_argument("--top", type=int, default=None, help="only the best N rows")
    board.add_argument("--format", choices=("table", "csv", "json"), default="table")
    board.set_defaults(handler=_leaderboard)


def _list(args) -> int:
    names = list_models(kind=args.kind)
    width = max(len(name) for name in names)
    for name in names:
        entry = model_entry(name)
        print(f"{name:<{width}}  {entry.kind:<7}  {entry.description}")
    return 0


def _baselines(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    for name in models or []:
        model_entry(name)  # Unknown names fail before any data is loaded.
    run = open_run(
        args.run_dir, args.data, seed=args.seed, n_folds=args.folds, test_size=args.test_size
    )
    print(
        f"{run.dataset.name}: {len(run.dataset.y_train)} training and "
        f"{len(run.dataset.y_test)} test images of {run.dataset.image_shape}, "
        f"{args.folds}-fold CV, seed {args.seed}"
    )
    board = run_baselines(run, models)
    print()
    print(format_table(board))
    print(f"\nleaderboard: {leaderboard_path(run.path)}  (fitted models in {models_dir(run.path)})")
    return 0


def _leaderboard(args) -> int:
    if args.top is not None and args.top < 1:
        raise ZooError(f"--top must be at least 1 (got {args.top})")
    rows = read_leaderboard(args.run_dir)
    print(render(rows[: args.top] if args.top else rows, args.format))
    return 0


def _search(args) -> int:
    # The search imports Keras and keras-tuner (seconds): only this command pays for them.
    from digits_zoo.searching import run_searches, search_specs
    from search.records import read_trials, summarize_best
    from search.runner import WORKERS_LIMIT, max_workers
    from search.spec import BUDGET_ONE_PROCESS

    # Every flag is checked before any data is loaded or any training starts.
    specs = search_specs(
        args.family,
        args.fix,
        warm_start=args.warm_start,
        strong_start=args.strong_start,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        top_k=args.top_k,
        ensemble=args.ensemble,
        executions_per_trial=args.executions_per_trial,
        budget_minutes=args.budget_minutes,
        # Hyperband keeps its own schedule.
        early_stop=args.early_stop and args.tuner != "hyperband",
        cost_aware=args.cost_aware,
    )
    check_integer("--workers", args.workers, 1, max_workers(), WORKERS_LIMIT)
    if args.budget_minutes is not None and args.workers > 1:
        raise ZooError(BUDGET_ONE_PROCESS)
    run = open_run(
        args.run_dir,
        args.data,
        seed=args.seed,
        n_folds=args.folds,
        test_size=args.test_size,
        overwrite=args.overwrite,
    )
    budget = f" (budget {args.budget_minutes:g} min)" if args.budget_minutes else ""
    if args.family == DENSE:
        what = f"{args.tuner} search of {args.max_trials} trials x {args.folds} folds x "
        what += f"{args.epochs} epochs{budget}"
    else:
        families = ", ".join(spec.family for spec in specs)
        what = f"{args.tuner} search of {families}: {args.max_trials} trials each x "
        what += f"{args.folds} folds{budget}"
    print(f"{what} on {run.dataset.name} ({run.meta.get('device', '?')}), run dir {run.path}")
    board = run_searches(
        run,
        specs,
        budget_minutes=args.budget_minutes,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    for spec in specs:
        summary = summarize_best(read_trials(run.path, spec))
        print(summary if len(specs) == 1 else f"{spec.family}: {summary}")
    if board:
        print()
        print(format_table(board))
    print(
        f"\nleaderboard: {leaderboard_path(run.path)}   trials: {trials_csv_path(run.path)}\n"
        f"next: digits-zoo export {run.path}   |   tensorboard --logdir {logs_dir(run.path)}"
    )
    return 0
