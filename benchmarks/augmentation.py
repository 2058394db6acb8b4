"""Which training copies help a network read writers it has never seen.

UCI's writer-independent protocol: train on optdigits' training part (3,823
digits by 30 writers), test on its test part (1,797 digits by 13 other
writers). One fixed, strong network, the search's first trial at the time
(``search.spec.RELU_1X256``: 1x256 ReLU, batch norm, dropout 0.2,
Adam at 1e-3, batch 64, cosine decay, no label smoothing) trains 20 epochs
with each kind of training copies (``zoo.augment``):

* ``none``, ``shift``, ``affine`` and ``handwriting`` (affine plus slant,
  stroke width and elastic distortion), as a search would train them;
* ``affine`` plus one of the handwriting transforms at a time (slant,
  thickness, elastic): the bank is built with ``augment_bank(...,
  transforms=...)`` and trained as it is, which is what the kind's own path
  does with the same rows;
* then the best kind with random copies, ``affine`` and ``handwriting`` at
  strengths 0.5 and 2 (the strength scales the affine part too, so ``affine``
  at each strength is the control).

Every row is the mean over the seeds (0 and 1) of the test accuracy and of the
seconds one fit takes (the bank included); the first fit of each bank size
(which compiles its training step) is a warm-up left out of the timing.

Usage::

    .venv/bin/python benchmarks/augmentation.py [--quick] [--json] [--seeds N] [--strengths S ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Runs from a checkout without installing: the repository root holds zoo/ and search/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.environment import set_process_defaults  # noqa: E402

# The programs' settings (the JAX backend, quiet TensorFlow) before Keras is imported.
set_process_defaults()

FULL = {"epochs": 20, "seeds": (0, 1)}
QUICK = {"epochs": 2, "seeds": (0,)}
STRENGTHS = (0.5, 2.0)


@dataclass(frozen=True)
class Variant:
    """One way to make the training copies: a kind, a strength and, optionally, its transforms."""

    name: str
    kind: str
    strength: float = 1.0
    transforms: tuple[str, ...] | None = None


KINDS = (
    Variant("none", "none"),
    Variant("shift", "shift"),
    Variant("affine", "affine"),
    Variant("affine+slant", "handwriting", transforms=("affine", "slant")),
    Variant("affine+thickness", "handwriting", transforms=("affine", "thickness")),
    Variant("affine+elastic", "handwriting", transforms=("affine", "elastic")),
    Variant("handwriting", "handwriting"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, one seed")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument(
        "--seeds", type=int, default=None, help="how many seeds (0, 1, ...) to average; default 2"
    )
    parser.add_argument(
        "--strengths",
        type=float,
        nargs="+",
        default=list(STRENGTHS),
        help="strengths besides 1 to sweep (default: 0.5 2)",
    )
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1 (got {args.seeds})")
    return args


def network_config(kind: str = "none", strength: float = 1.0):
    """The search's first trial, with the given training copies."""
    from zoo import DenseConfig

    return DenseConfig(
        n_layers=1,
        units=256,
        activation="relu",
        dropout_rate=0.2,
        normalization="batch",
        l2=0.0,
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=64,
        label_smoothing=0.0,
        lr_schedule="cosine",
        augment=kind,
        augment_strength=strength,
    )


