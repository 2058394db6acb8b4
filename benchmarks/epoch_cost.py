"""Cost of one training epoch: the zoo's training path against scikit-learn's MLPClassifier.

The same network (64-256-256-10, ReLU, Adam at 1e-3, no dropout, no
penalty), the same data (the bundled digits' 80% training part, scaled to
[0, 1], float32) and the same batch sizes (32, 128, 512) for both, in one
process, measurements interleaved so that the machine's load hits both alike:

* CV (the target): the five folds of a trial. The zoo trains them as one
  fold-stacked model (``zoo.stacked.fit_stacked``, what
  ``DenseNetClassifier.fit_folds`` runs, validating every fold after every
  epoch); scikit-learn fits the five folds one after the other. Figures are
  milliseconds per epoch per fit (an epoch of the stack divided by five).
* single: one network on the whole training part (``fit_stacked`` with one
  member, what ``DenseNetClassifier.fit`` runs) against one MLPClassifier.

A zoo epoch is timed warm: the difference between a long and a short fit,
divided by the extra epochs, so compilation and set-up cancel out; they are
printed apart as "overhead" (cold: the first fit of the batch size, compiling
its training step into an empty cache; warm: a later fit of the same shape,
which reuses the compiled trainer and only resets its variables, as a search
trial of a shape already seen does). Batch 512 lies outside
the search space, so the benchmark calls ``fit_stacked`` directly (with its
``batch_size``). scikit-learn is timed with one BLAS thread (threadpoolctl)
and with the default, and the faster of the two is compared and named.

Usage::

    python benchmarks/epoch_cost.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# Compilation is part of what is measured: start from an empty JAX cache.
_CACHE = tempfile.TemporaryDirectory(prefix="epoch-cost-jax-")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE.name
# Runs from a checkout without installing: the repository root holds zoo/ and search/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.environment import set_process_defaults  # noqa: E402

# The programs' settings (the JAX backend, quiet TensorFlow) before Keras is imported;
# the empty compilation cache set above wins over the default one.
set_process_defaults()

BATCH_SIZES = (32, 128, 512)
FOLDS = 5
SEED = 0
FULL = {"short": 2, "long": 22, "repeats": 3}
QUICK = {"short": 1, "long": 6, "repeats": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few epochs, one repeat")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    return parser.parse_args(argv)


def network_config():
    """The zoo's side of the compared network: 2x256 ReLU, Adam 1e-3, no dropout."""
    from zoo import DenseConfig

    return DenseConfig(
        n_layers=2,
        units=256,
        activation="relu",
        dropout_rate=0.0,
        normalization="none",
        l2=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        label_smoothing=0.0,
    )


