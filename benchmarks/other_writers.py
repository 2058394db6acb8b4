"""How shipped models read another population's handwriting, alone and with a few of its digits.

The other population is MNIST's SD-3 half of its test set: 5,000 digits
written by US Census Bureau employees (``mnist-sd3-*`` in the ``shared/data``
folder beside the repository, or ``--sd3 DIR``). Each ``--export`` reads the
pictures through its own loader (``digits_zoo.ship.load``) and its recorded
picture recipe (``zoo.pictures``), the path of ``digits-zoo predict
digit.png``: accuracy, accuracy per class, the commonest confusions and the
calibrated expected calibration error. An export of counted bitmaps records
its training data's slant (the mean, and each class's own) and stroke
thickness (``zoo.pictures.recipe_from_counts``), and reads a picture class by
class (``zoo.pictures.picture_rows``, ``LoadedExport.predict_pictures``);
``--matched-recipe`` converts the pictures of an export made before it did
(and the baselines', one row each) that way too.

Then adaptation: ``k`` labelled digits per class (``K_VALUES``) are drawn at
random from SD-3 (one draw per seed), the export is adapted as ``digits-zoo
adapt`` adapts it (:func:`digits_zoo.ship.adapt.adapted_model`: its networks
fine-tuned from the export's weights, or with ``--retrain`` its recorded config
fitted from scratch, on its training data plus augmented copies of those
``k``; part of the ``k`` held out, or cross-validated, to choose how far the
fine-tuning's change is carried, then all ``k`` trained on; the ``k`` pictures,
as a picture folder would, choose among the variants of the export's recipe,
``zoo.pictures.recipe_variants``, the one the export reads them best through,
unless ``--recorded-recipe``), and tested on the SD-3 digits not drawn, read
through the recipe the adapted model keeps; the fixed baselines
(SVC with C=10 and gamma 0.2, k-NN with k=1 and k=3, trained on optdigits'
training file) take them once. ``k = 0`` is the model as shipped (the
baselines fitted once).

``--recipes`` also reads the pictures, at ``k = 0``, through variants of
an export's recorded recipe: without its slant (ink only), stood upright
(slant 0), and class by class (each picture sheared to every class's own
mean slant in the training data, class ``c``'s probability read from the
picture sheared to class ``c``'s slant, the highest chosen: ten predictions
per picture, a reading the exports do not ship).

Last, ``digits-zoo adapt`` itself runs once on a copy of each export, with
``ADAPT_DIGITS_PER_CLASS`` SD-3 digits per class written as a picture folder of PNG files
(a collected CSV of their rows with ``--recorded-recipe``; 200 digits: 60 held out to measure on, then all 200 trained on), and its wall time (rebuilding the
training data, training, measuring, writing and verifying the version) and
figures are printed: the time a person waits for an adapted model.

Usage::

    .venv/bin/python benchmarks/other_writers.py --export EXPORT_DIR [--export ...]
        [--sd3 DIR] [--matched-recipe] [--recipes] [--retrain] [--quick] [--json]
        [--seeds N] [--k-values K,K,...] [--recorded-recipe]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# Runs from a checkout without installing: the repository root holds zoo/ and search/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.environment import set_process_defaults  # noqa: E402

# The programs' settings (the JAX backend, quiet TensorFlow) before Keras is imported.
set_process_defaults()

from zoo.errors import ZooError  # noqa: E402

DEFAULT_SD3 = Path(__file__).resolve().parents[2] / "shared" / "data"
SD3_IMAGES = "mnist-sd3-images-idx3-ubyte.gz"
SD3_LABELS = "mnist-sd3-labels-idx1-ubyte.gz"
K_VALUES = (0, 5, 10, 20, 50)
FULL = {"k_values": K_VALUES, "seeds": (0, 1, 2), "n_digits": None, "epochs": None, "adapt": True}
QUICK = {"k_values": (0, 5), "seeds": (0,), "n_digits": 300, "epochs": 2, "adapt": False}
TOP_CONFUSIONS = 5
ADAPT_DIGITS_PER_CLASS = 20


def add_sources(parser: argparse.ArgumentParser, exports: str = "an export folder") -> None:
    """Adds ``--export`` (repeatable, required) and ``--sd3`` to ``parser``."""
    parser.add_argument(
        "--export",
        action="append",
        required=True,
        metavar="PATH",
        help=f"{exports} (digits-zoo export); repeat for several",
    )
    parser.add_argument(
        "--sd3",
        type=Path,
        default=DEFAULT_SD3,
        metavar="DIR",
        help=f"the folder holding {SD3_IMAGES} and {SD3_LABELS} (default: shared/data "
        "beside the repository)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sources(parser)
    parser.add_argument(
        "--matched-recipe",
        action="store_true",
        help="convert pictures with the training data's slant and stroke thickness "
        "(recipe_from_counts) where an export records no recipe, and for the baselines",
    )
    parser.add_argument(
        "--recipes",
        action="store_true",
        help="also read the pictures (k = 0) through variants of each export's recipe: ink "
        "only, one mean slant, upright, and class by class",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="adapt as digits-zoo adapt --retrain does: the exported config fitted from "
        "scratch, not the exported networks fine-tuned",
    )
    parser.add_argument(
        "--recorded-recipe",
        action="store_true",
        help="adapt with the k digits converted by the export's recorded recipe, as rows are "
        "(a collected CSV), instead of letting the pictures choose a variant of it",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="300 digits, k in {0, 5}, one seed, 2 epochs when retraining",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument(
        "--no-adapt-timing",
        action="store_true",
        help=f"skip the timed digits-zoo adapt run ({ADAPT_DIGITS_PER_CLASS} digits per class)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="how many draws (seeds 0, 1, ...); default 3"
    )
    parser.add_argument(
        "--k-values",
        default=None,
        metavar="K,K,...",
        help="labelled digits per class to adapt with, e.g. 0 for the shipped reading alone "
        f"(default {','.join(str(k) for k in K_VALUES)})",
    )
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1 (got {args.seeds})")
    if args.k_values is not None:
        try:
            args.k_values = tuple(int(k) for k in args.k_values.split(","))
        except ValueError:
            parser.error(
                f"--k-values takes whole numbers separated by commas (got {args.k_values})"
            )
        if min(args.k_values) < 0:
            parser.error(f"--k-values must be 0 or more (got {args.k_values})")
    return args


def load_sd3(folder: Path, n_digits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SD-3's pictures (``[n, 28, 28]`` uint8, white ink on black) and labels.

    Raises:
        ZooError: the folder or one of its two files is missing.
    """
    from zoo.data import read_idx

    missing = [name for name in (SD3_IMAGES, SD3_LABELS) if not (folder / name).is_file()]
    if missing:
        raise ZooError(
            f"the SD-3 digits are not in {str(folder)!r} (missing {', '.join(missing)}); "
            "pass --sd3 DIR, the folder that holds them"
        )
    images, labels = read_idx(folder / SD3_IMAGES), read_idx(folder / SD3_LABELS)
    if n_digits is not None:
        images, labels = images[:n_digits], labels[:n_digits]
    return images, labels.astype("int64")


