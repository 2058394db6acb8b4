"""Subcommands ``export``, ``predict`` and ``evaluate``: shipping the winner."""

from __future__ import annotations

import argparse
import json

from digits_zoo.ship.evaluate import evaluate_export, format_confusion
from digits_zoo.ship.export import export_run
from digits_zoo.ship.inputs import predict_inputs
from digits_zoo.ship.layout import FORMAT_CHOICES, FORMAT_LABELS
from digits_zoo.ship.load import load_export
from zoo.errors import ZooError

EXPORT_DIR_HELP = (
    "an export's base folder (its newest version is used), one version folder, or one model "
    "file in a version folder (model.onnx, model.tflite) to run that file"
)


def register(subparsers) -> None:
    """Adds the ``export``, ``predict`` and ``evaluate`` subcommands."""
    export = subparsers.add_parser(
        "export",
        help="export a leaderboard model as a verified, versioned SavedModel (or skops file), "
        "with ONNX and LiteRT files beside it on request",
        description="Exports the best Keras row of a run's leaderboard (or the row chosen by "
        "--rank or --model) as the next version under --out, in the TensorFlow Serving layout, "
        "and checks each reloaded file, with its own runtime, against the in-memory model on "
        "the test split.",
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    choice = export.add_mutually_exclusive_group()
    choice.add_argument("--rank", type=int, help="export the row of this leaderboard rank")
    choice.add_argument("--model", help="export the row of this model name")
    export.add_argument(
        "--out", default=None, help="the export's base folder (default RUN_DIR/export/<model>)"
    )
    export.add_argument(
        "--format",
        choices=tuple(FORMAT_CHOICES),
        default="savedmodel",
        help="savedmodel: the model's own format only (a SavedModel, or skops for scikit-learn "
        "rows); onnx, litert or all: also model.onnx / model.tflite beside it, in the same "
        "version (LiteRT for networks only; all gives scikit-learn rows ONNX)",
    )
    export.add_argument(
        "--quantize",
        action="store_true",
        help="the LiteRT file with int8 weights (dynamic range): about a quarter of the size; "
        "the accuracy change on the test split is printed",
    )
    export.add_argument(
        "--refit-full",
        action="store_true",
        help="refit the chosen row on every labelled digit of the run (training and test "
        "split; for optdigits all 43 writers), as AutoGluon's refit_full; its own test figure "
        "is then not held out, and the metadata says so",
    )
    export.set_defaults(handler=_export)

    predict = subparsers.add_parser(
        "predict",
        help="classify digit pictures, .npy arrays or .csv pixel rows with an export",
    )
    predict.add_argument("export_dir", metavar="EXPORT_DIR", help=EXPORT_DIR_HELP)
    predict.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        help="a PNG/JPEG picture of one digit (any size, either polarity), a .npy array or a "
        ".csv of pixel rows, in the dataset's raw pixel values",
    )
    predict.add_argument("--top", type=int, default=1, help="classes shown per input (default 1)")
    predict.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="answer 'unsure' for an input whose calibrated probability is below P (0..1)",
    )
    predict.add_argument("--format", choices=("text", "json"), default="text")
    predict.set_defaults(handler=_predict)

    evaluate = subparsers.add_parser(
        "evaluate", help="score an export on labelled data: accuracy, macro-F1, confusion matrix"
    )
    evaluate.add_argument("export_dir", metavar="EXPORT_DIR", help=EXPORT_DIR_HELP)
    evaluate.add_argument(
        "--data",
        required=True,
        help="a .csv in the optdigits layout (pixels, then the label), a .npz or an MNIST IDX "
        "folder (their test part is used)",
    )
    evaluate.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="also print the share of rows answered at calibrated probability P or above "
        "(the coverage) and the accuracy on them",
    )
    evaluate.add_argument("--format", choices=("text", "json"), default="text")
    evaluate.set_defaults(handler=_evaluate)


