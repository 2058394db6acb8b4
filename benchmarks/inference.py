"""Inference speed of an exported SavedModel against scikit-learn's SVC and k-NN.

Measures, in one process and on the same inputs (the whole bundled digits
set, 1,797 rows of raw 0..16 pixels):

* throughput: predictions per second when all 1,797 rows go in one call;
* latency: the median and 99th percentile of one-image calls.

The export is called the way ``digits-zoo predict`` calls it (numpy in,
``serving_default`` signature, numpy out; scaling happens inside the model).
The scikit-learn models get the same raw pixels and scale them in the timed
call, as a user of them has to. Without ``--export`` a small network is
trained and exported into a temporary folder first.

Usage::

    python benchmarks/inference.py [--quick] [--json] [--export EXPORT_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Runs from a checkout without installing: the repository root holds zoo/ and search/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zoo  # noqa: E402, F401  (sets the Keras backend and quiets TensorFlow first)
from zoo.errors import ZooError  # noqa: E402

NETWORK = "dense_2x256"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, for a smoke run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument(
        "--export",
        default=None,
        help="an existing export of a bundled-digits network (default: train and export "
        f"{NETWORK} into a temporary folder)",
    )
    return parser.parse_args(argv)


def make_export(folder: Path, epochs: int) -> Path:
    """Trains the zoo's ``dense_2x256`` on the bundled digits' training part and exports it."""
    from digits_zoo.ship.export import export_estimator
    from zoo import create_model, load_dataset

    dataset = load_dataset()
    network = create_model(NETWORK, epochs=epochs)
    network.fit(dataset.scale(dataset.x_train), dataset.y_train)
    result = export_estimator(network, dataset, folder, name=NETWORK)
    return result.path


def time_calls(call: Callable[[], object], repeats: int) -> np.ndarray:
    """Runs ``call`` once to warm up, then ``repeats`` times; returns each run's seconds."""
    call()
    seconds = np.empty(repeats)
    for index in range(repeats):
        started = time.perf_counter()
        call()
        seconds[index] = time.perf_counter() - started
    return seconds


def measure(
    predict: Callable[[np.ndarray], object], x: np.ndarray, batch_repeats: int, singles: int
) -> dict[str, float]:
    """Throughput on all of ``x`` in one call, and the latency of one-row calls."""
    whole = time_calls(lambda: predict(x), batch_repeats)
    rows = [x[index : index + 1] for index in range(len(x))]
    latencies = np.empty(singles)
    predict(rows[0])
    for index in range(singles):
        row = rows[index % len(rows)]
        started = time.perf_counter()
        predict(row)
        latencies[index] = time.perf_counter() - started
    return {
        "throughput_per_s": float(len(x) / np.median(whole)),
        "batch_seconds_median": float(np.median(whole)),
        "latency_median_ms": float(np.median(latencies) * 1e3),
        "latency_p99_ms": float(np.percentile(latencies, 99) * 1e3),
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its table (and a JSON line with ``--json``)."""
    args = parse_args(argv)
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    from digits_zoo.runs import library_versions
    from digits_zoo.ship.load import load_export
    from zoo import load_dataset

    batch_repeats, singles = (5, 300) if args.quick else (30, 3000)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            if args.export is None:
                print(f"training and exporting {NETWORK} (a few seconds)...", file=sys.stderr)
                export_path = make_export(Path(scratch) / "export", epochs=3 if args.quick else 20)
            else:
                export_path = Path(args.export)
            export = load_export(export_path)
        except ZooError as error:
            print(f"inference.py: error: {error}", file=sys.stderr)
            return 2
        if export.n_features != 64 or export.pixel_max != 16:
            print(
                f"inference.py: error: the export is not a bundled-digits model (got "
                f"{export.n_features} pixels of 0..{export.pixel_max:g}); pass one made on "
                "the bundled digits",
                file=sys.stderr,
            )
            return 2

        x_all = load_digits().data.astype("float32")
        dataset = load_dataset()
        train = dataset.scale(dataset.x_train)
        # The same two baselines as the zoo's svc_rbf (without calibration) and knn_k3.
        svc = SVC(C=10.0, gamma="scale").fit(train, dataset.y_train)
        knn = KNeighborsClassifier(n_neighbors=3, weights="distance").fit(train, dataset.y_train)
        methods = {
            "export": (
                f"export ({export.name}, SavedModel)",
                lambda x: export.predict_proba(x),
            ),
            "svc": ("SVC (rbf, C=10)", lambda x: svc.predict(x / np.float32(16.0))),
            "knn": ("KNN (k=3, distance)", lambda x: knn.predict(x / np.float32(16.0))),
        }
        figures = {
            key: {"label": label, **measure(predict, x_all, batch_repeats, singles)}
            for key, (label, predict) in methods.items()
        }

    versions = library_versions()
    print(
        f"Inference on the bundled digits ({len(x_all):,} rows), {os.cpu_count()} CPU cores, "
        f"tensorflow {versions.get('tensorflow-cpu', versions.get('tensorflow', '?'))}, "
        f"scikit-learn {versions['scikit-learn']}; {batch_repeats} batch calls, "
        f"{singles} one-image calls each"
    )
    header = ("method", "throughput (rows/s)", "batch (ms)", "latency median (ms)", "p99 (ms)")
    lines = [header] + [
        (
            f["label"],
            f"{f['throughput_per_s']:,.0f}",
            f"{f['batch_seconds_median'] * 1e3:.2f}",
            f"{f['latency_median_ms']:.3f}",
            f"{f['latency_p99_ms']:.3f}",
        )
        for f in figures.values()
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        print("  ".join(cells))
        if number == 0:
            print("  ".join("-" * w for w in widths))
    export_speed = figures["export"]["throughput_per_s"]
    fastest_baseline = max(figures[key]["throughput_per_s"] for key in ("svc", "knn"))
    met = export_speed >= fastest_baseline
    print(
        f"target (export throughput >= the fastest baseline's): {'met' if met else 'NOT met'} "
        f"({export_speed / fastest_baseline:.1f}x)"
    )
    if args.json:
        print(json.dumps({"rows": int(len(x_all)), "methods": figures, "target_met": met}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
