"""The leaderboard CSV: one row per evaluated model, best first, merged, written atomically."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from digits_zoo.rundir import checked_name, leaderboard_path, run_lock
from zoo.errors import ZooError
from zoo.files import atomic_write_text

# The documented columns, in order; rows may carry more (kept after these).
COLUMNS = [
    "rank",
    "model",
    "kind",
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "test_accuracy",
    "test_macro_f1",
    "test_ece",
    "fit_seconds",
    "predict_seconds_per_1000",
    "params",
    "config",
    "cv_folds",
    "source",
    "model_path",
]
# Columns added later: a leaderboard written before them still reads (their cells are
# then absent, and written back empty); a model without probabilities leaves test_ece empty.
OPTIONAL_COLUMNS = {"test_ece"}

_FLOATS = {
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "test_accuracy",
    "test_macro_f1",
    "test_ece",
    "fit_seconds",
    "predict_seconds_per_1000",
}


def read_leaderboard(run_dir: str | Path) -> list[dict[str, Any]]:
    """Reads ``run_dir/leaderboard.csv`` (numbers parsed), best first.

    Raises:
        ZooError: the directory holds no leaderboard.
    """
    path = leaderboard_path(run_dir)
    if not path.is_file():
        raise ZooError(
            f"no leaderboard in {str(run_dir)!r}; run digits-zoo baselines or search with "
            f"--run-dir {run_dir} first"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ZooError(
            f"cannot read the leaderboard ({error.__class__.__name__}) (got {str(path)!r}); "
            "restore it or rerun into a new --run-dir"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    header = reader.fieldnames or []
    # The tool writes whole files ending in a newline, every row with every column:
    # anything else was cut short or edited, and reading on would drop rows silently.
    if text and not text.endswith("\n") or any(None in row or None in row.values() for row in rows):
        raise ZooError(
            f"damaged leaderboard (a row is cut short or has extra cells) (got {str(path)!r}); "
            "restore it from a copy, or rerun digits-zoo baselines/search into a new --run-dir"
        )
    missing = [c for c in COLUMNS if c not in header and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ZooError(
            f"{path} is not a digits-zoo leaderboard (no column {', '.join(missing)}); "
            "restore it or rerun digits-zoo baselines into a new --run-dir"
        )
    for row in rows:
        checked_name(row["model"])
    try:
        return [_parse(row) for row in rows]
    except ValueError as error:
        raise ZooError(
            f"{path} holds a damaged number ({error}); restore it or rerun into a new --run-dir"
        ) from None


def read_leaderboard_if_any(run_dir: str | Path) -> list[dict[str, Any]]:
    """Reads the run's leaderboard as :func:`read_leaderboard` does, or ``[]`` when it has none yet."""
    return read_leaderboard(run_dir) if leaderboard_path(run_dir).is_file() else []


def _parse(row: dict[str, str]) -> dict[str, Any]:
    parsed: dict[str, Any] = dict(row)
    for key in _FLOATS:
        if row.get(key) not in (None, ""):
            parsed[key] = float(row[key])
    for key in ("rank", "params"):
        if row.get(key) not in (None, ""):
            parsed[key] = int(float(row[key]))
    return parsed


def rank_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorts rows best first (CV mean, then test accuracy, then name) and numbers them."""
    ordered = sorted(
        rows,
        key=lambda r: (-float(r["cv_accuracy_mean"]), -float(r["test_accuracy"]), r["model"]),
    )
    return [{**row, "rank": index} for index, row in enumerate(ordered, start=1)]


def merge_rows(run_dir: str | Path, new_rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merges rows into the run's leaderboard and rewrites it atomically.

    A new row replaces an older row of the same model name; every other row
    is kept.

    Returns:
        The whole leaderboard, best first.
    """
    # The read-modify-write waits for any other process's merge into this run.
    with run_lock(run_dir, wait=True):
        existing = read_leaderboard_if_any(run_dir)
        merged = {row["model"]: row for row in existing}
        for row in new_rows:
            merged[checked_name(row["model"])] = row
        ranked = rank_rows(merged.values())
        atomic_write_text(leaderboard_path(run_dir), to_csv(ranked))
    return ranked


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    extra = sorted({key for row in rows for key in row} - set(COLUMNS))
    return COLUMNS + extra


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Renders rows as CSV text with the documented columns first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return (
            f"{value:.6g}"
            if abs(value) < 1e-3 and value
            else f"{value:.6f}".rstrip("0").rstrip(".") or "0"
        )
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    """Renders the leaderboard's main columns as an aligned text table."""
    header = ["rank", "model", "kind", "cv accuracy", "test acc", "test F1", "fit s", "params"]
    lines = [header]
    for row in rows:
        lines.append(
            [
                str(row["rank"]),
                row["model"],
                row["kind"],
                f"{row['cv_accuracy_mean']:.4f} ± {row['cv_accuracy_std']:.4f}",
                f"{row['test_accuracy']:.4f}",
                f"{row['test_macro_f1']:.4f}",
                f"{row['fit_seconds']:.2f}",
                str(row["params"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for number, line in enumerate(lines):
        text.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if number == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """Renders rows as ``table``, ``csv`` or ``json``."""
    if fmt == "table":
        return format_table(rows)
    if fmt == "csv":
        return to_csv(rows).rstrip("\n")
    if fmt == "json":
        return json.dumps(rows, indent=2)
    raise ZooError(f"--format must be table, csv or json (got {fmt!r})")