def _export(args: argparse.Namespace) -> int:
    result = export_run(
        args.run_dir,
        rank=args.rank,
        model=args.model,
        out=args.out,
        format=args.format,
        quantize=args.quantize,
        refit_full=args.refit_full,
    )
    meta = result.metadata
    print(f"exported {meta['model']} ({meta['kind']}) as version {result.version}: {result.path}")
    for name, record in result.formats.items():
        check = record["verification"]
        label = FORMAT_LABELS[name] + (" (int8)" if record.get("quantization") else "")
        size = f", {record['bytes'] / 1024:,.0f} KiB" if "bytes" in record else ""
        print(f"  {label}: {record['file']}{size}")
        agreement = (
            f"the same classes as the in-memory model on all {check['rows']} test images"
            if not check["classes_differ"]
            else f"{check['classes_differ']} of {check['rows']} test classes differ from the "
            "in-memory model's"
        )
        print(
            f"    verified with {record['runtime']}: {agreement}, largest probability "
            f"difference {check['max_probability_difference']:.2g} (allowed "
            f"{check['tolerance']:g})"
        )
        if "accuracy_change" in check:
            print(
                f"    test accuracy {check['test_accuracy']:.6f} "
                f"({check['accuracy_change']:+.6f} against the in-memory model's "
                f"{meta['verification']['test_accuracy']:.6f})"
            )
    print(f"test accuracy {meta['verification']['test_accuracy']:.6f}")
    base = result.path.parent
    print(f"next: digits-zoo predict {base} digit.png   |   digits-zoo evaluate {base} --data FILE")
    for name, record in result.formats.items():
        if name in ("onnx", "litert"):
            print(f"      digits-zoo evaluate {result.path / record['file']} --data FILE")
    if result.format == "tf_saved_model":
        print(
            # The name digits-zoo serve gives it too: its base folder's.
            f"serve: tensorflow_model_server --rest_api_port=8501 --model_name="
            f"{base.resolve().name} --model_base_path={base.resolve()}"
        )
    return 0


def _predict(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ZooError(f"--top must be at least 1 (got {args.top})")
    export = load_export(args.export_dir)
    results = predict_inputs(export, args.inputs, top=args.top, min_confidence=args.min_confidence)
    if args.format == "json":
        print(json.dumps(results, indent=1))
        return 0
    width = max(len(result["input"]) for result in results)
    for result in results:
        guesses = ", ".join(
            f"{item['class']} ({item['probability']:.3f})" for item in result["top"]
        )
        if result["top"][0]["class"] != result["class"]:
            # A scikit-learn model's predict can break a tie its probabilities leave open.
            guesses = f"{result['class']} ({result['probability']:.3f}); top: {guesses}"
        if result.get("unsure"):
            guesses = f"unsure (below {args.min_confidence:g}); best guess {guesses}"
        print(f"{result['input']:<{width}}  {guesses}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    export = load_export(args.export_dir)
    scores = evaluate_export(export, args.data, min_confidence=args.min_confidence)
    if args.format == "json":
        print(json.dumps(scores, indent=1))
        return 0
    print(f"export: {export.model_file} ({scores['model']}, {FORMAT_LABELS[export.format]})")
    print(f"data:   {scores['data']}")
    print(f"accuracy  {scores['accuracy']:.6f}  ({scores['correct']}/{scores['rows']})")
    print(f"macro-F1  {scores['macro_f1']:.6f}")
    print(f"ECE       {scores['ece']:.4f}  (15 bins; temperature {scores['temperature']:.3f})")
    if "coverage" in scores:
        cover = scores["coverage"]
        print(
            f"at confidence >= {cover['min_confidence']:g}: answers {cover['answered']}/"
            f"{cover['rows']} (coverage {cover['coverage']:.4f}), accuracy "
            f"{cover['accuracy']:.6f} on them; {cover['rows'] - cover['answered']} unsure"
        )
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion(scores["labels"], scores["confusion_matrix"]))
    return 0
