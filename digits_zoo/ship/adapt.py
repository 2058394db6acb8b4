"""Adapting an export to a person's handwriting: the ``adapt`` subcommand and what it runs.

``digits-zoo adapt EXPORT --data PATH`` takes an export and a person's labelled
digits (the page's collected CSV, a folder of pictures with one subfolder per
class, or anything ``--data`` takes), and trains on the export's own training
data plus the person's digits. A network export is fine-tuned: its networks are
rebuilt with the weights its SavedModel holds (checked to give the export's
own probabilities) and trained ``FINE_TUNE_EPOCHS`` passes further, from
``FINE_TUNE_RATE`` of their learning rate, a share ``FINE_TUNE_AS_IS`` of the
export's training rows as they are in each pass and the rest as augmented copies
(:func:`zoo.fine_tune.fine_tune`).
A scikit-learn export, a network whose weights do not rebuild it, or
``--retrain`` retrains the exported configuration from scratch instead, and
so does a fine-tuned model that may not be written (below): the retrained
one is measured the same way, and written only if it may be. The
few digits of one person would be lost among thousands, so each is added
many times, as augmented copies (turned, scaled and shifted a little,
:func:`zoo.augment.random_images`), until the person's rows of each class
make up ``FINE_TUNE_PERSON_SHARE`` (fine-tuning) or ``PERSON_SHARE``
(retraining) of that class's training rows (:func:`copies_for`).

What is measured decides what is written. Part of the person's digits is held
out (``--holdout``); with fewer than ``CROSS_VALIDATE_BELOW`` digits of some
class, every digit is held out once instead, by stratified cross-validation.
The model then written is trained on all of them, as scikit-learn's searches
refit their best candidate on all the data (:func:`adapted_model`). A
fine-tuned model's change to the export's weights is also carried further
(:func:`zoo.fine_tune.extrapolate`, by each of ``EXTRAPOLATION_FACTORS``, as
task arithmetic scales a task vector): the factor kept is the one that reads
the held-out digits best, of those that read them at least as well as the
fine-tuning as it ended and lose at most ``MAX_TEST_LOSS`` on the original
test split. The adapted model's
temperature is fitted on those held-out (out-of-fold) digits' probabilities,
as an export fits it on out-of-fold probabilities, when there are at least
``MIN_CALIBRATION_DIGITS`` of them (fewer keep the export's temperature). The adapted model is
written as the export's next version (the TensorFlow Serving layout, through
:func:`digits_zoo.ship.export.export_estimator`, which checks the reloaded
files) only when, fine-tuned as it ended (factor 1), it reads the person's
held-out digits better than the export does (or, where the export read them
all, all of them too) and loses at most ``MAX_TEST_LOSS`` (0.2 points;
``--max-test-loss`` sets another allowance) on the export's original test split.
Otherwise nothing is written; the command says so (for a test loss, with the
allowance that would accept it) and still exits 0 (a refusal is an answer, not
an error).

A person's pictures (a picture folder) also choose how they are drawn into the
export's pixels: the export's recipe is matched to its training data's writers,
and a person whose pen is thinner or whose digits are wider may be read better
by a variant of it (:func:`zoo.pictures.recipe_variants`: thinner strokes, a
narrower box). Each training takes the variant the export, as it is, reads the
digits it trains on best through (the lowest log-loss, :class:`RecipeChoice`),
so held-out digits do not choose how they are drawn; the version written reads
pictures by the variant chosen on all of them. Rows (a collected CSV, a
dataset) were drawn already and keep the export's recipe.

The new version's metadata records the person's digits it trained on
(``adapted``: their source; ``held_out``, the rows left out, is empty since
every digit trains, and lists them for versions written before; for pictures, the
recipe they were drawn by), its picture recipe, and the
factors tried and kept (``adaptation``), so that a later adaptation of it
rebuilds the same training data and adds to it.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.runs import read_run_meta
from digits_zoo.ship.export import ExportResult, export_estimator
from digits_zoo.ship.layout import SAVED_MODEL, SIGNATURE, is_version, version_folders
from digits_zoo.ship.load import (
    LoadedExport,
    apply_calibration,
    load_export,
    picture_recipe,
    resolve_export,
)
from digits_zoo.ship.rows import row_estimator
from zoo.augment import random_rows
from zoo.calibration import expected_calibration_error, fit_temperature
from zoo.data import (
    DATASET_NAMES,
    DEFAULT_TEST_SIZE,
    Dataset,
    check_test_overlap,
    is_picture_folder,
    load_dataset,
    picture_folder_images,
    read_added_rows,
    with_test_in_training,
)
from zoo.errors import ZooError
from zoo.fine_tune import extrapolate, fine_tune, network_weights, with_weights
from zoo.pictures import PictureRecipe, image_to_pixels, recipe_variants
from zoo.validation import check_seed

DEFAULT_HOLDOUT = 0.3
# With fewer digits than this in some class, cross-validate instead of holding some out.
CROSS_VALIDATE_BELOW = 10
CROSS_VALIDATION_FOLDS = 5
# The share of each class's training rows the person's digits (with their copies) make up,
# retraining and fine-tuning, and the most copies of one digit (the original included).
PERSON_SHARE = 0.25
FINE_TUNE_PERSON_SHARE = 0.4
MAX_COPIES = 50
# Fine-tuning: passes over the rows, the fraction of the config's learning rate it starts at,
# and the share of the export's training rows each pass takes as they are (the rest augmented).
FINE_TUNE_EPOCHS = 3
FINE_TUNE_RATE = 0.3
FINE_TUNE_AS_IS = 0.5
# The factors the fine-tuning's change to the weights is scaled by (zoo.fine_tune.extrapolate);
# the one that reads the held-out digits best, within the test split's allowance, is kept.
EXTRAPOLATION_FACTORS = (1.0, 1.25, 1.5, 1.75, 2.0)
# How far the rebuilt networks' probabilities may be from the export's own for it to be fine-tuned.
REBUILD_TOLERANCE = 1e-4
# The copies' turn, scale and shift, as the affine augmentation's at this strength.
COPY_STRENGTH = 1.0
# The fewest held-out digits a temperature is fitted on; with fewer, the export's is kept.
MIN_CALIBRATION_DIGITS = 50
# The most the original test split's accuracy may drop for the new version to be written.
MAX_TEST_LOSS = 0.002
# Accuracies are fractions of whole rows; this absorbs float rounding in the comparisons.
_EPSILON = 1e-9


@dataclass
class Figures:
    """Accuracies of one model: on the person's held-out digits and on the original test split."""

    person: float
    test: float


