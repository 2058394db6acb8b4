"""Small functions the test modules share (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV file's header and its rows as dictionaries, every cell a string."""
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        return list(reader.fieldnames or []), list(reader)


def copy_run(run_dir: Path, folder: Path) -> Path:
    """A copy of a run, ``folder / "run"``, for a test to write into (its ``export`` left out)."""
    copy = folder / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    return copy
