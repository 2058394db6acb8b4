"""A small convolutional net on an export's own 8x8 rows against the export, reading SD-3.

Is it the export's dense networks, rather than the rows the picture recipe
makes, that limit how well a shipped model reads another population's
handwriting? For each ``--export``, this script trains a convolutional net on
the export's own training data (:func:`digits_zoo.ship.adapt.export_training_data`:
30 of UCI's writers for the 30-minute job's version 1, all 43 for its
``--refit-full`` version 2) and measures it beside the export, in the same run,
on the same digits:

* the export's test split (UCI's 13 new writers under ``--data optdigits``;
  a refit export trained on them, so it has none);
* MNIST's SD-3 digits read through the export's picture recipe, class by class
  (:func:`zoo.pictures.read_by_class`), as ``digits-zoo predict`` reads a picture;
* the same after adapting to ``k`` labelled SD-3 digits per class (drawn as
  ``other_writers.py`` draws them, tested on the rest): the export as
  ``digits-zoo adapt`` fine-tunes it (:func:`digits_zoo.ship.adapt.fit_adapted`),
  and the convolutional net fine-tuned the same way.

The net reads a row as an 8x8 image: two 3x3 convolutions of ``--width``
filters (ReLU, same padding), 2x2 max pooling, two of twice as many, pooling, a
256-unit ReLU layer, dropout 0.4, softmax. It trains as the zoo's strong first
trials do (Adam from 1e-3, cosine decay to zero, batch 64, label smoothing 0.05,
each epoch one handwriting copy at strength 0.5 of each training row,
:func:`zoo.augment.augment_bank`), and fine-tunes as ``adapt`` does: 5 epochs
from 0.3 of its rate, the person's affine copies 40% of each class's rows
(:func:`digits_zoo.ship.adapt.copies_for`, :func:`digits_zoo.ship.adapt.person_copies`).
It is built here with ``keras`` layers, outside the zoo's fold-stacked
trainer: no search can train it yet.

Usage::

    .venv/bin/python benchmarks/conv_rows.py --export EXPORT_DIR [--export ...]
        [--sd3 DIR] [--width 64] [--epochs 40] [--k-values 0,5,20] [--seeds 3]
        [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

# The sibling benchmark: SD-3, its conversion and its draws (it sets the process defaults).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import other_writers as ow  # noqa: E402

from zoo.dense import known_class_indices  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

FULL = {"width": 64, "epochs": 40, "k_values": (0, 5, 20), "seeds": 3, "n_digits": None}
QUICK = {"width": 16, "epochs": 3, "k_values": (0, 5), "seeds": 1, "n_digits": 300}
LEARNING_RATE = 1e-3
BATCH_SIZE = 64
LABEL_SMOOTHING = 0.05
DROPOUT = 0.4
DENSE_UNITS = 256
# The training rows' copies, as the zoo's strong first trials make them.
COPY_KIND, COPY_STRENGTH = "handwriting", 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ow.add_sources(parser, "an export folder of 8x8 rows")
    parser.add_argument("--width", type=int, default=None, help="filters of the first convolutions")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the net")
    parser.add_argument(
        "--k-values",
        default=None,
        metavar="K,K,...",
        help="labelled SD-3 digits per class to adapt with (default 0,5,20)",
    )
    parser.add_argument("--seeds", type=int, default=None, help="draws per k (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="300 digits, width 16, 3 epochs, k in {0, 5}, one draw",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args(argv)
    budget = dict(QUICK if args.quick else FULL)
    for name in ("width", "epochs", "seeds"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                parser.error(f"--{name} must be at least 1 (got {value})")
            budget[name] = value
    if args.k_values is not None:
        try:
            budget["k_values"] = tuple(int(k) for k in args.k_values.split(","))
        except ValueError:
            parser.error(
                f"--k-values takes whole numbers separated by commas (got {args.k_values})"
            )
        if min(budget["k_values"]) < 0:
            parser.error(f"--k-values must be 0 or more (got {args.k_values})")
    args.budget = budget
    return args


def build_conv(width: int, side: int, n_classes: int, seed: int):
    """The convolutional net, compiled: flat rows in ``[0, 1]`` -> class probabilities."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((side * side,), name="pixels")
    x = keras.layers.Reshape((side, side, 1))(inputs)
    for filters in (width, width, "pool", 2 * width, 2 * width, "pool"):
        if filters == "pool":
            x = keras.layers.MaxPooling2D(2)(x)
        else:
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(DENSE_UNITS, activation="relu")(x)
    x = keras.layers.Dropout(DROPOUT)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def train(model, base, y_base, extra, y_extra, epochs: int, rate: float, seed: int) -> None:
    """``epochs`` passes over one handwriting copy of each base row and every extra row, from
    ``rate`` decaying to zero; labels are class indices."""
    import keras

    from zoo.augment import augment_bank

    bank = augment_bank(base, COPY_KIND, seed, COPY_STRENGTH)
    copies = len(bank) // len(base)
    rng = np.random.default_rng(seed)
    steps = epochs * math.ceil((len(base) + len(extra)) / BATCH_SIZE)
    model.compile(
        keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(rate, steps)),
        keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
    )
    n_classes = model.output_shape[-1]
    targets = np.eye(n_classes, dtype="float32")[np.concatenate([y_base, y_extra]).astype(int)]
    for _ in range(epochs):
        picked = rng.integers(0, copies, len(base)) * len(base) + np.arange(len(base))
        rows = np.concatenate([bank[picked], extra]).astype("float32")
        model.fit(rows, targets, batch_size=BATCH_SIZE, epochs=1, shuffle=True, verbose=0)


