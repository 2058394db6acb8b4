"""Assembling an export: a new version folder, every file in it verified before it is published.

The export's layout (the TensorFlow Serving layout: one numbered folder per
version under a base folder, by default ``RUN_DIR/export/<model>``) and its
version numbers are :mod:`digits_zoo.ship.layout`'s; which leaderboard row is
exported, and its fitted model, :mod:`digits_zoo.ship.rows`'s.

Each version is written to a hidden temporary folder, reloaded and checked
against the in-memory model on the run's held-out test split, and only then
renamed to its number: a failed check leaves nothing behind, and a serving
process watching ``OUT`` never sees a half-written version. The hidden folder
of an export that was killed is removed by the next export into that base.

A version holds the model's own format (SavedModel or skops,
:mod:`digits_zoo.ship.own_format`) and, with ``format``, portable files beside
it: ONNX (networks by Keras's own exporter,
:mod:`digits_zoo.ship.keras_formats`; scikit-learn models by skl2onnx,
:mod:`digits_zoo.ship.sklearn_onnx`) and LiteRT (networks only). Each file is
checked by its own runtime (TensorFlow, skops, ONNX Runtime, LiteRT) before the
version is published.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.artifacts import remove_stale, remove_stale_saves, staging_folder
from digits_zoo.leaderboard import read_leaderboard
from digits_zoo.rundir import export_base, run_lock
from digits_zoo.runs import Run, library_versions, load_run
from digits_zoo.ship.keras_formats import remove_stale_conversions, write_network_files
from digits_zoo.ship.layout import (
    FORMAT_CHOICES,
    FORMAT_LABELS,
    INPUT_NAME,
    METADATA,
    MODEL_FILES,
    ONNX_MODEL,
    PARTIAL_PREFIX,
    SIGNATURE,
    check_base_folder,
    check_versions,
    publish_version,
)
from digits_zoo.ship.load import calibrated, load_export
from digits_zoo.ship.own_format import write_saved_model, write_skops
from digits_zoo.ship.rows import fitted_model, refit_row, row_temperature, select_row
from digits_zoo.ship.runtimes import UnloadableModel, sha256
from digits_zoo.ship.sklearn_onnx import write_sklearn_onnx
from zoo.calibration import expected_calibration_error
from zoo.data import Dataset, with_test_in_training
from zoo.ensemble import is_network
from zoo.errors import ZooError
from zoo.files import atomic_write_text
from zoo.pictures import recipe_from_counts
from zoo.protocol import config_json

# How far the reloaded export's probabilities may drift from the in-memory model's, in
# every format (float32 throughout; measured at most 1e-6: 6e-8 for networks in ONNX and
# LiteRT, 8e-7 for scikit-learn models in ONNX, which compute in float64 in memory).
TOLERANCE = 1e-5
# The same for a LiteRT file with int8 weights (--quantize); its classes may then differ from
# the in-memory model's where two classes are this close (measured: at most 0.01).
QUANTIZED_TOLERANCE = 0.05
# The runtime that checks (and runs) each format, by package name.
RUNTIMES = {
    "tf_saved_model": "tensorflow",
    "skops": "skops",
    "onnx": "onnxruntime",
    "litert": "ai-edge-litert",
}


class ExportVerificationError(ZooError):
    """The reloaded export does not predict what the in-memory model predicts."""


@dataclass
class ExportResult:
    """What one export wrote and measured.

    Attributes:
        path: the version folder, such as ``OUT/3``.
        version: its number.
        metadata: the contents of its ``metadata.json``.
    """

    path: Path
    version: int
    metadata: dict[str, Any]

    @property
    def format(self) -> str:
        """The model's own format: ``tf_saved_model`` or ``skops``."""
        return self.metadata["format"]

    @property
    def formats(self) -> dict[str, dict[str, Any]]:
        """Every format the version holds (its own first), each with its file and its check."""
        return self.metadata["formats"]


