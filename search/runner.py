"""Runs a search's trials: in this process, with supervised local workers, or as one
process of a search spread over hosts by keras-tuner's environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from search import paths
from search.budget import budget_shares, carried_budget, spent_seconds
from search.distributed import run_distributed
from search.records import trial_records
from search.spec import BUDGET_ONE_PROCESS, SearchContext, SearchSpec, prepare_search
from search.tuner import make_tuner, quiet_search_warnings
from zoo.errors import ZooError
from zoo.files import read_json
from zoo.network import picture_side
from zoo.validation import check_integer, square_side

WORKERS_LIMIT = ", one per core this process may use"


def max_workers() -> int:
    """The most workers a search may start: one per core this process may use.

    Each worker is a process with its own Keras and TensorFlow (about 600 MB);
    more workers than cores only slow every trial down.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_data_fits_space(context: SearchContext, spec: SearchSpec) -> None:
    """Refuses, before any trial, a search whose space holds augmentation or a convolutional
    stem the data cannot take.

    Raises:
        ZooError: the images are not square and ``augment`` is not pinned to ``none``, or
            ``conv_filters`` is pinned for rows that are not square pictures of side 4 or more.
    """
    n_features = context.dataset.n_features
    if "augment" not in spec.model_family.config.names():
        return  # a classic family copies no images
    if spec.fixed.get("conv_filters"):
        picture_side(n_features)
    if square_side(n_features, 2) is not None:
        return
    if spec.fixed.get("augment", None) != "none":
        raise ZooError(
            f"augmentation needs square images, but rows have {n_features} features "
            f"(got augment={spec.fixed.get('augment', 'searched')!r}); pass --fix augment=none"
        )


def check_state_readable(directory: Path) -> None:
    """Refuses, with one line, to resume from keras-tuner state files that are not valid JSON.

    keras-tuner reads ``oracle.json`` and every ``trial.json`` when it resumes and
    would fail with a traceback deep inside; each is read here first.

    Raises:
        ZooError: naming the damaged file.
    """
    root = paths.tuner_root(directory)
    for state in sorted(root.glob("*/oracle.json")) + sorted(root.glob("*/trial_*/trial.json")):
        if not isinstance(read_json(state, "keras-tuner state"), dict):
            raise ZooError(
                f"damaged keras-tuner state (not a JSON object) (got {str(state)!r}); restore "
                "it, or rerun the search with --overwrite"
            )


def is_remote_worker() -> bool:
    """Whether this process is a worker (not the chief) of a search spread over hosts by hand."""
    role = os.environ.get("KERASTUNER_TUNER_ID")
    return role is not None and "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in role


def run_trials(
    context: SearchContext,
    spec: SearchSpec,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[str], None] = print,
    worker_timeout: float | None = None,
) -> bool:
    """Runs (or resumes) a search's trials until the oracle has none left.

    Args:
        context: the search's folder, data, folds and seed.
        spec: the search settings.
        workers: trials run at once; above 1, keras-tuner's distributed mode
            with a chief and that many worker processes on this machine.
        overwrite: forget this tuner's earlier trials in the folder.
        progress: receives the progress lines.
        worker_timeout: with workers, seconds without a finished trial after
            which the search is stopped (default: one hour).

    Returns:
        ``True`` when this process should go on to use the trials (it ran the
        search, or is the chief of one spread over hosts); ``False`` for a
        worker of a search spread over hosts, whose chief does that.

    Raises:
        ZooError: bad settings, before any training.
    """
    check_integer("--workers", workers, 1, max_workers(), WORKERS_LIMIT)
    check_data_fits_space(context, spec)
    check_state_readable(context.directory)
    if spec.budget_minutes is not None and (workers > 1 or "KERASTUNER_ORACLE_IP" in os.environ):
        raise ZooError(BUDGET_ONE_PROCESS)
    quiet_search_warnings()
    spec = prepare_search(context, spec, overwrite=overwrite)
    role = os.environ.get("KERASTUNER_TUNER_ID")
    if role is not None and "KERASTUNER_ORACLE_IP" in os.environ:
        # One process of a search spread over hosts by hand (see the README):
        # the chief serves the oracle, then refits; a worker runs trials.
        make_tuner(context, spec, progress).search(verbose=0)
        if "chief" not in role:
            progress(f"worker {role} done; the chief refits the top trials")
            return False
    elif workers == 1:
        make_tuner(context, spec, progress).search(verbose=0)
    else:
        run_distributed(context, spec, workers, progress=progress, stall_timeout=worker_timeout)
    return True


def run_family_trials(
    context: SearchContext,
    specs: list[SearchSpec],
    *,
    budget_minutes: float | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[str], None] = print,
    worker_timeout: float | None = None,
) -> tuple[list[SearchSpec], bool]:
    """Runs (or resumes) several families' searches one after another, under one time budget.

    With a budget, each family may spend its share (``search.budget.budget_shares``:
    the dense nets half, the classic families the other half equally) plus
    what the families before it left unspent, read from their trial records;
    the ``budget_minutes`` of each spec is replaced by that. A family left
    with no time is skipped. Without one, each runs its ``max_trials``.

    Args:
        context: the searches' folder, data, folds and seed.
        specs: one spec per family, in the order to search them.
        budget_minutes: the budget they share, or ``None``.
        workers, overwrite, progress, worker_timeout: as :func:`run_trials`.

    Returns:
        The specs that ran (with their own budgets), and whether this process
        should go on to use the trials (``False`` for a worker of a search
        spread over hosts).

    Raises:
        ZooError: bad settings, before any training.
    """
    shares = budget_shares(budget_minutes, [s.family for s in specs]) if budget_minutes else {}
    ran: list[SearchSpec] = []
    spent_before = 0.0
    for index, spec in enumerate(specs):
        if budget_minutes:
            budget = carried_budget([shares[s.family] for s in specs[: index + 1]], spent_before)
            if budget <= 0:
                progress(
                    f"{spec.family}: no time left of the {budget_minutes:g} min budget; skipped"
                )
                spent_before += spent_seconds(trial_records(context.directory, spec.project)) / 60
                continue
            spec = dataclasses.replace(spec, budget_minutes=budget)
        if len(specs) > 1:
            limit = f", budget {spec.budget_minutes:.2f} min" if budget_minutes else ""
            progress(f"== {spec.family}: {spec.tuner} search of {spec.max_trials} trials{limit} ==")
        finish = run_trials(
            context,
            spec,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
            worker_timeout=worker_timeout,
        )
        ran.append(spec)
        if not finish:
            return ran, False
        spent_before += spent_seconds(trial_records(context.directory, spec.project)) / 60
    return ran, True
