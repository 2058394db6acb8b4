"""Small functions the test modules share (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits


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


def digits_table() -> np.ndarray:
    """The bundled digits as one optdigits table: 64 pixels of 0..16, then the label."""
    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target])


def write_table(path: Path, table: np.ndarray) -> Path:
    """Writes rows of numbers, no header; whole numbers without a decimal point."""
    lines = (",".join(f"{value:g}" for value in row) for row in np.asarray(table, dtype=float))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_line_error(error: pytest.ExceptionInfo) -> str:
    """The message of a caught error, checked to be one line."""
    text = str(error.value)
    assert "\n" not in text, text
    return text