@dataclass
class RecipeChoice:
    """A person's pictures converted by each variant of the export's picture recipe
    (:func:`zoo.pictures.recipe_variants`), and how well the export reads them through each.

    Attributes:
        recipes: the variants, the export's own recipe first.
        rows: for each variant, the pictures' stored rows (``[n, n_features]`` raw pixels,
            :func:`zoo.pictures.image_to_pixels`), the rows the adapted model trains on.
        losses: ``[n_variants, n]``: each picture's log-loss as the export reads its row by
            each variant (calibrated).
    """

    recipes: list[PictureRecipe | None]
    rows: list[np.ndarray]
    losses: np.ndarray

    def chosen(self, digits: np.ndarray) -> int:
        """The variant the export reads these digits best through: the lowest mean
        log-loss (a tie keeps the earlier variant, the export's own recipe first)."""
        means = self.losses[:, np.asarray(digits, dtype="int64")].mean(axis=1)
        return int(np.argmin(np.round(means, 9)))


def read_choice(
    loaded: LoadedExport, recipes: list[PictureRecipe | None], rows: list[np.ndarray], y
) -> RecipeChoice:
    """A :class:`RecipeChoice` from the pictures' stored rows by each recipe (``[n,
    n_features]`` each), read by the export in one call (:meth:`LoadedExport.predict_proba`).

    The stored row is the one the adapted model trains on; reading each picture class by
    class too (:func:`zoo.pictures.picture_rows`) would convert and predict eleven times the
    rows for the same choice (``benchmarks/RESULTS.md``)."""
    y = np.asarray(y)
    rows = [np.asarray(each, dtype="float32") for each in rows]
    probabilities, _ = loaded.predict_proba(np.concatenate(rows))
    probabilities = np.asarray(probabilities, dtype="float64").reshape(len(rows), len(y), -1)
    own = probabilities[:, np.arange(len(y)), np.searchsorted(np.asarray(loaded.classes), y)]
    return RecipeChoice(list(recipes), rows, -np.log(own + 1e-12))


def recipe_choice(
    loaded: LoadedExport, data: str | Path, x: np.ndarray, y: np.ndarray
) -> RecipeChoice | None:
    """The person's pictures (a picture folder, ``data``) by each variant of the export's
    recipe, or ``None``: rows that are not pictures (a collected CSV, a dataset), or a recipe
    with no variants. ``x``, ``y``: their rows by the export's own recipe and their labels, as
    :func:`zoo.data.read_added_rows` read them (the first variant's rows)."""
    recipes = recipe_variants(loaded.picture_recipe, loaded.image_shape, loaded.pixel_max)
    if len(recipes) < 2 or not is_picture_folder(data):
        return None
    images, labels = picture_folder_images(data)
    if not np.array_equal(labels, y):
        raise ZooError(f"{data} changed while it was read; adapt again")
    rows = [x] + [
        np.stack(
            [
                image_to_pixels(image, loaded.image_shape, loaded.pixel_max, recipe)
                for image in images
            ]
        )
        for recipe in recipes[1:]
    ]
    return read_choice(loaded, recipes, rows, y)


def describe_recipe(recipe: PictureRecipe | None, recorded: PictureRecipe | None) -> str:
    """A variant of ``recorded`` in words: its strokes and box against the recorded ones."""
    if recipe == recorded:
        return "as the export draws them"
    parts = []
    if recipe is not None and recorded is not None and recipe.ink_fraction != recorded.ink_fraction:
        scale = recipe.ink_fraction / recorded.ink_fraction
        parts.append(f"with strokes at {scale:.2g} of the training data's ink")
    if recipe is not None and recipe.box is not None:
        parts.append(f"into a {recipe.box[0]}x{recipe.box[1]} box")
    return " and ".join(parts) or "as the export draws them"


@dataclass
class AdaptResult:
    """What one adaptation measured and, when the adapted model was good enough, wrote.

    Attributes:
        base: the export's base folder.
        previous: the version folder adapted.
        method: ``holdout`` or ``cross-validation`` (how the person's digits were held out).
        training: ``fine-tuned`` (from the export's weights) or ``retrained`` (from scratch).
        n_person: the person's digits read.
        n_held_out: how many of them the ``person`` figures are measured on.
        n_test: the original test split's size.
        copies: how many rows each of the person's digits trained as, by class.
        before, after: the export's and the adapted model's figures.
        temperature: the adapted model's temperature.
        factor: the factor its fine-tuning's change to the weights was scaled by (1: as
            fine-tuned, or retrained).
        written: the new version, or ``None`` when it was refused.
        reason: why it was refused (``None`` when written).
        seconds: the adaptation's wall time.
        recipe: how the person's pictures were drawn into the export's pixels, in words
            (``None``: rows, not pictures, or a recipe with no variants).
    """

    base: Path
    previous: Path
    method: str
    training: str
    n_person: int
    n_held_out: int
    n_test: int
    copies: dict[int, int]
    before: Figures
    after: Figures
    temperature: float
    factor: float = 1.0
    written: ExportResult | None = None
    reason: str | None = None
    seconds: float = 0.0
    recipe: str | None = None