def measure(path: str, images, labels, budget: dict) -> list[dict]:
    """The export and the convolutional net on the export's data: two rows of figures."""
    from digits_zoo.ship.adapt import (
        FINE_TUNE_EPOCHS,
        FINE_TUNE_RATE,
        copies_for,
        export_training_data,
        exported_networks,
        loaded_accuracy,
        person_copies,
        person_share,
    )
    from digits_zoo.ship.load import load_export, resolve_export

    export = load_export(path)
    metadata = export.metadata
    dataset = export_training_data(metadata)
    side = math.isqrt(export.n_features)
    if side * side != export.n_features or side % 4:
        raise ZooError(
            f"{path} reads rows of {export.n_features} pixels; the net takes square images "
            "whose side is a multiple of 4 (8x8 rows: export a run of the bundled digits or "
            "optdigits)"
        )
    start, why = exported_networks(resolve_export(path), export, dataset)
    if start is None:
        raise ZooError(f"{path} cannot be fine-tuned ({why}); pass a network export")
    classes = np.asarray(export.classes)

    def class_indices(y: np.ndarray) -> np.ndarray:
        return known_class_indices(
            classes, y, labels="labels", among="the export's classes", advice="check the export"
        )

    y_train = class_indices(dataset.y_train)
    x_train = dataset.scale(dataset.x_train).astype("float32")
    refit = bool(metadata.get("refit_full"))
    pictures = ow.convert_pictures(
        images, export.image_shape, export.pixel_max, export.picture_recipe
    )
    n, n_rows, n_features = pictures.shape
    scaled = dataset.scale(pictures.reshape(n * n_rows, n_features)).astype("float32")
    scaled = scaled.reshape(n, n_rows, n_features)
    name = f"{export.name} ({Path(path).name})"
    print(f"{name}: {len(y_train):,} training rows{' (refit)' if refit else ''}", flush=True)

    started = time.perf_counter()
    net = build_conv(budget["width"], side, len(classes), seed=0)
    train(net, x_train, y_train, x_train[:0], y_train[:0], budget["epochs"], LEARNING_RATE, 0)
    train_seconds = time.perf_counter() - started
    trained = net.get_weights()
    shipped = start(0)
    # The export's own accuracy on its test split, which adapt's model may lose 0.2 points of.
    test_before = loaded_accuracy(export, dataset.x_test, dataset.y_test)
    rows = {
        "export": _row(name, "the export", refit),
        "conv": _row(name, f"conv, w = {budget['width']}, {budget['epochs']} epochs", refit),
    }
    rows["conv"]["train_seconds"] = train_seconds
    if not refit and len(dataset.y_test):
        x_test = dataset.scale(dataset.x_test).astype("float32")
        rows["export"]["test"] = float(
            np.mean(classes[np.argmax(shipped.predict_proba(x_test), 1)] == dataset.y_test)
        )
        rows["conv"]["test"] = float(
            np.mean(classes[np.argmax(net.predict(x_test, verbose=0), 1)] == dataset.y_test)
        )

    def conv_accuracy(model, rest: np.ndarray) -> float:
        probabilities = model.predict(
            scaled[rest].reshape(-1, n_features), batch_size=2048, verbose=0
        )
        return ow.pictures_accuracy(probabilities, classes, labels[rest])

    def note(k: int, seed: int) -> None:
        print(
            f"  k={k} draw {seed}: export {rows['export']['k'][k][-1]:.4f}, "
            f"conv {rows['conv']['k'][k][-1]:.4f}",
            flush=True,
        )

    for k in budget["k_values"]:
        if k == 0:
            # As shipped: every picture, no draw.
            every = np.arange(n)
            export_probabilities = shipped.predict_proba(scaled.reshape(-1, n_features))
            rows["export"]["k"][0] = [ow.pictures_accuracy(export_probabilities, classes, labels)]
            rows["conv"]["k"][0] = [conv_accuracy(net, every)]
            note(0, 0)
            continue
        rows["export"]["k"][k], rows["conv"]["k"][k] = [], []
        for seed in range(budget["seeds"]):
            few, rest = ow.draw(labels, k, seed)
            # The export adapted as adapt adapts rows (the recorded recipe): the net beside it
            # trains on the same rows.
            accuracy, seconds, _, _ = ow.adapted_export_accuracy(
                export,
                metadata,
                dataset,
                ([export.picture_recipe], [pictures]),
                few,
                rest,
                labels,
                seed,
                start,
                test_before,
            )
            rows["export"]["k"][k].append(accuracy)
            rows["export"]["adapt_seconds"].append(seconds)
            copies = copies_for(dataset.y_train, labels[few], person_share(True))
            x_extra, y_extra = person_copies(
                pictures[few, 0],
                labels[few],
                copies,
                dataset.pixel_max,
                dataset.image_shape,
                seed,
            )
            # The seed only sets the fine-tuning's dropout: the weights are the trained net's.
            adapted = build_conv(budget["width"], side, len(classes), seed=seed + 7)
            adapted.set_weights(trained)
            started = time.perf_counter()
            train(
                adapted,
                x_train,
                y_train,
                dataset.scale(x_extra).astype("float32"),
                class_indices(y_extra),
                FINE_TUNE_EPOCHS,
                LEARNING_RATE * FINE_TUNE_RATE,
                seed,
            )
            rows["conv"]["adapt_seconds"].append(time.perf_counter() - started)
            rows["conv"]["k"][k].append(conv_accuracy(adapted, rest))
            note(k, seed)
    return list(rows.values())