def portable_formats(
    format: str, *, network: bool, name: str, quantize: bool = False
) -> tuple[str, ...]:
    """The portable formats an export writes beside the model's own, for a ``--format`` choice.

    Args:
        format: ``savedmodel``, ``onnx``, ``litert`` or ``all``.
        network: whether the model is a Keras network (LiteRT is for networks only).
        name: the model's name, for messages.
        quantize: LiteRT with int8 weights; needs LiteRT among the formats.

    Returns:
        Some of ``onnx`` and ``litert``; ``all`` gives a scikit-learn model ONNX only.

    Raises:
        ZooError: an unknown choice, LiteRT for a scikit-learn model, or
            ``quantize`` without LiteRT.
    """
    if format not in FORMAT_CHOICES:
        raise ZooError(f"--format must be one of {', '.join(FORMAT_CHOICES)} (got {format!r})")
    if format == "litert" and not network:
        raise ZooError(
            f"LiteRT export is for networks only (got {name}, a scikit-learn model); export "
            "it with --format onnx, which ONNX Runtime runs on phones, in browsers and in C++, "
            "C# and Java"
        )
    chosen = tuple(f for f in FORMAT_CHOICES[format] if network or f != "litert")
    if quantize and "litert" not in chosen:
        raise ZooError(
            "--quantize makes a LiteRT file with int8 weights, which this export does not "
            f"write (got --format {format} for {name}, "
            f"{'a network' if network else 'a scikit-learn model'}); "
            + ("pass --format litert or all" if network else "drop --quantize")
        )
    return chosen


def export_run(
    run_dir: str | Path,
    *,
    rank: int | None = None,
    model: str | None = None,
    out: str | Path | None = None,
    format: str = "savedmodel",
    quantize: bool = False,
    refit_full: bool = False,
    progress: Callable[[str], None] = print,
) -> ExportResult:
    """Exports one leaderboard row of a run as a new, verified version.

    Args:
        run_dir: the run directory.
        rank: export the row of this rank instead of the best Keras row.
        model: export the row of this model name instead.
        out: the export's base folder (default ``RUN_DIR/export/<model>``).
        format: the portable files to add beside the model's own format
            (see :func:`portable_formats`): ``savedmodel`` (none), ``onnx``,
            ``litert`` or ``all``.
        quantize: the LiteRT file with int8 weights (dynamic range).
        refit_full: refit the chosen row's configuration on every labelled digit
            of the run (training and test parts, as AutoGluon's ``refit_full``);
            the metadata says so (``refit_full``), and the export's own test
            figure is then not held out (``verification.test_held_out``).
        progress: receives one line per step worth telling.

    Returns:
        The written version. With neither ``rank`` nor ``model`` and no Keras
        row on the leaderboard, its best row is exported (and ``progress``
        says so).

    Raises:
        ZooError: a bad choice of row, no run there, another digits-zoo process
            writing the run, or an export that failed its own check (nothing
            is left behind then).
    """
    if rank is not None and (isinstance(rank, bool) or rank < 1):
        raise ZooError(f"--rank must be a positive integer (got {rank})")
    # An unknown choice is refused before the run is opened; one the row's kind cannot have,
    # once the row is known, still before any refit.
    if format not in FORMAT_CHOICES:
        portable_formats(format, network=True, name="the model")
    run = load_run(run_dir)
    # One writer per run (export, search, baselines, report): a refit saves into
    # models/ and the default export base is inside the run.
    with run_lock(run.path):
        return _export_locked(run, rank, model, out, format, quantize, refit_full, progress)