def fit_variant(variant: Variant, X, y, epochs: int, seed: int):
    """Trains one network on ``variant``'s copies of ``X``; returns the fit and its seconds."""
    from zoo.augment import augment_bank
    from zoo.stacked import fit_stacked

    started = time.perf_counter()
    if variant.transforms is None:
        # The kind's own path, as a search trains it.
        config = network_config(variant.kind, variant.strength)
        features, labels = X, y
    else:
        # The same bank with chosen transforms, trained on every row: what the
        # kind's own path does (each row's copies, shuffled together).
        config = network_config()
        features = augment_bank(
            X, variant.kind, seed, variant.strength, transforms=variant.transforms
        )
        labels = np.tile(y, len(features) // len(X))
    fit = fit_stacked(
        config, features, labels, 10, [np.arange(len(features))], epochs=epochs, seed=seed
    )
    return fit, time.perf_counter() - started


def measure(variant: Variant, X, y, X_test, y_test, budget) -> dict:
    """Test accuracy, errors and seconds per fit of one variant, per seed and in the mean."""
    accuracies, seconds = [], []
    for seed in budget["seeds"]:
        fit, elapsed = fit_variant(variant, X, y, budget["epochs"], seed)
        predicted = np.argmax(fit.predict_proba(X_test)[0], axis=1)
        accuracies.append(float(np.mean(predicted == y_test)))
        seconds.append(elapsed)
    accuracy = float(np.mean(accuracies))
    row = {
        "variant": variant.name,
        "kind": variant.kind,
        "strength": variant.strength,
        "transforms": list(variant.transforms or []),
        "accuracies": accuracies,
        "accuracy": accuracy,
        "errors": float(np.mean([round((1 - a) * len(y_test)) for a in accuracies])),
        "seconds": float(np.mean(seconds)),
    }
    print(
        f"  {variant.name} x{variant.strength:g}: accuracy {accuracy:.4f} "
        f"({', '.join(f'{a:.4f}' for a in accuracies)}), {row['seconds']:.1f} s per fit",
        flush=True,
    )
    return row


def markdown_table(rows: list[dict], n_test: int, seeds: tuple[int, ...]) -> str:
    """The results as a markdown table, in the order measured."""
    per_seed = " / ".join(f"seed {seed}" for seed in seeds)
    lines = [
        f"| training copies | strength | test accuracy (mean) | errors of {n_test:,} | "
        f"{per_seed} | train s per fit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['strength']:g} | {row['accuracy']:.4f} | "
            f"{row['errors']:g} | {' / '.join(f'{a:.4f}' for a in row['accuracies'])} | "
            f"{row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its table (and a JSON line with ``--json``)."""
    args = parse_args(argv)
    import keras

    from digits_zoo.runs import library_versions
    from zoo import load_dataset
    from zoo.augment import n_copies

    budget = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        budget["seeds"] = tuple(range(args.seeds))
    dataset = load_dataset("optdigits")
    X, y = dataset.scale(dataset.x_train), dataset.y_train
    X_test, y_test = dataset.scale(dataset.x_test), dataset.y_test
    versions = library_versions()
    print(
        f"Training copies under UCI's writer-independent protocol: {len(X):,} training "
        f"digits, {len(X_test):,} test digits of other writers; 1x256 ReLU, batch norm, "
        f"dropout 0.2, Adam 1e-3, batch 64, cosine, {budget['epochs']} epochs, seeds "
        f"{', '.join(map(str, budget['seeds']))}; {os.cpu_count()} CPU cores, keras "
        f"{versions.get('keras')} on {keras.backend.backend()} (jax {versions.get('jax', '-')})",
        flush=True,
    )
    # Compile each bank size's training step once, outside the timed fits.
    for kind in ("none", "shift", "affine"):
        fit_variant(Variant(kind, kind), X, y, 1, 0)
    print(
        f"warm-up done (banks of {', '.join(str(n_copies(k)) for k in ('none', 'shift', 'affine'))} copies)"
    )

    rows = [measure(variant, X, y, X_test, y_test, budget) for variant in KINDS]
    random_rows = [row for row in rows if row["kind"] in ("affine", "handwriting")]
    best = max(random_rows, key=lambda row: row["accuracy"])
    # The best kind at other strengths; and affine (the strength scales its turns
    # too, so it is the control) and handwriting (all four transforms at once may
    # want a lighter hand than each alone).
    swept = []
    for name in (best["variant"], "affine", "handwriting"):
        if name not in swept:
            swept.append(name)
    for name in swept:
        base = next(variant for variant in KINDS if variant.name == name)
        for strength in args.strengths:
            variant = Variant(base.name, base.kind, strength, base.transforms)
            rows.append(measure(variant, X, y, X_test, y_test, budget))

    print()
    print(markdown_table(rows, len(X_test), budget["seeds"]))
    affine = next(row for row in rows if row["variant"] == "affine" and row["strength"] == 1.0)
    winner = max(rows, key=lambda row: row["accuracy"])
    print(
        f"\nbest: {winner['variant']} at strength {winner['strength']:g}, "
        f"{winner['accuracy']:.4f} ({winner['accuracy'] - affine['accuracy']:+.4f} against "
        f"affine at strength 1)"
    )
    if args.json:
        figures = {
            "augmentation": {
                "epochs": budget["epochs"],
                "seeds": list(budget["seeds"]),
                "cores": os.cpu_count(),
                "backend": keras.backend.backend(),
                "versions": versions,
                "rows": rows,
            }
        }
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