@dataclass
class _Attempt:
    """One training of the adapted model and its figures (``reason``: why not to write it).

    Attributes:
        training: ``fine-tuned`` or ``retrained``.
        copies: how many rows each of the person's digits trained as, by class, in the model
            kept (trained on all of them).
        estimator: that model, its fine-tuning's change scaled by ``factor``.
        held_probabilities: each held-out digit's probabilities from the model that did not
            train on it (rows of digits never held out: zeros), at ``factor``.
        after: the held-out digits' accuracy and the kept model's on the original test split.
        plain: the same figures at factor 1, the fine-tuning as it ended: whether to write
            the model is decided on them, since the best of several factors on the same
            held-out digits reads them better partly by chance.
        factor: the extrapolation factor kept (1 for a retrained model).
        factors: each factor tried: its held-out accuracy, held-out log-loss and test accuracy.
        reason: why not to write the model (``None``: it may be written).
        recipe: the variant of the :class:`RecipeChoice` the kept model's person rows were
            converted by (0: the export's own recipe, or rows that are not pictures).
        x_person: the person's rows the kept model trained on.
    """

    training: str
    copies: dict[int, int]
    estimator: Any
    held_probabilities: np.ndarray
    after: Figures
    plain: Figures
    factor: float = 1.0
    factors: dict[float, dict[str, float]] | None = None
    reason: str | None = None
    recipe: int = 0
    x_person: np.ndarray | None = None


def _within_test_allowance(test: float, test_before: float, allowance: float) -> bool:
    """Whether a test accuracy loses at most ``allowance`` (a fraction) against ``test_before``."""
    return not test + allowance + _EPSILON < test_before


def check_max_test_loss(points: float) -> float:
    """``--max-test-loss``, in points of test accuracy, as a fraction.

    Raises:
        ZooError: not a number of points from 0 to 100.
    """
    if isinstance(points, bool) or not isinstance(points, (int, float)):
        raise ZooError(f"--max-test-loss must be a number of points (got {points!r})")
    if not 0.0 <= float(points) <= 100.0:
        raise ZooError(
            f"--max-test-loss must be between 0 and 100 points of test accuracy (got {points}); "
            f"the default is {MAX_TEST_LOSS * 100:g}"
        )
    return float(points) / 100.0


def _refusal(before: Figures, after: Figures, allowance: float = MAX_TEST_LOSS) -> str | None:
    """Why the adapted model is not written, or ``None`` when it may be (``allowance``: the
    test split's accuracy it may lose, a fraction)."""
    if after.person + _EPSILON < before.person:
        return f"it reads your held-out digits worse ({before.person:.1%} -> {after.person:.1%})"
    if after.person <= before.person + _EPSILON and before.person < 1.0 - _EPSILON:
        # Nothing learned, and a temperature fitted on digits it still misreads would make
        # the new version unsure of everything.
        return (
            f"it reads your held-out digits no better ({before.person:.1%} -> "
            f"{after.person:.1%}); check their labels, or collect more of the digits it misreads"
        )
    if not _within_test_allowance(after.test, before.test, allowance):
        # The smallest allowance, in tenths of a point, that would let it be written.
        needed = math.ceil(round((before.test - after.test) * 1000, 6)) / 10
        return (
            f"it loses more than {allowance * 100:g} points on the original test split "
            f"({before.test:.2%} -> {after.test:.2%}); --max-test-loss {needed:g} would "
            "accept that loss"
        )
    return None


def export_training_data(metadata: dict[str, Any]) -> Dataset:
    """Rebuilds the data an export was trained on, checked against its recorded fingerprint.

    The sources come from the export's ``data`` record (or, for an export made
    before it, its run's ``run.json``, or the dataset's name), then the
    person's digits of earlier adaptations (``adapted``), less the rows they
    held out. An export refit on every labelled digit (``refit_full``) trained
    on the test part too.

    Raises:
        ZooError: the sources are not recorded, or no longer give the same data.
    """
    dataset_record = metadata["dataset"]
    record = metadata.get("data")
    if isinstance(record, dict) and "sources" in record:
        sources, test_size = record["sources"], float(record["test_size"])
    else:
        run_dir = (metadata.get("source") or {}).get("run_dir")
        try:
            run_meta = read_run_meta(run_dir) if run_dir else None
        except ZooError:
            run_meta = None
        if run_meta is not None:
            sources, test_size = run_meta["data"], float(run_meta["test_size"])
        elif dataset_record.get("name") in DATASET_NAMES:
            sources, test_size = dataset_record["name"], DEFAULT_TEST_SIZE
        else:
            raise ZooError(
                f"the export does not record its training data's sources (got dataset "
                f"{dataset_record.get('name')!r}, and its run {run_dir!r} is gone); export it "
                "again with this version of digits-zoo"
            )
    seed = dataset_record.get("split_seed") or 0
    dataset = load_dataset(sources, test_size=test_size, seed=seed)
    if metadata.get("refit_full"):
        dataset = with_test_in_training(dataset)
    recipe = picture_recipe(metadata)
    for earlier in metadata.get("adapted") or []:
        # Pictures that chose a recipe of their own record it; earlier ones took the version's.
        own = earlier.get("picture_recipe", recipe)
        if isinstance(own, dict):
            own = PictureRecipe.from_dict(own)
        x, y = read_added_rows(earlier["data"], dataset, recipe=own)
        keep = np.setdiff1d(np.arange(len(y)), np.asarray(earlier["held_out"], dtype="int64"))
        dataset = _with_rows(dataset, x[keep], y[keep], earlier["data"])
    if dataset.fingerprint() != dataset_record["fingerprint"]:
        raise ZooError(
            f"the export's training data changed since it was exported (sources "
            f"{sources!r}{', plus earlier adaptations' if metadata.get('adapted') else ''}); "
            "restore those files, or export the model again"
        )
    return dataset