def _row(name: str, model: str, refit: bool) -> dict:
    return {
        "export": name,
        "model": model,
        "refit": refit,
        "test": None,
        "k": {},
        "adapt_seconds": [],
        "train_seconds": None,
    }


def markdown_table(rows: list[dict], k_values, n_digits: int) -> str:
    """The figures as one markdown table."""
    head = "| export | model | test split | " + " | ".join(f"SD-3 k = {k}" for k in k_values)
    lines = [
        head + " | s to train | s per adaptation |",
        "|---|---|---:|" + "---:|" * (len(k_values) + 2),
    ]
    for row in rows:
        test = (
            "(trained on)"
            if row["refit"]
            else ("" if row["test"] is None else f"{row['test']:.4f}")
        )
        cells = []
        for k in k_values:
            values = row["k"][k]
            cells.append(
                f"{np.mean(values):.4f}" + (f" ± {np.std(values):.3f}" if len(values) > 1 else "")
            )
        train_s = "" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}"
        adapt_s = f"{np.mean(row['adapt_seconds']):.1f}" if row["adapt_seconds"] else ""
        lines.append(
            f"| {row['export']} | {row['model']} | {test} | "
            + " | ".join(cells)
            + f" | {train_s} | {adapt_s} |"
        )
    return (
        f"SD-3: {n_digits:,} digits, k per class drawn, the rest read (mean ± sd over draws)\n\n"
        + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its table (and a JSON line with ``--json``)."""
    args = parse_args(argv)
    budget = args.budget
    try:
        images, labels = ow.load_sd3(args.sd3, budget["n_digits"])
        rows = [row for path in args.export for row in measure(path, images, labels, budget)]
    except ZooError as error:
        print(f"conv_rows.py: error: {error}", file=sys.stderr)
        return 2
    print()
    print(markdown_table(rows, budget["k_values"], len(labels)))
    if args.json:
        print(json.dumps({"conv_rows": {"rows": rows, "budget": budget, "n_digits": len(labels)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
