"""Inference speed of one exported network in each format, against scikit-learn's SVC and k-NN.

Measures, in one process and on the same inputs (the whole bundled digits
set, 1,797 rows of raw 0..16 pixels):

* throughput: predictions per second when all 1,797 rows go in one call;
* latency: the median and 99th percentile of one-image calls;
* the size of each format's files.

The formats are the files of one export (``--format all``): the SavedModel
(TensorFlow), ``model.onnx`` (ONNX Runtime) and ``model.tflite`` (LiteRT's
interpreter), plus a second version of the same fitted network with int8
weights (``--format litert --quantize``). Each is called the way
``digits-zoo predict`` calls it (numpy in, numpy out; scaling happens inside
the model). The scikit-learn models get the same raw pixels and scale them in
the timed call, as a user of them has to. Without ``--export`` a small network
is trained and exported into a temporary folder first.

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

# The programs' settings (JAX backend, quiet TensorFlow) before anything imports Keras:
# importing zoo sets nothing.
from zoo.environment import set_process_defaults  # noqa: E402

set_process_defaults()

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
        help="an existing export version of a bundled-digits network: each format it holds is "
        f"measured (default: train {NETWORK}, export it with --format all into a temporary "
        "folder, and once more with --format litert --quantize)",
    )
    return parser.parse_args(argv)


def make_exports(folder: Path, epochs: int) -> tuple[Path, Path]:
    """Trains the zoo's ``dense_2x256`` on the bundled digits' training part and exports it.

    Returns:
        The version with every format, and the version with the int8 LiteRT file.
    """
    from digits_zoo.ship.export import export_estimator
    from zoo import create_model, load_dataset

    dataset = load_dataset()
    network = create_model(NETWORK, epochs=epochs)
    network.fit(dataset.scale(dataset.x_train), dataset.y_train)
    every = export_estimator(network, dataset, folder, name=NETWORK, format="all")
    int8 = export_estimator(network, dataset, folder, name=NETWORK, format="litert", quantize=True)
    return every.path, int8.path


def format_bytes(version: Path, format_name: str) -> int:
    """The bytes a format takes in a version folder (a SavedModel: its .pb and variables/)."""
    from digits_zoo.ship.layout import MODEL_FILES

    if format_name != "tf_saved_model":
        return (version / MODEL_FILES[format_name]).stat().st_size
    files = [version / MODEL_FILES[format_name], *(version / "variables").rglob("*")]
    return sum(path.stat().st_size for path in files if path.is_file())


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
    from digits_zoo.ship.load import load_export, recorded_formats
    from zoo import load_dataset

    batch_repeats, singles = (5, 300) if args.quick else (30, 3000)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            if args.export is None:
                print(
                    f"training {NETWORK} and exporting it in every format (about a minute)...",
                    file=sys.stderr,
                )
                every, int8 = make_exports(Path(scratch) / "export", epochs=3 if args.quick else 20)
                versions_to_load = [(every, None), (int8, "litert")]
            else:
                every = load_export(args.export).path
                versions_to_load = [(every, None)]
            exports = {}
            for version, only in versions_to_load:
                base = load_export(version)
                for format_name, record in recorded_formats(base.metadata).items():
                    if only is not None and format_name != only:
                        continue
                    key = format_name + ("_int8" if record.get("quantization") else "")
                    exports[key] = (version, format_name, load_export(version, format_name))
        except ZooError as error:
            print(f"inference.py: error: {error}", file=sys.stderr)
            return 2
        first = next(iter(exports.values()))[2]
        if first.n_features != 64 or first.pixel_max != 16:
            print(
                f"inference.py: error: the export is not a bundled-digits model (got "
                f"{first.n_features} pixels of 0..{first.pixel_max:g}); pass one made on "
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
        labels = {
            "tf_saved_model": "SavedModel (TensorFlow)",
            "onnx": "ONNX (ONNX Runtime)",
            "litert": "LiteRT (float32)",
            "litert_int8": "LiteRT (int8 weights)",
            "skops": "skops (scikit-learn)",
        }
        methods = {
            key: (
                f"{export.name}: {labels[key]}",
                export.predict_proba,
                format_bytes(version, format_name),
            )
            for key, (version, format_name, export) in exports.items()
        }
        methods["svc"] = ("SVC (rbf, C=10)", lambda x: svc.predict(x / np.float32(16.0)), None)
        methods["knn"] = (
            "KNN (k=3, distance)",
            lambda x: knn.predict(x / np.float32(16.0)),
            None,
        )
        figures = {
            key: {
                "label": label,
                "bytes": size,
                **measure(predict, x_all, batch_repeats, singles),
            }
            for key, (label, predict, size) in methods.items()
        }

    versions = library_versions()
    runtimes = ", ".join(
        f"{name} {_version(name)}"
        for name in ("tensorflow-cpu", "onnxruntime", "ai-edge-litert", "scikit-learn")
    )
    print(
        f"Inference on the bundled digits ({len(x_all):,} rows), {os.cpu_count()} CPU cores, "
        f"python {versions['python']}, {runtimes}; {batch_repeats} batch calls, "
        f"{singles} one-image calls each"
    )
    header = (
        "method",
        "throughput (rows/s)",
        "batch (ms)",
        "latency median (ms)",
        "p99 (ms)",
        "size (KiB)",
    )
    lines = [header] + [
        (
            f["label"],
            f"{f['throughput_per_s']:,.0f}",
            f"{f['batch_seconds_median'] * 1e3:.2f}",
            f"{f['latency_median_ms']:.3f}",
            f"{f['latency_p99_ms']:.3f}",
            "" if f["bytes"] is None else f"{f['bytes'] / 1024:,.0f}",
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
    checks = {}
    for key, (_, format_name, export) in exports.items():
        check = recorded_formats(export.metadata)[format_name]["verification"]
        checks[key] = check
        change = check.get("accuracy_change")
        print(
            f"{labels[key]}: test accuracy {check['test_accuracy']:.4f}"
            + ("" if change is None else f" ({change:+.4f} against the in-memory model)")
            + f", {check['classes_differ']} of {check['rows']} test classes differ, largest "
            f"probability difference {check['max_probability_difference']:.2g}"
        )
    fastest_baseline = max(figures[key]["throughput_per_s"] for key in ("svc", "knn"))
    met = {}
    for key in exports:
        speed = figures[key]["throughput_per_s"]
        met[key] = speed >= fastest_baseline
        print(
            f"target ({labels[key]} throughput >= the fastest baseline's): "
            f"{'met' if met[key] else 'NOT met'} ({speed / fastest_baseline:.1f}x)"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "rows": int(len(x_all)),
                    "methods": figures,
                    "target_met": all(met.values()),
                    "targets": met,
                    "checks": checks,
                }
            )
        )
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