def _with_rows(dataset: Dataset, x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    """``dataset`` with raw rows added to its training part (the test part unchanged)."""
    return replace(
        dataset,
        name=f"{dataset.name} + {source}",
        x_train=np.concatenate([dataset.x_train, x]).astype("float32"),
        y_train=np.concatenate([dataset.y_train, y]).astype("int64"),
        added=(*dataset.added, {"name": str(source), "rows": int(len(y))}),
    )


def person_copies(
    x_raw: np.ndarray,
    y: np.ndarray,
    copies: dict[int, int],
    pixel_max: float,
    image_shape: tuple[int, ...],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The person's rows, then augmented copies of them, as raw pixels, with their labels:
    a digit of class ``c`` trains as ``copies[c]`` rows (:func:`copies_for`).

    Copy 0 is the rows themselves; each other copy turns, scales and shifts
    the digit a little (:func:`zoo.augment.random_images`, affine, at
    ``COPY_STRENGTH``). Rows that are not square images are repeated as they are.
    """
    x_raw = np.asarray(x_raw, dtype="float32")
    y = np.asarray(y, dtype="int64")
    counts = np.asarray([copies.get(int(label), 1) for label in y], dtype="int64")
    rng = np.random.default_rng(seed)
    parts, labels = [x_raw], [y]
    for copy in range(1, int(counts.max(initial=1))):
        rows = counts > copy
        moved = random_rows(x_raw[rows], pixel_max, image_shape, rng, COPY_STRENGTH, ("affine",))
        parts.append(x_raw[rows] if moved is None else moved)
        labels.append(y[rows])
    return np.concatenate(parts).astype("float32"), np.concatenate(labels)


def person_share(fine_tuned: bool) -> float:
    """The share of each class's rows the person's digits make up: ``FINE_TUNE_PERSON_SHARE``
    fine-tuning, ``PERSON_SHARE`` retraining."""
    return FINE_TUNE_PERSON_SHARE if fine_tuned else PERSON_SHARE


def copies_for(
    y_base: np.ndarray, y_person: np.ndarray, share: float = PERSON_SHARE
) -> dict[int, int]:
    """How many rows each of the person's digits trains as, class by class.

    The person's rows of a class (with their copies) make up ``share`` of that
    class's training rows, the base rows of it the rest, so that the classes
    keep the balance they have: a person who gives only 7s does not teach the
    model that most digits are 7s. At least 1, at most ``MAX_COPIES``.
    """
    y_base, y_person = np.asarray(y_base), np.asarray(y_person)
    copies = {}
    for label in np.unique(y_person):
        n_base = int(np.sum(y_base == label))
        wanted = share / (1.0 - share) * n_base / int(np.sum(y_person == label))
        copies[int(label)] = int(np.clip(round(wanted), 1, MAX_COPIES))
    return copies


def _unfitted(metadata: dict[str, Any]) -> Any:
    """The export's model, unfitted, rebuilt from its recorded config as a leaderboard row's
    (:func:`digits_zoo.ship.rows.row_estimator`, seeded with the export's run seed)."""
    row = {
        "model": metadata["model"],
        "kind": metadata["kind"],
        "config": json.dumps(metadata.get("config") or {}),
        "model_path": "",
    }
    return row_estimator(row, int(metadata.get("seed", 0)))


def exported_networks(
    folder: Path, loaded: LoadedExport, dataset: Dataset
) -> tuple[Callable[[int], Any] | None, str]:
    """What fine-tuning starts from: a function giving the export's networks rebuilt with its
    SavedModel's weights (:func:`zoo.fine_tune.with_weights`, its argument the dropout's
    seed), or ``None`` and why not.

    The rebuilt networks must give the export's own (uncalibrated) probabilities on its test
    split, within ``REBUILD_TOLERANCE``; a scikit-learn export has no networks to rebuild.
    """
    metadata = loaded.metadata
    if metadata.get("kind") != "keras":
        return None, "a scikit-learn model is retrained"
    if not (folder / SAVED_MODEL).is_file():
        return None, f"{folder} holds no {SAVED_MODEL} to take the networks' weights from"
    import tensorflow as tf

    saved = tf.saved_model.load(str(folder))
    # A SavedModel of a Keras model lists its random generators' states beside its weights.
    arrays = [v.numpy() for v in saved.variables if "seed_generator" not in v.name]

    def rebuilt(seed: int) -> Any:
        return with_weights(
            _unfitted(metadata), loaded.classes, loaded.n_features, arrays, seed=seed
        )

    try:
        probe = dataset.x_test if len(dataset.y_test) else dataset.x_train
        estimator = rebuilt(0)
        mine = np.asarray(estimator.predict_proba(dataset.scale(probe)))
        served = saved.signatures[SIGNATURE](pixels=tf.constant(probe.astype("float32")))
        theirs = served["probabilities"].numpy()
    except ZooError as error:
        return None, f"its weights do not rebuild its networks ({error})"
    distance = float(np.max(np.abs(mine - theirs))) if len(probe) else 0.0
    if not distance <= REBUILD_TOLERANCE:
        return None, (
            f"the networks rebuilt from its weights give other probabilities (by up to "
            f"{distance:.2g})"
        )
    return rebuilt, "its networks rebuilt from its weights"


def fit_adapted(
    metadata: dict[str, Any],
    dataset: Dataset,
    x_person: np.ndarray,
    y_person: np.ndarray,
    copies: dict[int, int],
    seed: int,
    start: Callable[[int], Any] | None = None,
) -> Any:
    """The exported model trained on ``dataset``'s training part plus the person's raw rows
    (``copies[c]`` rows each digit of class ``c``: :func:`person_copies`, :func:`copies_for`).

    With ``start`` (:func:`exported_networks`), the export's networks are fine-tuned
    (:func:`zoo.fine_tune.fine_tune`, ``FINE_TUNE_EPOCHS`` at ``FINE_TUNE_RATE``, a share
    ``FINE_TUNE_AS_IS`` of the training rows as they are each epoch); without,
    the exported configuration is fitted from scratch. What ``adapt`` trains, and what
    ``benchmarks/other_writers.py`` measures."""
    x_extra, y_extra = person_copies(
        x_person, y_person, copies, dataset.pixel_max, dataset.image_shape, seed
    )
    x_train = np.concatenate([dataset.x_train, x_extra]).astype("float32")
    y_train = np.concatenate([dataset.y_train, y_extra])
    if start is not None:
        return fine_tune(
            start(seed),
            dataset.scale(x_train),
            y_train,
            n_base=len(dataset.y_train),
            epochs=FINE_TUNE_EPOCHS,
            learning_rate_scale=FINE_TUNE_RATE,
            seed=seed,
            as_is=FINE_TUNE_AS_IS,
        )
    return _unfitted(metadata).fit(dataset.scale(x_train), y_train)


def _probabilities(estimator: Any, dataset: Dataset, x_raw: np.ndarray) -> np.ndarray:
    return np.asarray(estimator.predict_proba(dataset.scale(x_raw)), dtype="float64")


def _accuracy(probabilities: np.ndarray, classes: np.ndarray, y: np.ndarray) -> float:
    if not len(y):
        return float("nan")
    return float(np.mean(classes[np.argmax(probabilities, axis=1)] == y))


def held_out_split(y: np.ndarray, holdout: float, seed: int) -> tuple[str, list[np.ndarray]]:
    """``holdout`` and one held-out index array, or ``cross-validation`` and one per fold
    (fewer than ``CROSS_VALIDATE_BELOW`` digits in some class, or too few held out for one of
    each class)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    counts = np.bincount(np.searchsorted(np.unique(y), y))
    indices = np.arange(len(y))
    n_held_out = math.ceil(holdout * len(y))
    # A stratified hold-out needs a digit of every class on each side.
    fits = min(n_held_out, len(y) - n_held_out) >= len(counts)
    if counts.min() >= CROSS_VALIDATE_BELOW and fits:
        _, held_out = train_test_split(indices, test_size=holdout, stratify=y, random_state=seed)
        return "holdout", [np.sort(held_out)]
    folds = min(CROSS_VALIDATION_FOLDS, len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A class with fewer digits than folds is held out in fewer folds: fine here.
        warnings.simplefilter("ignore", UserWarning)
        return "cross-validation", [test for _, test in splitter.split(indices, y)]


def _log_loss(probabilities: np.ndarray, classes: np.ndarray, y: np.ndarray) -> float:
    rows = np.arange(len(y))
    return float(-np.mean(np.log(probabilities[rows, np.searchsorted(classes, y)] + 1e-12)))


def adapted_model(
    metadata: dict[str, Any],
    dataset: Dataset,
    x_person: np.ndarray,
    y_person: np.ndarray,
    held_out_sets: list[np.ndarray],
    seed: int,
    start: Callable[[int], Any] | None,
    test_before: float,
    max_test_loss: float = MAX_TEST_LOSS,
    choice: RecipeChoice | None = None,
) -> _Attempt:
    """The model ``adapt`` writes, and its figures: what ``benchmarks/other_writers.py`` measures.

    For each held-out set (:func:`held_out_split`) the model is trained
    (:func:`fit_adapted`) on the other digits and read on those; then it is
    trained once more on all of them, the model kept, as scikit-learn's search
    refits its best candidate on all the data. A fine-tuned model's change to
    the export's weights is scaled by each of ``EXTRAPOLATION_FACTORS``
    (:func:`zoo.fine_tune.extrapolate`): the factor kept is the one whose
    held-out reading is best (the higher accuracy, then the lower log-loss; a tie
    keeps the smaller factor) among those whose kept model loses at most
    ``max_test_loss`` (a fraction) on the original test split against ``test_before`` and
    read the held-out digits at least as well as factor 1 does (none: 1). A
    retrained model has no change to scale (factor 1).

    With ``choice`` (the person's pictures), each training converts the person's
    pictures, held-out ones included, by the recipe that the export reads the digits
    it trains on best through (:meth:`RecipeChoice.chosen`): the held-out digits do
    not choose how they are drawn, and the kept model's recipe is chosen on all of them.

    Returns:
        The kept model and its figures; ``reason`` is left for the caller to set.
    """
    factors = EXTRAPOLATION_FACTORS if start is not None else (1.0,)
    share = person_share(start is not None)
    origin = None  # the export's weights, read from the first networks rebuilt

    def drawn(rows: np.ndarray) -> tuple[int, np.ndarray]:
        """The recipe variant these digits choose, and every person row converted by it."""
        if choice is None:
            return 0, np.asarray(x_person)
        variant = choice.chosen(rows)
        return variant, choice.rows[variant]

    def trained(rows: np.ndarray, fit_seed: int, x: np.ndarray) -> tuple[Any, Any, dict[int, int]]:
        nonlocal origin
        begin = None
        if start is not None:
            networks = start(fit_seed)
            origin = origin or network_weights(networks)
            begin = lambda _: networks  # noqa: E731
        copies = copies_for(dataset.y_train, y_person[rows], share)
        fitted = fit_adapted(metadata, dataset, x[rows], y_person[rows], copies, fit_seed, begin)
        return fitted, None if origin is None else network_weights(fitted), copies

    def at(fitted: Any, end: Any, factor: float) -> Any:
        return fitted if end is None else extrapolate(fitted, origin, end, factor)

    everyone = np.arange(len(y_person))
    held = {factor: None for factor in factors}
    for fold, held_out in enumerate(held_out_sets):
        training_digits = np.setdiff1d(everyone, held_out)
        _, x = drawn(training_digits)
        fitted, end, _ = trained(training_digits, seed + fold, x)
        for factor in factors:
            probabilities = _probabilities(at(fitted, end, factor), dataset, x[held_out])
            if held[factor] is None:
                held[factor] = np.zeros((len(y_person), probabilities.shape[1]))
            held[factor][held_out] = probabilities
    variant, x_kept = drawn(everyone)
    estimator, end, copies = trained(everyone, seed + len(held_out_sets), x_kept)
    classes = np.asarray(estimator.classes_)
    held_out_all = np.concatenate(held_out_sets)
    y_held = y_person[held_out_all]
    figures = {}
    for factor in factors:
        test = _accuracy(
            _probabilities(at(estimator, end, factor), dataset, dataset.x_test),
            classes,
            dataset.y_test,
        )
        figures[factor] = {
            "held_out": _accuracy(held[factor][held_out_all], classes, y_held),
            "log_loss": _log_loss(held[factor][held_out_all], classes, y_held),
            "test": test,
        }
    plain = figures[1.0]
    allowed = [
        factor
        for factor in factors
        if figures[factor]["held_out"] + _EPSILON >= plain["held_out"]
        and _within_test_allowance(figures[factor]["test"], test_before, max_test_loss)
    ]
    factor = min(
        allowed or [1.0],
        key=lambda f: (-figures[f]["held_out"], figures[f]["log_loss"], f),
    )
    estimator = at(estimator, end, factor)
    return _Attempt(
        "retrained" if start is None else "fine-tuned",
        copies,
        estimator,
        held[factor],
        Figures(figures[factor]["held_out"], figures[factor]["test"]),
        Figures(plain["held_out"], plain["test"]),
        factor,
        figures,
        recipe=variant,
        x_person=x_kept,
    )


def adapt_export(
    export: str | Path,
    data: str | Path,
    *,
    holdout: float = DEFAULT_HOLDOUT,
    seed: int = 0,
    retrain: bool = False,
    max_test_loss: float = MAX_TEST_LOSS,
    progress: Callable[[str], None] = print,
) -> AdaptResult:
    """Adapts an export to a person's labelled digits; writes its next version if no worse.

    Args:
        export: the export's base folder (its newest version is adapted) or one
            version folder (the next version goes in its base folder).
        data: the person's digits: a collected CSV, a picture folder, or any
            one source ``--data`` takes, in (or converted to) the export's format.
        holdout: the fraction of the person's digits held out to measure on,
            when every class has at least ``CROSS_VALIDATE_BELOW`` of them.
        seed: the seed of the held-out split, the augmented copies and the training.
        retrain: fit the exported configuration from scratch even when the export's
            networks can be fine-tuned.
        max_test_loss: the most the original test split's accuracy may drop for the
            new version to be written, a fraction (``--max-test-loss`` takes points: 0.2
            is 0.002, the default).
        progress: receives one line per step worth telling.

    Returns:
        The figures before and after, and the version written (or why not).

    Raises:
        ZooError: not an export, training data that cannot be rebuilt, unusable
            digits (another format, unknown classes, fewer than 2), or a bad
            ``holdout`` or ``max_test_loss``.
    """
    started = time.perf_counter()
    seed = check_seed(seed)
    if isinstance(holdout, bool) or not 0.0 < float(holdout) < 1.0:
        raise ZooError(f"--holdout must be a fraction between 0 and 1 (got {holdout})")
    if isinstance(max_test_loss, bool) or not 0.0 <= float(max_test_loss) <= 1.0:
        raise ZooError(
            f"the test allowance must be a fraction between 0 and 1 (got {max_test_loss})"
        )
    max_test_loss = float(max_test_loss)
    previous = resolve_export(export)
    # A version folder names its base folder, where the next version goes.
    base = previous.parent if is_version(export) else Path(export)
    loaded = load_export(previous)
    metadata = loaded.metadata
    dataset = export_training_data(metadata)
    x_person, y_person = read_added_rows(data, dataset, recipe=loaded.picture_recipe)
    check_test_overlap(dataset, x_person, data)
    if len(y_person) < 2:
        raise ZooError(
            f"{data} holds {len(y_person)} labelled digit; adapting needs at least 2 (a few "
            "per class is better: 5 per class already helps)"
        )
    choice = recipe_choice(loaded, data, x_person, y_person)
    method, held_out_sets = held_out_split(y_person, float(holdout), seed)
    start, why = (None, "--retrain") if retrain else exported_networks(previous, loaded, dataset)
    copies = copies_for(dataset.y_train, y_person, person_share(start is not None))
    fewest, most = min(copies.values()), max(copies.values())
    held_out_all = np.concatenate(held_out_sets)
    progress(
        f"adapting {metadata['model']} ({previous}) to {len(y_person)} digits of {data}: "
        + (
            f"{len(y_person) - len(held_out_all)} to train on, {len(held_out_all)} held out"
            if method == "holdout"
            else f"{len(held_out_sets)}-fold cross-validation (fewer than "
            f"{CROSS_VALIDATE_BELOW} digits in some class)"
        )
        + f", then all {len(y_person)} trained on; each trains as "
        f"{fewest if fewest == most else f'{fewest}-{most}'} rows "
        "(augmented copies, as many as keep the classes' balance) beside the export's "
        f"{len(dataset.y_train)} training rows; "
        + (
            f"fine-tuning {why} ({FINE_TUNE_EPOCHS} epochs, the change scaled by the factor "
            f"of {', '.join(f'{f:g}' for f in EXTRAPOLATION_FACTORS)} that reads the held-out "
            "digits best)"
            if start is not None
            else f"retraining its configuration from scratch ({why})"
        )
    )
    before = Figures(
        loaded_accuracy(loaded, x_person[held_out_all], y_person[held_out_all]),
        loaded_accuracy(loaded, dataset.x_test, dataset.y_test),
    )

    def attempt(start: Callable[[int], Any] | None) -> _Attempt:
        """Trains (fine-tunes with ``start``), measures, and says why not to write, if so."""
        tried = adapted_model(
            metadata,
            dataset,
            x_person,
            y_person,
            held_out_sets,
            seed,
            start,
            before.test,
            max_test_loss,
            choice,
        )
        # Decided at factor 1; the factor kept reads the held-out digits at least as well and
        # stays within the test allowance too.
        tried.reason = _refusal(before, tried.plain, max_test_loss)
        return tried

    tried = attempt(start)
    if tried.reason is not None and start is not None:
        progress(f"fine-tuned, not kept: {tried.reason}; retraining its configuration from scratch")
        tried = attempt(None)
    estimator, held_probabilities, copies = tried.estimator, tried.held_probabilities, tried.copies
    recipe = loaded.picture_recipe if choice is None else choice.recipes[tried.recipe]
    if choice is not None:
        x_person = tried.x_person
        losses = choice.losses.mean(axis=1)
        progress(
            f"your pictures drawn {describe_recipe(recipe, loaded.picture_recipe)} (the export "
            f"reads them at a log-loss of {losses[tried.recipe]:.3f}, against "
            f"{losses[0]:.3f} as it draws them; {len(choice.recipes)} ways tried)"
        )
    model_classes = np.asarray(estimator.classes_)
    if len(held_out_all) >= MIN_CALIBRATION_DIGITS:
        temperature = fit_temperature(
            held_probabilities[held_out_all], y_person[held_out_all], model_classes
        )
        stranger, stranger_record = None, None
        fitted_on = f"{len(held_out_all)} of the person's digits, held out"
    else:
        # A few digits all read right pull the fitted temperature to its floor: a model
        # sure of everything. The export's own calibration is kept, strangers' included.
        temperature = loaded.temperature
        stranger, stranger_record = loaded.stranger, metadata.get("stranger_calibration")
        fitted_on = (
            f"the export's out-of-fold rows (kept: {len(held_out_all)} held-out digits are "
            f"fewer than {MIN_CALIBRATION_DIGITS})"
        )
    result = AdaptResult(
        base=base,
        previous=previous,
        method=method,
        training=tried.training,
        n_person=len(y_person),
        n_held_out=len(held_out_all),
        n_test=len(dataset.y_test),
        copies=copies,
        before=before,
        after=tried.after,
        temperature=temperature,
        factor=tried.factor,
        reason=tried.reason,
        recipe=None if choice is None else describe_recipe(recipe, loaded.picture_recipe),
    )
    if result.reason is None:
        # The model kept trained on every digit of the person's, held out or not.
        trained = _with_rows(dataset, x_person, y_person, str(data))
        source = str(data) if str(data) in DATASET_NAMES else str(Path(data).resolve())
        info = {
            "temperature": temperature,
            "stranger_calibration": stranger_record,
            "calibration": {
                "fitted_on": fitted_on,
                "held_out_ece_before": expected_calibration_error(
                    held_probabilities[held_out_all], y_person[held_out_all], model_classes
                ),
                "held_out_ece_after": expected_calibration_error(
                    apply_calibration(
                        held_probabilities[held_out_all],
                        x_person[held_out_all],
                        temperature,
                        stranger,
                        loaded.pixel_max,
                    ),
                    y_person[held_out_all],
                    model_classes,
                ),
            },
            "seed": metadata.get("seed"),
            "data": metadata.get("data"),
            "adapted": [
                *(metadata.get("adapted") or []),
                {
                    "data": source,
                    "rows": int(len(y_person)),
                    # Rows left out of the training data (every digit now trains; kept so
                    # that versions written before rebuild theirs).
                    "held_out": [],
                    "copies": {str(label): n for label, n in copies.items()},
                    "method": method,
                    "training": tried.training,
                    **(
                        {
                            "epochs": FINE_TUNE_EPOCHS,
                            "learning_rate_scale": FINE_TUNE_RATE,
                            "as_is": FINE_TUNE_AS_IS,
                            "extrapolation": tried.factor,
                        }
                        if tried.training == "fine-tuned"
                        else {}
                    ),
                    "seed": seed,
                    # The recipe the person's pictures were converted by (and are again, when
                    # this version's training data are rebuilt).
                    **({} if choice is None else {"picture_recipe": _recipe_record(recipe)}),
                },
            ],
            "adaptation": {
                "from_version": str(previous),
                "method": method,
                "training": tried.training,
                "held_out": int(len(held_out_all)),
                "before": {"person": before.person, "test_accuracy": before.test},
                "after": {"person": tried.after.person, "test_accuracy": tried.after.test},
                "extrapolation": tried.factor,
                "max_test_loss": max_test_loss,
                "factors": {f"{f:g}": figures for f, figures in (tried.factors or {}).items()},
            },
            "refit": tried.training == "retrained",
            # The recipe the person's pictures chose (the version adapted's, kept as it is, for
            # rows that are not pictures; null: the plain one): pictures are read by it.
            "picture_recipe": (
                metadata.get("picture_recipe") if choice is None else _recipe_record(recipe)
            ),
        }
        if "refit_full" in metadata:
            info["refit_full"] = metadata["refit_full"]
        result.written = export_estimator(
            estimator, trained, base, name=metadata["model"], kind=metadata["kind"], info=info
        )
    result.seconds = time.perf_counter() - started
    return result


def _recipe_record(recipe: PictureRecipe | None) -> dict[str, Any] | None:
    return None if recipe is None else recipe.to_dict()


def loaded_accuracy(loaded: LoadedExport, x_raw: np.ndarray, y: np.ndarray) -> float:
    """The export's accuracy on raw rows, as it serves them (NaN for none): ``adapt``'s
    "before" figures."""
    if not len(y):
        return float("nan")
    probabilities, _ = loaded.predict_proba(x_raw)
    return _accuracy(probabilities, np.asarray(loaded.classes), y)


def format_result(result: AdaptResult) -> list[str]:
    """The lines ``digits-zoo adapt`` prints: both figures before and after, then the outcome."""
    held = "held out" if result.method == "holdout" else "out-of-fold"
    lines = [
        f"{'':<28}{'before':>9}{'after':>9}",
        f"{'your digits (' + held + ')':<28}{result.before.person:>9.2%}"
        f"{result.after.person:>9.2%}   ({result.n_held_out} digits)",
        f"{'original test split':<28}{result.before.test:>9.2%}{result.after.test:>9.2%}"
        f"   ({result.n_test} digits)",
    ]
    if result.recipe is not None:
        lines.append(f"your pictures drawn {result.recipe}")
    training = result.training
    if result.training == "fine-tuned":
        training += f", its change scaled by {result.factor:g}"
    if result.written is not None:
        lines.append(
            f"wrote version {result.written.version}: {result.written.path} ({training}; "
            f"trained on all {result.n_person} of your digits; temperature "
            f"{result.temperature:.3g}; adapted in {result.seconds:.1f} s)"
        )
    else:
        newest = max((number for number, _ in version_folders(result.base)), default=None)
        lines.append(
            f"not written: {result.reason}; {result.base} keeps version {newest} as its newest "
            f"({training}; adapted in {result.seconds:.1f} s)"
        )
    return lines


def register(subparsers) -> None:
    """Adds the ``adapt`` subcommand."""
    adapt = subparsers.add_parser(
        "adapt",
        help="fine-tune (or retrain) an export on a person's labelled digits too; write its "
        "next version only if it reads them better and keeps its test accuracy",
        description="Fine-tunes the exported networks from their weights (a scikit-learn "
        "model, or with --retrain, retrains the exported configuration from scratch) on the "
        "export's training data plus a person's labelled digits (augmented copies of each, so "
        "that a few per class count), carries the fine-tuning's change to the weights as far "
        "as reads the held-out digits best (factors "
        f"{', '.join(f'{f:g}' for f in EXTRAPOLATION_FACTORS)}), "
        "trains it on all the person's digits, recalibrates it, and writes the next version of "
        "EXPORT only when it reads the person's held-out digits better than the export does "
        "(or all of them, where the export did) and loses at most --max-test-loss points "
        "on the original test split. Prints both "
        "figures before and after. Exit status 0 whether or not the version is written (the "
        "last line says which); 2 for an error.",
    )
    adapt.add_argument(
        "export",
        metavar="EXPORT",
        help="an export's base folder (its newest version is adapted) or one version folder",
    )
    adapt.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="the person's labelled digits: the page's collected CSV, a folder of pictures "
        "(one subfolder per class: 0/, 1/, ...), or any source --data takes",
    )
    adapt.add_argument(
        "--holdout",
        type=float,
        default=DEFAULT_HOLDOUT,
        metavar="FRACTION",
        help=f"the fraction of the digits held out to measure on (default {DEFAULT_HOLDOUT}); "
        f"with fewer than {CROSS_VALIDATE_BELOW} digits in some class, "
        f"{CROSS_VALIDATION_FOLDS}-fold cross-validation instead",
    )
    adapt.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the held-out split, the augmented copies and the training (default 0)",
    )
    adapt.add_argument(
        "--max-test-loss",
        type=float,
        default=MAX_TEST_LOSS * 100,
        metavar="POINTS",
        help="the most the original test split's accuracy may drop, in points, for the new "
        f"version to be written (default {MAX_TEST_LOSS * 100:g}; on a test split of 360 "
        "digits one more wrong digit is 0.28)",
    )
    adapt.add_argument(
        "--retrain",
        action="store_true",
        help="retrain the exported configuration from scratch instead of fine-tuning the "
        f"exported networks ({FINE_TUNE_EPOCHS} epochs from their weights; a fine-tuned model "
        "that may not be written is followed by a retraining anyway); slower",
    )
    adapt.set_defaults(handler=_adapt)


def _adapt(args) -> int:
    result = adapt_export(
        args.export,
        args.data,
        holdout=args.holdout,
        seed=args.seed,
        retrain=args.retrain,
        max_test_loss=check_max_test_loss(args.max_test_loss),
    )
    for line in format_result(result):
        print(line)
    return 0