def convert(images: np.ndarray, image_shape, pixel_max: float, recipe) -> np.ndarray:
    """The pictures as rows of raw pixels, by the picture recipe ``predict`` uses."""
    from PIL import Image

    from zoo.pictures import image_to_pixels

    return np.stack(
        [
            image_to_pixels(Image.fromarray(image), image_shape, pixel_max, recipe)
            for image in images
        ]
    )


def convert_pictures(images: np.ndarray, image_shape, pixel_max: float, recipe) -> np.ndarray:
    """The pictures as the rows an export reads them by (``zoo.pictures.picture_rows``):
    ``[n, n_rows, n_features]``, row 0 the stored row."""
    from PIL import Image

    from zoo.pictures import picture_rows

    return np.stack(
        [picture_rows(Image.fromarray(image), image_shape, pixel_max, recipe) for image in images]
    )


def reading(probabilities: np.ndarray, y: np.ndarray, classes: np.ndarray) -> dict:
    """Accuracy, accuracy per class, the commonest confusions and the ECE of a model's reading."""
    from zoo.calibration import expected_calibration_error

    predicted = classes[np.argmax(probabilities, axis=1)]
    pairs = {}
    for true, said in zip(y[predicted != y], predicted[predicted != y], strict=True):
        pairs[(int(true), int(said))] = pairs.get((int(true), int(said)), 0) + 1
    confusions = sorted(pairs.items(), key=lambda item: (-item[1], item[0]))[:TOP_CONFUSIONS]
    return {
        "accuracy": float(np.mean(predicted == y)),
        "per_class": {int(c): float(np.mean(predicted[y == c] == c)) for c in np.unique(y)},
        "confusions": [
            {"true": true, "read": said, "count": count, "of": int(np.sum(y == true))}
            for (true, said), count in confusions
        ],
        "ece": float(expected_calibration_error(probabilities, y, classes)),
    }


