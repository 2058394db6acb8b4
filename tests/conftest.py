"""Shared fixtures: the bundled digits and a small stratified subset of them."""

from __future__ import annotations

# The tests run with the programs' settings (the JAX backend above all); Keras
# picks its backend when first imported, so they are set before anything else.
from zoo.environment import set_process_defaults

set_process_defaults()

from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from digits_zoo.cli import main  # noqa: E402
from zoo import Dataset, load_dataset  # noqa: E402

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