def _export_locked(
    run: Run,
    rank: int | None,
    model: str | None,
    out: str | Path | None,
    format: str,
    quantize: bool,
    refit_full: bool,
    progress: Callable[[str], None],
) -> ExportResult:
    remove_stale_saves(run.path)
    rows = read_leaderboard(run.path)
    if not rows:
        raise ZooError(
            f"the leaderboard of {str(run.path)!r} is empty; run digits-zoo baselines or search "
            "with this --run-dir first"
        )
    if rank is None and model is None and not any(row["kind"] == "keras" for row in rows):
        # A leaderboard of baselines only still has a winner worth shipping.
        rank = 1
        progress(
            f"the leaderboard has no keras row; exporting its best row, {rows[0]['model']} "
            f"({rows[0]['kind']}), instead (run digits-zoo search for networks)"
        )
    row = select_row(rows, rank=rank, model=model)
    network = row["kind"] == "keras"
    portable_formats(format, network=network, name=row["model"], quantize=quantize)
    if format == "all" and not network:
        progress(f"{row['model']} is a scikit-learn model: --format all writes ONNX, not LiteRT")
    base = Path(out) if out is not None else export_base(run.path, row["model"])
    check_base_folder(base)
    # Refused before a refit, not after it.
    check_versions(base)
    dataset = run.dataset
    if refit_full:
        dataset = with_test_in_training(run.dataset)
        progress(
            f"{row['model']}: refitting it on all {len(dataset.y_train)} labelled digits "
            f"({len(run.dataset.y_train)} training, {len(run.dataset.y_test)} test)"
        )
        estimator, refit = refit_row(replace(run, dataset=dataset), row), True
    else:
        estimator, refit = fitted_model(run, row, progress)
    calibration = row_temperature(run, row, estimator)
    info = {
        # Applied to the probabilities by load_export, not inside the model file.
        "temperature": calibration.pop("temperature"),
        # The strangers' temperature and gate, applied with it (null: none fitted).
        "stranger_calibration": calibration.pop("stranger", None),
        "calibration": calibration,
        "config": json.loads(row["config"] or "{}"),
        "seed": run.seed,
        # What rebuilds the training data (digits-zoo adapt): the run's sources and split.
        "data": {"sources": run.meta["data"], "test_size": run.meta["test_size"]},
        "refit": refit,
        "scores": {
            "cv_accuracy_mean": row["cv_accuracy_mean"],
            "cv_accuracy_std": row["cv_accuracy_std"],
            "cv_folds": json.loads(row.get("cv_folds") or "[]"),
            "n_folds": run.n_folds,
            "test_accuracy": row["test_accuracy"],
            "test_macro_f1": row["test_macro_f1"],
        },
        "source": {
            "run_dir": str(run.path.resolve()),
            "leaderboard_rank": row["rank"],
            "model_path": row.get("model_path") or None,
        },
    }
    if refit_full:
        info["refit_full"] = {
            "rows": int(len(dataset.y_train)),
            "training_rows": int(len(run.dataset.y_train)),
            "test_rows": int(len(run.dataset.y_test)),
        }
    result = export_estimator(
        estimator,
        dataset,
        base,
        name=row["model"],
        kind=row["kind"],
        info=info,
        format=format,
        quantize=quantize,
    )
    measured = result.metadata["verification"]["test_accuracy"]
    if refit_full:
        progress(
            f"note: refit on the test split too, it scores {measured:.6f} there (not held "
            f"out); the protocol's held-out figure for this row is {row['test_accuracy']:.6f}"
        )
    elif round(measured, 6) != round(float(row["test_accuracy"]), 6):
        progress(
            f"note: the exported model scores {measured:.6f} on the test split, the leaderboard "
            f"recorded {row['test_accuracy']:.6f}"
            + (" (the refit did not reproduce the original fit)" if refit else "")
        )
    return result


