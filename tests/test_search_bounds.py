"""Bounds on the work one search flag can ask for, refused while parsing."""

from __future__ import annotations

import pytest

from digits_zoo.cli import build_parser
from digits_zoo.commands import MAX_ENSEMBLE_ROUNDS


@pytest.mark.parametrize("rounds", ["1000000000", str(MAX_ENSEMBLE_ROUNDS + 1), "-1", "many"])
def test_ensemble_rounds_are_bounded_at_parse_time(tmp_path, cli, rounds):
    status, out, err = cli("search", "--run-dir", tmp_path / "run", "--ensemble", rounds)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("digits-zoo: error: argument --ensemble: ")
    assert f"from 0 to {MAX_ENSEMBLE_ROUNDS} (got {rounds!r})" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rounds", [0, 1, 25, MAX_ENSEMBLE_ROUNDS])
def test_ensemble_rounds_within_the_bound_parse(rounds):
    args = build_parser().parse_args(["search", "--ensemble", str(rounds)])
    assert args.ensemble == rounds
