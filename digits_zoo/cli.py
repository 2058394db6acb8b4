"""The ``digits-zoo`` command line: one entry point, one subcommand per job.

Each subcommand parses its flags, calls one library function and prints.
Expected errors print ``digits-zoo: error: ...`` on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from zoo.environment import set_process_defaults
from zoo.errors import ZooError

# Modules that add subcommands: each has ``register(subparsers)``, which adds
# parsers whose defaults hold ``handler(args) -> int``.
COMMAND_MODULES = (
    "digits_zoo.commands",
    "digits_zoo.ship.commands",
    "digits_zoo.ship.adapt",
    "digits_zoo.report.commands",
    "digits_zoo.serve.commands",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line in the house format."""

    def error(self, message: str):
        self.exit(2, f"digits-zoo: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """Returns the full parser with every subcommand."""
    parser = _Parser(
        prog="digits-zoo",
        description="Which model reads these digits best, and how do I ship it?",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    # The process's defaults (Keras backend, quiet TensorFlow) before anything imports Keras.
    set_process_defaults()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as error:
        # Usage errors (exit 2) and --help (exit 0) end here, as a status.
        return int(error.code or 0)
    try:
        return int(args.handler(args) or 0)
    except ZooError as error:
        print(f"digits-zoo: error: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        # A read-only run directory or export folder: the user's to fix, not a bug.
        print(
            f"digits-zoo: error: permission denied (got {error.filename!r}); make the folder "
            "writable or pass another --run-dir / --out",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("digits-zoo: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def entry_point() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