def export_estimator(
    estimator: Any,
    dataset: Dataset,
    out: str | Path,
    *,
    name: str,
    kind: str | None = None,
    info: dict[str, Any] | None = None,
    reference: Any = None,
    tolerance: float = TOLERANCE,
    format: str = "savedmodel",
    quantize: bool = False,
) -> ExportResult:
    """Writes a fitted model as the next version under ``out``, checks it, then publishes it.

    Keras networks become a SavedModel with the preprocessing inside (see
    :func:`digits_zoo.ship.own_format.write_saved_model`); scikit-learn models
    a skops file. ``format`` adds ONNX and LiteRT files beside it, with the
    same input and outputs.
    Each written file is reloaded from disk by its own runtime and must
    predict, on ``dataset.x_test``, the classes ``reference`` predicts, with
    probabilities within ``tolerance`` (a LiteRT file with int8 weights: within
    :data:`QUANTIZED_TOLERANCE`, its classes free to differ where the in-memory
    model's top two are that close).

    Args:
        estimator: a fitted zoo classifier (trained on ``dataset.scale``-d pixels).
        dataset: the data it was trained on; gives image shape, pixel range
            and the held-out test split for the check.
        out: the export's base folder.
        name: the model's name.
        kind: ``keras`` or ``sklearn`` (guessed from the estimator when ``None``).
        info: more metadata (config, scores, seed, source), merged in; its
            ``temperature`` (default 1) is what the loaded export divides the
            model's log-probabilities by (see :mod:`zoo.calibration`).
        reference: the model whose predictions the export must reproduce
            (default: ``estimator``).
        tolerance: the largest allowed probability difference (float formats).
        format: ``savedmodel`` (the model's own format only), ``onnx``,
            ``litert`` or ``all`` (see :func:`portable_formats`).
        quantize: write the LiteRT file with int8 weights (dynamic range).

    Returns:
        The published version.

    Raises:
        ExportVerificationError: a reloaded file disagrees; nothing is published.
        ZooError: ``out`` holds a numbered folder without its metadata (not
            ours; TensorFlow Serving would serve it), a format this model
            cannot have, or a converter that failed.
    """
    is_keras = is_network(estimator)
    portable = portable_formats(format, network=is_keras, name=name, quantize=quantize)
    base = Path(out)
    check_base_folder(base)
    base.mkdir(parents=True, exist_ok=True)
    # Hidden folders no running export holds are leftovers of killed ones, and so are
    # conversion folders in the system's temporary folder.
    remove_stale(base, PARTIAL_PREFIX)
    remove_stale_conversions()
    check_versions(base)
    metadata = _metadata(estimator, dataset, name, kind or ("keras" if is_keras else "sklearn"))
    metadata.update(info or {})
    metadata.setdefault("temperature", 1.0)
    if metadata.get("stranger_calibration") is None:
        metadata.pop("stranger_calibration", None)
    with staging_folder(base, PARTIAL_PREFIX) as partial:
        # mkdtemp makes a private folder; a published version is readable like any other file.
        partial.chmod(0o755)
        if is_keras:
            write_saved_model(estimator, partial, dataset.image_shape, dataset.pixel_max)
        else:
            write_skops(estimator, partial)
        own = metadata["format"]
        metadata["formats"] = {own: _format_record(own, partial, network=is_keras)}
        if is_keras and portable:
            write_network_files(
                estimator, partial, portable, pixel_max=dataset.pixel_max, quantize=quantize
            )
        elif portable:
            write_sklearn_onnx(estimator, partial / ONNX_MODEL, pixel_max=dataset.pixel_max)
        for each in portable:
            quantized = quantize and each == "litert"
            metadata["formats"][each] = _format_record(
                each, partial, network=is_keras, dataset=dataset, quantized=quantized
            )
        atomic_write_text(partial / METADATA, json.dumps(metadata, indent=2) + "\n")
        reference = estimator if reference is None else reference
        scaled_test = dataset.scale(dataset.x_test)
        expected_classes = np.asarray(reference.predict(scaled_test))
        raw_probabilities = np.asarray(reference.predict_proba(scaled_test))
        # The loaded export applies the temperature; the check compares calibrated to calibrated.
        expected_probabilities = calibrated(metadata, raw_probabilities, dataset.x_test)
        expected_accuracy = float(np.mean(expected_classes == dataset.y_test))
        classes = np.asarray(reference.classes_)
        metadata["calibration"] = {
            **metadata.get("calibration", {}),
            "test_ece_before": expected_calibration_error(
                raw_probabilities, dataset.y_test, classes
            ),
            "test_ece_after": expected_calibration_error(
                expected_probabilities, dataset.y_test, classes
            ),
        }
        for each, record in metadata["formats"].items():
            quantized = record.get("quantization") is not None
            check = verify_export(
                partial,
                dataset.x_test,
                expected_classes,
                expected_probabilities,
                tolerance=QUANTIZED_TOLERANCE if quantized else tolerance,
                format=each,
                labels=dataset.y_test,
                allow_class_changes=quantized,
            )
            if quantized:
                check["accuracy_change"] = check["test_accuracy"] - expected_accuracy
            record["verification"] = check
        # The model's own format's check, where exports before portable formats kept it.
        metadata["verification"] = {
            **metadata["formats"][metadata["format"]]["verification"],
            "test_accuracy": expected_accuracy,
            # A model refit on every labelled digit has seen the test split.
            "test_held_out": not metadata.get("refit_full"),
        }
        atomic_write_text(partial / METADATA, json.dumps(metadata, indent=2) + "\n")
        # On success the folder is renamed away; on any failure nothing stays behind.
        return ExportResult(*publish_version(partial, base), metadata)


