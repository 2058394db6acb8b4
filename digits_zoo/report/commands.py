"""Subcommand ``report``: a run's figures and the page that shows them, in ``RUN_DIR/report/``."""

from __future__ import annotations

import argparse

from digits_zoo.report.report import write_report


def register(subparsers) -> None:
    """Adds the ``report`` subcommand."""
    report = subparsers.add_parser(
        "report", help="draw a run's figures into RUN_DIR/report/ (open index.html)"
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a baselines or search run directory")
    report.add_argument(
        "--top", type=int, default=25, help="leaderboard rows in the bar chart (default 25)"
    )
    report.add_argument(
        "--curves", type=int, default=3, help="top trials whose learning curves are drawn"
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    result = write_report(args.run_dir, top=args.top, curves=args.curves, progress=print)
    for name, note in result.notes.items():
        print(f"left out {name}: {note}")
    return 0