def sklearn_mlp(batch_size: int, epochs: int):
    """scikit-learn's side: the same network, run for exactly ``epochs`` epochs."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(256, 256),
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=batch_size,
        learning_rate_init=1e-3,
        max_iter=epochs,
        # No early stop: every fit runs all its epochs.
        n_iter_no_change=epochs + 1,
        tol=0.0,
        shuffle=True,
        random_state=SEED,
    )


def settle() -> None:
    """Lets idle worker threads go to sleep before a timed call.

    OpenBLAS's and XLA's thread pools spin for a moment after their work;
    on two cores, threads left spinning by one side would slow the other.
    """
    time.sleep(0.3)


def time_sklearn(X, y, rows, batch_size, epochs, threads, X_score=None, y_score=None):
    """Fits one MLPClassifier per entry of ``rows``; returns seconds per epoch per fit and scores.

    ``X_score``/``y_score`` are a list of held-out parts, one per fit.
    """
    from threadpoolctl import threadpool_limits

    seconds, epochs_run, scores = 0.0, 0, []
    with warnings.catch_warnings(), threadpool_limits(limits=threads, user_api="blas"):
        warnings.simplefilter("ignore")
        for index, train in enumerate(rows):
            model = sklearn_mlp(batch_size, epochs)
            settle()
            started = time.perf_counter()
            model.fit(X[train], y[train])
            seconds += time.perf_counter() - started
            epochs_run += model.n_iter_
            if X_score is not None:
                scores.append(model.score(X_score[index], y_score[index]))
    return seconds / epochs_run, scores


def time_zoo(X, y, train_rows, val_rows, batch_size, epochs):
    """One ``fit_stacked`` run; returns its seconds and the fit."""
    from zoo.stacked import fit_stacked

    settle()
    started = time.perf_counter()
    fit = fit_stacked(
        network_config(),
        X,
        y,
        10,
        train_rows,
        val_rows,
        epochs=epochs,
        seed=SEED,
        batch_size=batch_size,
    )
    return time.perf_counter() - started, fit


def measure(X, y, X_test, y_test, folds, batch_size, budget) -> dict:
    """Everything for one batch size: zoo CV and single, scikit-learn CV and single."""
    short, long, repeats = budget["short"], budget["long"], budget["repeats"]
    trains = [train for train, _ in folds]
    vals = [val for _, val in folds]
    everything = [np.arange(len(X))]

    first_cv, _ = time_zoo(X, y, trains, vals, batch_size, short)
    first_single, _ = time_zoo(X, y, everything, None, batch_size, short)
    zoo_cv = {"short": [], "long": []}
    zoo_single = {"short": [], "long": []}
    sk_cv = {1: [], None: []}
    sk_single = {1: [], None: []}
    sk_scores = {}
    for _ in range(repeats):
        # Interleaved, so that a burst of load elsewhere falls on both sides.
        zoo_cv["short"].append(time_zoo(X, y, trains, vals, batch_size, short)[0])
        seconds, cv_fit = time_zoo(X, y, trains, vals, batch_size, long)
        zoo_cv["long"].append(seconds)
        for threads in (1, None):
            per_epoch, scores = time_sklearn(
                X, y, trains, batch_size, long, threads, [X[v] for v in vals], [y[v] for v in vals]
            )
            sk_cv[threads].append(per_epoch)
            sk_scores["cv", threads] = float(np.mean(scores))
        zoo_single["short"].append(time_zoo(X, y, everything, None, batch_size, short)[0])
        seconds, single_fit = time_zoo(X, y, everything, None, batch_size, long)
        zoo_single["long"].append(seconds)
        for threads in (1, None):
            per_epoch, scores = time_sklearn(
                X, y, everything, batch_size, long, threads, [X_test], [y_test]
            )
            sk_single[threads].append(per_epoch)
            sk_scores["single", threads] = float(np.mean(scores))

    def zoo_epoch(times):
        return (np.median(times["long"]) - np.median(times["short"])) / (long - short)

    def sklearn_figures(part, times):
        medians = {threads: float(np.median(values)) for threads, values in times.items()}
        fastest = min(medians, key=medians.get)
        return {
            "sklearn_ms": medians[fastest] * 1e3,
            "sklearn_threads": "1" if fastest == 1 else "default",
            "sklearn_ms_1_thread": medians[1] * 1e3,
            "sklearn_ms_default_threads": medians[None] * 1e3,
            "sklearn_accuracy": sk_scores[part, fastest],
        }

    cv_stack_epoch = zoo_epoch(zoo_cv)
    single_epoch = zoo_epoch(zoo_single)
    cv = sklearn_figures("cv", sk_cv)
    single = sklearn_figures("single", sk_single)
    single_predicted = np.argmax(single_fit.predict_proba(X_test)[0], axis=1)
    return {
        "batch_size": batch_size,
        "cv": {
            "zoo_ms": cv_stack_epoch / FOLDS * 1e3,
            "zoo_stack_epoch_ms": cv_stack_epoch * 1e3,
            **cv,
            "ratio": cv_stack_epoch / FOLDS * 1e3 / cv["sklearn_ms"],
            "zoo_overhead_cold_s": first_cv - short * cv_stack_epoch,
            "zoo_overhead_warm_s": float(np.median(zoo_cv["short"])) - short * cv_stack_epoch,
            "zoo_accuracy": float(np.mean([h["val_accuracy"][-1] for h in cv_fit.histories])),
        },
        "single": {
            "zoo_ms": single_epoch * 1e3,
            **single,
            "ratio": single_epoch * 1e3 / single["sklearn_ms"],
            "zoo_overhead_cold_s": first_single - short * single_epoch,
            "zoo_overhead_warm_s": float(np.median(zoo_single["short"])) - short * single_epoch,
            "zoo_accuracy": float(np.mean(single_predicted == y_test)),
        },
    }


def print_table(title: str, header: tuple[str, ...], lines: list[tuple[str, ...]]) -> None:
    """Prints an aligned text table."""
    print(title)
    lines = [header, *lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))
    print()


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its tables (and a JSON line with ``--json``)."""
    args = parse_args(argv)
    import keras

    from digits_zoo.runs import library_versions
    from zoo import load_dataset
    from zoo.protocol import make_folds

    budget = QUICK if args.quick else FULL
    dataset = load_dataset(seed=SEED)
    X, y = dataset.scale(dataset.x_train), dataset.y_train
    X_test, y_test = dataset.scale(dataset.x_test), dataset.y_test
    folds = make_folds(y, FOLDS, SEED)
    versions = library_versions()
    print(
        f"Epoch cost, 64-256-256-10 ReLU on the bundled digits ({len(X)} training rows, "
        f"{FOLDS} folds of ~{len(folds[0][0])}), {os.cpu_count()} CPU cores, "
        f"keras {versions.get('keras')} on {keras.backend.backend()} "
        f"(jax {versions.get('jax', '-')}), scikit-learn {versions.get('scikit-learn')}; "
        f"warm epochs from fits of {budget['short']} and {budget['long']} epochs, "
        f"median of {budget['repeats']}"
    )
    # The first Keras fit of a process pays one-off start-up costs; keep them apart.
    started = time.perf_counter()
    from zoo.stacked import fit_stacked

    fit_stacked(
        network_config(), X[:64], y[:64], 10, [np.arange(64)], epochs=1, seed=SEED, batch_size=32
    )
    start_up = time.perf_counter() - started
    print(f"process start-up (first Keras fit, a tiny one): {start_up:.1f} s\n")

    rows = [measure(X, y, X_test, y_test, folds, b, budget) for b in BATCH_SIZES]
    for part, title in (
        ("cv", f"CV: {FOLDS} folds of a trial, ms per epoch per fit"),
        ("single", "single: one fit on the whole training part, ms per epoch"),
    ):
        print_table(
            title,
            (
                "batch",
                "scikit-learn",
                "threads",
                "zoo",
                "zoo/sklearn",
                "overhead cold",
                "warm",
                "acc zoo",
                "acc sklearn",
            ),
            [
                (
                    str(row["batch_size"]),
                    f"{row[part]['sklearn_ms']:.1f}",
                    row[part]["sklearn_threads"],
                    f"{row[part]['zoo_ms']:.1f}",
                    f"{row[part]['ratio']:.2f}",
                    f"{row[part]['zoo_overhead_cold_s']:.2f} s",
                    f"{row[part]['zoo_overhead_warm_s']:.2f} s",
                    f"{row[part]['zoo_accuracy']:.4f}",
                    f"{row[part]['sklearn_accuracy']:.4f}",
                )
                for row in rows
            ],
        )
    both = "; ".join(
        f"batch {row['batch_size']}: "
        + ", ".join(
            f"{part} {row[part]['sklearn_ms_1_thread']:.1f} / "
            f"{row[part]['sklearn_ms_default_threads']:.1f}"
            for part in ("cv", "single")
        )
        for row in rows
    )
    print(f"scikit-learn ms per epoch with 1 BLAS thread / the default: {both}")
    ratio = max(row["cv"]["ratio"] for row in rows)
    single_ratio = max(row["single"]["ratio"] for row in rows)
    print(
        f"target (zoo CV epoch no slower than scikit-learn's at every batch size): "
        f"{'met' if ratio <= 1.0 else 'NOT met'} (worst ratio {ratio:.2f}; "
        f"single fits: {single_ratio:.2f})"
    )
    if args.json:
        figures = {
            "epoch_cost": {
                "ratio": ratio,
                "single_ratio": single_ratio,
                "start_up_s": start_up,
                "cores": os.cpu_count(),
                "backend": keras.backend.backend(),
                "versions": versions,
                "budget": budget,
                "batch_sizes": rows,
            }
        }
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