def _package_version(package: str) -> str:
    # TensorFlow installs as tensorflow-cpu here, as tensorflow elsewhere.
    for name in (package, "tensorflow-cpu") if package == "tensorflow" else (package,):
        try:
            return version(name)
        except PackageNotFoundError:
            pass
    return "not installed"


def _format_record(
    format: str,
    folder: Path,
    *,
    network: bool,
    dataset: Dataset | None = None,
    quantized: bool = False,
) -> dict[str, Any]:
    """What ``metadata.json`` says of one format's file: its name and runtime and, for a
    portable file (``dataset`` given), its size, checksum, converter and signature."""
    runtime = RUNTIMES[format]
    record: dict[str, Any] = {
        "file": MODEL_FILES[format],
        "runtime": f"{runtime} {_package_version(runtime)}",
    }
    if dataset is None:
        return record
    if not network:
        converter = f"skl2onnx {_package_version('skl2onnx')}"
    elif format == "onnx":
        converter = f"keras {_package_version('keras')} (tensorflow backend, tf2onnx {_package_version('tf2onnx')})"
    else:
        converter = f"keras {_package_version('keras')} (tensorflow backend, TFLite converter)"
    data = (folder / MODEL_FILES[format]).read_bytes()
    record.update(
        {
            "bytes": len(data),
            "sha256": sha256(data),
            "converter": converter,
            "inputs": {
                INPUT_NAME: f"float32 [n, {dataset.n_features}], raw pixel values "
                f"0..{dataset.pixel_max:g} as the dataset stores them"
            },
            "outputs": {
                "probabilities": "float32 [n, n_classes], columns in 'classes' order",
                "class": "int64 [n], the most probable class label",
            },
        }
    )
    if format == "litert":
        record["quantization"] = "dynamic_range_int8" if quantized else None
    return record