def baselines() -> dict:
    """The fixed baselines, unfitted, by name."""
    from sklearn.svm import SVC

    from zoo import create_model

    return {
        "svc (C=10, gamma 0.2)": SVC(C=10.0, gamma=0.2),
        "knn_k1": create_model("knn_k1"),
        "knn_k3": create_model("knn_k3"),
    }


def draw(y: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` random indices per class and the indices of every other row."""
    rng = np.random.default_rng(seed)
    few = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c in np.unique(y)]
    )
    rest = np.setdiff1d(np.arange(len(y)), few)
    return few, rest


def adapted_accuracy(estimator, x_train, y_train, x_few, y_few, x_rest, y_rest):
    """Fits ``estimator`` on the training part plus the few; returns its accuracy on the rest."""
    x_train = np.concatenate([x_train, x_few])
    y_train = np.concatenate([y_train, y_few])
    started = time.perf_counter()
    estimator.fit(x_train, y_train)
    seconds = time.perf_counter() - started
    predicted = np.asarray(estimator.predict(x_rest))
    return float(np.mean(predicted == y_rest)), seconds


def adapted_export_accuracy(
    export, metadata, dataset, drawn, few, rest, labels, seed: int, start, test_before
):
    """The model ``digits-zoo adapt`` writes (the export's networks fine-tuned from ``start``,
    or without it its config fitted from scratch, on its data plus augmented copies of the
    few, held out as ``adapt`` holds them out: :func:`digits_zoo.ship.adapt.adapted_model`);
    its accuracy on the rest, each picture read by its rows as the export reads pictures
    through the recipe the model keeps, the seconds it took, the extrapolation factor kept
    and the recipe variant (``drawn``: ``(recipes, pictures)``, every SD-3 picture's rows
    by each variant, ``[n, n_rows, n_features]``; one variant: the recorded recipe)."""
    from digits_zoo.ship.adapt import DEFAULT_HOLDOUT, adapted_model, held_out_split, read_choice

    recipes, pictures = drawn
    started = time.perf_counter()
    y_few = labels[few]
    choice = None
    if len(recipes) > 1:
        choice = read_choice(export, recipes, [each[few, 0] for each in pictures], y_few)
    _, held_out_sets = held_out_split(y_few, DEFAULT_HOLDOUT, seed)
    tried = adapted_model(
        metadata,
        dataset,
        pictures[0][few, 0],
        y_few,
        held_out_sets,
        seed,
        start,
        test_before,
        choice=choice,
    )
    seconds = time.perf_counter() - started
    estimator = tried.estimator
    pictures_rest, y_rest = pictures[tried.recipe][rest], labels[rest]
    n, n_rows, n_features = pictures_rest.shape
    probabilities = estimator.predict_proba(
        dataset.scale(pictures_rest.reshape(n * n_rows, n_features))
    )
    accuracy = pictures_accuracy(probabilities, estimator.classes_, y_rest)
    return accuracy, seconds, tried.factor, tried.recipe


def pictures_accuracy(probabilities, classes, y: np.ndarray) -> float:
    """The accuracy on ``len(y)`` pictures read class by class (:func:`zoo.pictures.read_by_class`)
    from their rows' probabilities, ``[len(y) * n_rows, n_classes]``, picture after picture."""
    from zoo.pictures import read_by_class

    probabilities = np.asarray(probabilities)
    read = read_by_class(probabilities.reshape(len(y), -1, probabilities.shape[-1]))
    return float(np.mean(np.asarray(classes)[np.argmax(read, axis=1)] == y))


def timed_adapt(
    path: str,
    images: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    per_class: int,
    retrain: bool = False,
    pictures: bool = True,
) -> dict:
    """``digits-zoo adapt`` on a copy of an export with ``per_class`` SD-3 digits per class,
    written as a picture folder (``pictures``) or as the page's collected CSV of their rows;
    its wall time, figures and outcome."""
    import shutil
    import tempfile

    from digits_zoo.ship.adapt import adapt_export
    from digits_zoo.ship.load import resolve_export

    few, _ = draw(labels, per_class, seed=0)
    with tempfile.TemporaryDirectory(prefix="other-writers-adapt-") as folder:
        base = Path(folder) / "export"
        version = resolve_export(path)
        shutil.copytree(version, base / version.name)
        if pictures:
            from PIL import Image

            collected = Path(folder) / "pictures"
            for index in few:
                (collected / str(labels[index])).mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[index]).save(collected / str(labels[index]) / f"{index}.png")
        else:
            collected = Path(folder) / "collected.csv"
            table = np.column_stack([np.rint(rows[few]), labels[few]]).astype("int64")
            np.savetxt(collected, table, fmt="%d", delimiter=",")
        result = adapt_export(base, collected, retrain=retrain, progress=lambda line: None)
    return {
        "digits": int(len(few)),
        "training": result.training,
        "seconds": result.seconds,
        "method": result.method,
        "held_out": result.n_held_out,
        "before": {"person": result.before.person, "test": result.before.test},
        "after": {"person": result.after.person, "test": result.after.test},
        "written": result.written is not None,
        "reason": result.reason,
        "recipe": result.recipe,
    }


def with_epochs(metadata: dict, epochs: int | None) -> dict:
    """An export's metadata whose network config (or ensemble members) train ``epochs``."""
    if not epochs or metadata.get("kind") != "keras":
        return metadata
    config = dict(metadata.get("config") or {})
    if "members" in config:
        config["members"] = [{**member, "epochs": epochs} for member in config["members"]]
    else:
        config["epochs"] = epochs
    return {**metadata, "config": config}


def measure_export(
    path: str,
    images,
    labels,
    budget,
    matched_recipe: bool,
    recipes: bool,
    retrain: bool,
    recorded_recipe: bool = False,
) -> dict:
    """What one export reads as shipped, then its adaptation; prints as it goes."""
    from digits_zoo.ship.adapt import (
        describe_recipe,
        export_training_data,
        exported_networks,
        loaded_accuracy,
    )
    from digits_zoo.ship.load import load_export, resolve_export
    from zoo.pictures import recipe_from_counts
    from zoo.pictures import recipe_variants as variants_of

    export = load_export(path)
    metadata = export.metadata
    # The data it trained on, as adapt rebuilds them (all 43 writers for export --refit-full).
    dataset = export_training_data(metadata)
    recipe = export.picture_recipe
    if matched_recipe and recipe is None:
        recipe = recipe_from_counts(
            dataset.x_train, export.image_shape, export.pixel_max, dataset.y_train
        )
    pictures = convert_pictures(images, export.image_shape, export.pixel_max, recipe)
    rows = pictures[:, 0]
    probabilities, _ = export.predict_pictures(pictures)
    shipped = reading(probabilities, labels, export.classes)
    name = f"{export.name} ({Path(path).name})"
    print(f"{name}: reads {shipped['accuracy']:.4f} of {len(labels):,} SD-3 digits", flush=True)
    variants = recipe_variants(export, dataset, images, labels, recipe, shipped) if recipes else []
    trained = with_epochs(metadata, budget["epochs"])
    start, why = (
        (None, "--retrain") if retrain else exported_networks(resolve_export(path), export, dataset)
    )
    training = "retrained" if start is None else "fine-tuned"
    print(f"  adapting: {training} ({why})", flush=True)
    adaptation = {0: [shipped["accuracy"]]}
    factors: dict[int, list[float]] = {}
    # The export's own accuracy on its test split, which adapt's model may lose 0.2 points of.
    test_before = loaded_accuracy(export, dataset.x_test, dataset.y_test)
    # The variants of the recipe a person's pictures choose among (adapt), every picture by each.
    choices = [recipe]
    if not recorded_recipe and any(k > 0 for k in budget["k_values"]):
        choices = variants_of(recipe, export.image_shape, export.pixel_max)
    drawn = (
        choices,
        [pictures]
        + [
            convert_pictures(images, export.image_shape, export.pixel_max, each)
            for each in choices[1:]
        ],
    )
    kept: dict[int, list[int]] = {}
    seconds = []
    for k in budget["k_values"]:
        if k == 0:
            continue
        adaptation[k], factors[k], kept[k] = [], [], []
        for seed in budget["seeds"]:
            few, rest = draw(labels, k, seed)
            accuracy, elapsed, factor, variant = adapted_export_accuracy(
                export, trained, dataset, drawn, few, rest, labels, seed, start, test_before
            )
            adaptation[k].append(accuracy)
            factors[k].append(factor)
            kept[k].append(variant)
            seconds.append(elapsed)
            print(
                f"  k={k} seed {seed}: {accuracy:.4f} (factor {factor:g}, recipe "
                f"{describe_recipe(choices[variant], recipe)}, {elapsed:.0f} s)",
                flush=True,
            )
    adapt = None
    if budget["adapt"]:
        adapt = timed_adapt(
            path,
            images,
            rows,
            labels,
            ADAPT_DIGITS_PER_CLASS,
            retrain,
            pictures=not recorded_recipe,
        )
        print(
            f"  digits-zoo adapt, {adapt['digits']} digits: {adapt['seconds']:.1f} s, held-out "
            f"{adapt['before']['person']:.4f} -> {adapt['after']['person']:.4f}, test "
            f"{adapt['before']['test']:.4f} -> {adapt['after']['test']:.4f}, "
            + ("written" if adapt["written"] else f"not written ({adapt['reason']})")
            + (f"; pictures drawn {adapt['recipe']}" if adapt["recipe"] else ""),
            flush=True,
        )
    return {
        "model": name,
        "recipe": None if recipe is None else recipe.to_dict(),
        "temperature": export.temperature,
        "shipped": shipped,
        "adaptation": adaptation,
        "factors": factors,
        "recipes_kept": {k: [describe_recipe(choices[v], recipe) for v in kept[k]] for k in kept},
        "training": training,
        "fit_seconds": float(np.mean(seconds)) if seconds else None,
        "adapt": adapt,
        "recipes": variants,
    }


def recipe_variants(export, dataset, images, labels, recorded, shipped: dict) -> list[dict]:
    """The export's k = 0 reading through variants of its recorded recipe (``--recipes``),
    after ``shipped``, its reading through the recipe as recorded."""
    from dataclasses import replace

    from zoo.pictures import recipe_from_counts

    if recorded is None or recorded.slant is None:
        return []
    by_class = recipe_from_counts(
        dataset.x_train, export.image_shape, export.pixel_max, dataset.y_train
    ).class_slants
    variants = {
        "ink only (no slant)": replace(recorded, slant=None, class_slants=None),
        "one mean slant (the stored row)": replace(recorded, class_slants=None),
        "upright (slant 0)": replace(recorded, slant=0.0, class_slants=None),
        "class by class (each class's own mean slant)": replace(recorded, class_slants=by_class),
    }
    as_recorded = "class by class" if recorded.class_slants else f"slant {recorded.slant:.3f}"
    results = [{"recipe": f"as recorded ({as_recorded})", **shipped}]
    for name, recipe in variants.items():
        if recipe == recorded:
            continue
        pictures = convert_pictures(images, export.image_shape, export.pixel_max, recipe)
        figures = reading(export.predict_pictures(pictures)[0], labels, export.classes)
        results.append({"recipe": name, **figures})
        print(f"  {name}: {figures['accuracy']:.4f}", flush=True)
    return results


def measure_baselines(images, labels, budget, matched_recipe: bool) -> list[dict]:
    """The fixed baselines on optdigits' training file, read and adapted as the exports are."""
    from zoo import load_dataset
    from zoo.pictures import recipe_from_counts

    dataset = load_dataset("optdigits")
    recipe = None
    if matched_recipe:
        recipe = recipe_from_counts(dataset.x_train, dataset.image_shape, dataset.pixel_max)
    scaled = dataset.scale(convert(images, dataset.image_shape, dataset.pixel_max, recipe))
    x_train, y_train = dataset.scale(dataset.x_train), dataset.y_train
    results = []
    for name, estimator in baselines().items():
        adaptation: dict[int, list[float]] = {}
        seconds = []
        for k in budget["k_values"]:
            adaptation[k] = []
            for seed in budget["seeds"] if k else (0,):
                few, rest = draw(labels, k, seed)
                accuracy, elapsed = adapted_accuracy(
                    estimator,
                    x_train,
                    y_train,
                    scaled[few],
                    labels[few],
                    scaled[rest],
                    labels[rest],
                )
                adaptation[k].append(accuracy)
                seconds.append(elapsed)
        print(f"{name}: " + ", ".join(f"k={k} {np.mean(a):.4f}" for k, a in adaptation.items()))
        results.append(
            {"model": name, "adaptation": adaptation, "fit_seconds": float(np.mean(seconds))}
        )
    return results


def markdown_tables(exports: list[dict], fixed: list[dict], budget, n_digits: int) -> str:
    """The shipped reading and the adaptation, as markdown tables."""
    lines = [
        f"| model (as shipped) | accuracy on {n_digits:,} | calibrated ECE | "
        + " | ".join(str(c) for c in range(10))
        + " | commonest confusions (true -> read) |",
        "|---|---:|---:|" + "---:|" * 10 + "---|",
    ]
    for row in exports:
        shipped = row["shipped"]
        confusions = ", ".join(
            f"{c['true']}->{c['read']} {c['count']}/{c['of']}" for c in shipped["confusions"]
        )
        per_class = " | ".join(f"{shipped['per_class'].get(c, 0):.2f}" for c in range(10))
        lines.append(
            f"| {row['model']} | {shipped['accuracy']:.4f} | {shipped['ece']:.3f} | "
            f"{per_class} | {confusions} |"
        )
    variants = [(row["model"], v) for row in exports for v in row.get("recipes") or []]
    if variants:
        lines += [
            "",
            "| model | picture recipe | accuracy | calibrated ECE | 6s | 7s |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for model, v in variants:
            lines.append(
                f"| {model} | {v['recipe']} | {v['accuracy']:.4f} | {v['ece']:.3f} | "
                f"{v['per_class'].get(6, 0):.2f} | {v['per_class'].get(7, 0):.2f} |"
            )
    k_values = budget["k_values"]
    lines += [
        "",
        "| model | " + " | ".join(f"k={k}" for k in k_values) + " | s per adaptation |",
        "|---|" + "---:|" * (len(k_values) + 1),
    ]
    for row in exports + fixed:
        cells = []
        for k in k_values:
            values = row["adaptation"].get(k, [])
            spread = f" ± {np.std(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.4f}{spread}" if values else "")
        seconds = f"{row['fit_seconds']:.1f}" if row["fit_seconds"] is not None else ""
        name = f"{row['model']}, {row['training']}" if row.get("training") else row["model"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its tables (and a JSON line with ``--json``)."""
    args = parse_args(argv)
    budget = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        budget["seeds"] = tuple(range(args.seeds))
    if args.k_values is not None:
        budget["k_values"] = args.k_values
    if args.no_adapt_timing:
        budget["adapt"] = False
    try:
        images, labels = load_sd3(args.sd3, budget["n_digits"])
        exports = [
            measure_export(
                path,
                images,
                labels,
                budget,
                args.matched_recipe,
                args.recipes,
                args.retrain,
                args.recorded_recipe,
            )
            for path in args.export
        ]
    except ZooError as error:
        print(f"other_writers.py: error: {error}", file=sys.stderr)
        return 2
    fixed = measure_baselines(images, labels, budget, args.matched_recipe)
    print()
    print(markdown_tables(exports, fixed, budget, len(labels)))
    if args.json:
        figures = {"exports": exports, "baselines": fixed, "n_digits": len(labels)}
        print(json.dumps({"other_writers": figures}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
