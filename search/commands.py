"""Subcommands ``list``, ``baselines`` and ``leaderboard``."""

from __future__ import annotations

import argparse

from search.leaderboard import read_leaderboard, render
from search.runs import DEFAULT_RUN_DIR


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags that choose a run's data and protocol (shared by commands)."""
    parser.add_argument(
        "--data",
        default=None,
        help="a .csv (optdigits layout), a .npz (MNIST layout) or a folder of MNIST IDX "
        "files; default: scikit-learn's bundled digits",
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

    board = subparsers.add_parser("leaderboard", help="print a run's leaderboard")
    board.add_argument("run_dir", metavar="RUN_DIR")
    board.add_argument("--top", type=int, default=None, help="only the best N rows")
    board.add_argument("--format", choices=("table", "csv", "json"), default="table")
    board.set_defaults(handler=_leaderboard)


def _list(args) -> int:
    from zoo.registry import list_models, model_entry

    names = list_models(kind=args.kind)
    width = max(len(name) for name in names)
    for name in names:
        entry = model_entry(name)
        print(f"{name:<{width}}  {entry.kind:<7}  {entry.description}")
    return 0


def _baselines(args) -> int:
    from search.baselines import run_baselines
    from search.leaderboard import format_table
    from search.runs import open_run
    from zoo.registry import model_entry

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
    print(
        f"\nleaderboard: {run.path / 'leaderboard.csv'}  (fitted models in {run.path / 'models'})"
    )
    return 0


def _leaderboard(args) -> int:
    from zoo.errors import ZooError

    if args.top is not None and args.top < 1:
        raise ZooError(f"--top must be at least 1 (got {args.top})")
    rows = read_leaderboard(args.run_dir)
    print(render(rows[: args.top] if args.top else rows, args.format))
    return 0
