"""Shared fixtures: the bundled digits, a small stratified subset of them, the small runs the
tests read, and the command line run in-process."""

from __future__ import annotations

# The tests run with the programs' settings (the JAX backend above all); Keras
# picks its backend when first imported, so they are set before anything else.
from zoo.environment import set_process_defaults

set_process_defaults()

import shutil  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from digits_zoo.artifacts import save_fitted  # noqa: E402
from digits_zoo.baselines import run_baselines  # noqa: E402
from digits_zoo.cli import main  # noqa: E402
from digits_zoo.leaderboard import merge_rows  # noqa: E402
from digits_zoo.runs import load_run, open_run  # noqa: E402
from digits_zoo.searching import run_search  # noqa: E402
from search.spec import SearchSpec  # noqa: E402
from zoo import Dataset, create_model, load_dataset, model_entry  # noqa: E402
from zoo.protocol import evaluate_model  # noqa: E402

SMALL_TRAIN = 300
SMALL_TEST = 100


def _read_only(*arrays: np.ndarray) -> None:
    # Session-wide arrays are shared by every test: a test (or the code under test) that
    # changed them in place would break the others, so any such write raises instead.
    for array in arrays:
        array.setflags(write=False)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """The bundled digits, split with seed 0 (1,437 training and 360 test images)."""
    dataset = load_dataset(seed=0)
    _read_only(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    return dataset


@pytest.fixture(scope="session")
def small_digits(digits: Dataset) -> Dataset:
    """A stratified subset of the bundled digits: 300 training and 100 test images, raw pixels."""
    x_train, _, y_train, _ = train_test_split(
        digits.x_train,
        digits.y_train,
        train_size=SMALL_TRAIN,
        stratify=digits.y_train,
        random_state=0,
    )
    x_test, _, y_test, _ = train_test_split(
        digits.x_test, digits.y_test, train_size=SMALL_TEST, stratify=digits.y_test, random_state=0
    )
    _read_only(x_train, y_train, x_test, y_test)
    return Dataset(
        "digits[small]", x_train, y_train, x_test, y_test, (8, 8), 16.0, "split", split_seed=0
    )


# What the shared runs' search holds fixed (one 16-unit layer, no augmentation); it varies the rest.
SMALL_SEARCH_SPACE = {"n_layers": 1, "units": 16, "augment": "none"}


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory) -> Callable[..., Path]:
    """Builds a small run on the bundled digits (seed 0, 2 folds), once per session.

    ``shared_run(search_trials=..., top_k=..., baselines=..., networks=...)`` -> the
    run's folder, built in that order: a random search of ``search_trials``
    trials of 2 epochs over ``SMALL_SEARCH_SPACE`` (its ``top_k`` best refit and
    their ensemble), then ``baselines`` as ``digits-zoo baselines`` evaluates
    them, then ``networks`` (zoo network -> epochs) evaluated under the run's
    protocol and kept as baselines rows with their fitted models. A run with a
    search and more starts from a copy of the same search alone.

    Every test that asks for the same run gets the same folder: a test or
    module that writes into it (an export under ``RUN_DIR/export``, a damaged
    file) works on a copy (``helpers.copy_run``).
    """
    built: dict[tuple, Path] = {}

    def build(
        *,
        search_trials: int = 0,
        top_k: int = 2,
        baselines: Sequence[str] = (),
        networks: Mapping[str, int] | None = None,
    ) -> Path:
        networks = dict(networks or {})
        searched = (search_trials, top_k) if search_trials else None
        key = (searched, tuple(baselines), tuple(networks.items()))
        if key in built:
            return built[key]
        path = tmp_path_factory.mktemp("shared_run") / "run"
        if search_trials and (baselines or networks):
            shutil.copytree(build(search_trials=search_trials, top_k=top_k), path)
            run = load_run(path)
        else:
            run = open_run(path, seed=0, n_folds=2)
            if search_trials:
                spec = SearchSpec(
                    tuner="random",
                    max_trials=search_trials,
                    epochs=2,
                    top_k=top_k,
                    fixed=SMALL_SEARCH_SPACE,
                )
                run_search(run, spec, progress=lambda line: None)
        if baselines:
            run_baselines(run, list(baselines), progress=lambda line: None)
        for name, epochs in networks.items():
            estimator = create_model(name, seed=run.seed, epochs=epochs)
            result = evaluate_model(name, model_entry(name).kind, estimator, run.dataset, run.folds)
            row = {**result.row(), "source": "baselines"}
            row["model_path"] = save_fitted(result.fitted, path, name)
            merge_rows(path, [row])
        built[key] = path
        return path

    return build


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Runs ``digits-zoo`` in this process: ``cli("list")`` -> ``(status, stdout, stderr)``.

    Usage errors leave argparse through ``SystemExit``; its code is the status the
    console script exits with, so it is returned like any other.
    """

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exit_:
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def cli_error(cli) -> Callable[..., str]:
    """Runs ``digits-zoo`` expecting a user error: ``cli_error(*argv, match=...)`` -> stderr.

    Checks the house rule: exit status 2, nothing on stdout, and exactly one
    ``digits-zoo: error:`` line on stderr that contains ``match``, with no traceback.
    """

    def run(*argv: object, match: str) -> str:
        status, out, err = cli(*argv)
        assert status == 2, (status, out, err)
        assert out == ""
        assert err.startswith("digits-zoo: error: "), err
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert match in err, err
        return err

    return run