def _metadata(estimator: Any, dataset: Dataset, name: str, kind: str) -> dict[str, Any]:
    classes = [int(c) for c in estimator.classes_]
    is_keras = is_network(estimator)
    image = "x".join(str(s) for s in dataset.image_shape)
    metadata = {
        "format": "tf_saved_model" if is_keras else "skops",
        "model": name,
        "kind": kind,
        "estimator": f"{type(estimator).__module__}.{type(estimator).__name__}",
        "dataset": {
            "name": dataset.name,
            "image_shape": [int(s) for s in dataset.image_shape],
            "n_features": int(dataset.n_features),
            "pixel_max": float(dataset.pixel_max),
            "fingerprint": dataset.fingerprint(),
            "n_train": int(len(dataset.y_train)),
            "n_test": int(len(dataset.y_test)),
            "test_source": dataset.test_source,
            "split_seed": dataset.split_seed,
        },
        "classes": classes,
        "class_names": [str(c) for c in classes],
        "config": json.loads(config_json(estimator)),
        "input": (
            f"raw pixel values 0..{dataset.pixel_max:g} as the dataset stores them, float32, "
            f"shaped [n, {dataset.n_features}], [n, {image.replace('x', ', ')}] or with a "
            "trailing 1 (channel); a single image may leave out n"
        ),
        "signature": (
            {
                "name": SIGNATURE,
                "inputs": {"pixels": "float32, any of the shapes above"},
                "outputs": {
                    "probabilities": f"float32 [n, {len(classes)}], columns in 'classes' order",
                    "class": "int64 [n], the most probable class label",
                },
            }
            if is_keras
            else None
        ),
        "versions": library_versions(),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # Counted bitmaps: a picture is sheared to the training data's mean slant (a picture read
    # for a prediction, to each class's too) and its strokes thickened to their mean ink
    # (digits_zoo.ship.load.picture_recipe reads it back for every picture path).
    recipe = recipe_from_counts(
        dataset.x_train, dataset.image_shape, dataset.pixel_max, dataset.y_train
    )
    if recipe is not None and np.unique(dataset.y_train).tolist() != [int(c) for c in classes]:
        recipe = replace(recipe, class_slants=None)
    if recipe is not None:
        metadata["picture_recipe"] = recipe.to_dict()
    return metadata


def verify_export(
    folder: str | Path,
    x_raw: np.ndarray,
    expected_classes: np.ndarray,
    expected_probabilities: np.ndarray,
    *,
    tolerance: float = TOLERANCE,
    format: str | None = None,
    labels: np.ndarray | None = None,
    allow_class_changes: bool = False,
) -> dict[str, Any]:
    """Reloads a written export from disk and checks it predicts what was expected.

    The export is loaded the way ``digits-zoo predict`` loads it
    (:func:`digits_zoo.ship.load.load_export`), by its format's own runtime: a
    SavedModel with ``tf.saved_model.load`` and called through its
    ``serving_default`` signature on the raw pixels, a skops file trusting
    only the types of the zoo's own scikit-learn models, an ONNX file with
    ONNX Runtime, a LiteRT file with LiteRT's interpreter.

    Args:
        folder: the version folder (with its ``metadata.json``).
        x_raw: raw pixel rows, as the dataset stores them.
        expected_classes, expected_probabilities: the in-memory model's output.
        tolerance: the largest allowed probability difference.
        format: the format to check (default: the model's own).
        labels: the true labels of ``x_raw``; the summary then has the file's
            own ``test_accuracy``.
        allow_class_changes: classes may differ (a quantized file); the
            probabilities must still be within ``tolerance``.

    Returns:
        A summary: rows checked, classes that differ, the largest probability
        difference and the tolerance (and ``test_accuracy`` with ``labels``).

    Raises:
        ExportVerificationError: different classes, or probabilities too far apart.
    """
    try:
        export = load_export(folder, format=format)
    except UnloadableModel as error:
        written = format or json.loads((Path(folder) / METADATA).read_text())["format"]
        raise ExportVerificationError(
            f"the written {FORMAT_LABELS[written]} file does not load in {RUNTIMES[written]} "
            f"({error.reason}); the export was deleted"
        ) from None
    what = f"the reloaded {FORMAT_LABELS[export.format]} file ({RUNTIMES[export.format]})"
    probabilities, classes = export.predict_proba(x_raw)
    expected_probabilities = np.asarray(expected_probabilities)
    if probabilities.shape != expected_probabilities.shape:
        raise ExportVerificationError(
            f"{what} returns probabilities of shape {probabilities.shape}, the "
            f"in-memory model {expected_probabilities.shape}; the export was deleted"
        )
    difference = float(np.max(np.abs(probabilities - expected_probabilities), initial=0.0))
    mismatched = int(np.sum(classes != np.asarray(expected_classes)))
    if (mismatched and not allow_class_changes) or not difference <= tolerance:
        raise ExportVerificationError(
            f"{what} disagrees with the in-memory model on the test split "
            f"({mismatched} of {len(probabilities)} classes differ, largest probability "
            f"difference {difference:.3g}, allowed {tolerance:g}); the export was deleted"
        )
    summary = {
        "rows": int(len(probabilities)),
        "classes_equal": not mismatched,
        "classes_differ": mismatched,
        "max_probability_difference": difference,
        "tolerance": tolerance,
    }
    if labels is not None:
        summary["test_accuracy"] = float(np.mean(classes == np.asarray(labels)))
    return summary
