"""ONNX and LiteRT files of a dense network, written by Keras's own ``model.export``.

What Keras 3 needs for each format depends on its backend, and Keras picks
its backend once per process. On TensorFlow, ``format="onnx"`` converts the
model's TensorFlow function with tf2onnx and ``format="litert"`` with
TensorFlow's own TFLite converter: one small package (tf2onnx) beyond what a
SavedModel already needs. On JAX, the backend digits-zoo trains on,
``format="litert"`` is refused and ``format="onnx"`` needs jax2onnx, which
brings flax, orbax, tensorstore, the Hugging Face hub client and a model
viewer (35 packages). So the network is saved to a temporary ``.keras`` file
and converted in a child Python process with ``KERAS_BACKEND=tensorflow``;
this module is both the parent's function (:func:`write_network_files`) and
the child's program (``python -m digits_zoo.ship.keras_formats REQUEST.json``).

The child dies with its parent (it is started through
:mod:`digits_zoo.ship.child_process`), so an export killed with ``kill -9``
leaves no conversion writing into its staging folder. The temporary folder
of the ``.keras`` file (``digits-zoo-convert-*`` in the system's temporary
folder) is locked while in use; one whose export was killed is removed by
the next export (:func:`remove_stale_conversions`).

The exported function is the SavedModel's ``serving_default`` made for these
runtimes: ``pixels`` (float32 raw pixel rows, ``[n, n_features]``) in, divided
by the dataset's pixel range inside the model, and ``probabilities`` and
``class`` (the label, int64) out. The input is flat: both runtimes check a
declared shape themselves, and a reshape from any rank would accept any
multiple of the row length without a word.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.artifacts import remove_stale, staging_folder
from digits_zoo.ship import child_process
from digits_zoo.ship.layout import INPUT_NAME, LITERT_MODEL, ONNX_MODEL, OUTPUT_NAMES
from zoo.errors import ZooError

# The formats this module writes, and the file each goes to.
FILES = {"onnx": ONNX_MODEL, "litert": LITERT_MODEL}
# The most one conversion may take (measured: 10-40 s on 2 CPU cores, most of it importing
# TensorFlow).
CONVERT_TIMEOUT = 600.0
# The child's one line on failure starts with this, so the parent can tell it from the
# libraries' own chatter on stderr.
_FAILED = "conversion failed: "
# The prefix of the temporary folder a conversion works in.
CONVERT_PREFIX = "digits-zoo-convert-"


def write_network_files(
    estimator: Any,
    folder: str | Path,
    formats: Sequence[str],
    *,
    pixel_max: float,
    quantize: bool = False,
    timeout: float = CONVERT_TIMEOUT,
) -> dict[str, Path]:
    """Writes a fitted network (or ensemble) as ONNX and/or LiteRT files into ``folder``.

    Args:
        estimator: a fitted :class:`~zoo.dense.DenseNetClassifier` or
            :class:`~zoo.ensemble.DenseEnsembleClassifier`.
        folder: where the files go (``model.onnx``, ``model.tflite``).
        formats: some of ``onnx`` and ``litert``.
        pixel_max: the largest raw pixel value, divided by inside the model.
        quantize: LiteRT with dynamic-range int8 weights (TensorFlow's
            ``Optimize.DEFAULT``): weights stored as int8, activations quantized
            on the fly where LiteRT has integer kernels, float in and out.
        timeout: seconds the conversion may take.

    Returns:
        The written file of each format.

    Raises:
        ZooError: Keras could not convert the network, or took too long.
    """
    unknown = sorted(set(formats) - set(FILES))
    if unknown or not formats:
        raise ZooError(f"formats must be some of {sorted(FILES)} (got {list(formats)})")
    model = estimator.model_
    if hasattr(model, "to_keras"):
        # A fold member of fit_folds: its weights as the plain network.
        model = model.to_keras()
    folder = Path(folder)
    with staging_folder(tempfile.gettempdir(), CONVERT_PREFIX) as scratch:
        keras_file = Path(scratch) / "network.keras"
        model.save(keras_file)
        request = {
            "keras_file": str(keras_file),
            "folder": str(folder.resolve()),
            "formats": list(formats),
            "n_features": int(estimator.n_features_in_),
            "pixel_max": float(pixel_max),
            "classes": [int(label) for label in estimator.classes_],
            "quantize": bool(quantize),
        }
        request_file = Path(scratch) / "request.json"
        request_file.write_text(json.dumps(request), encoding="utf-8")
        try:
            completed = subprocess.run(
                child_process.command(__name__, str(request_file)),
                env=_child_environment(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ZooError(
                f"converting the network to {' and '.join(formats)} took more than {timeout:g} s "
                "and was stopped; rerun the export"
            ) from None
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        reasons = [line[len(_FAILED) :] for line in lines if line.startswith(_FAILED)]
        reason = reasons[-1] if reasons else (lines[-1] if lines else "no message")
        raise ZooError(
            f"Keras could not convert the network to {' and '.join(formats)} (got "
            f"{reason.strip()[:300]}; exit status {completed.returncode}); export without "
            "--format, or report this with the model's config"
        )
    written = {name: folder / FILES[name] for name in formats}
    missing = [str(path) for path in written.values() if not path.is_file()]
    if missing:
        raise ZooError(f"the conversion wrote no file (got none at {', '.join(missing)})")
    return written


def remove_stale_conversions() -> list[Path]:
    """Removes the ``digits-zoo-convert-*`` temporary folders of exports that were killed.

    A folder in use is locked by its export (see
    :func:`digits_zoo.artifacts.staging_folder`) and kept.

    Returns:
        The removed folders.
    """
    return remove_stale(tempfile.gettempdir(), CONVERT_PREFIX)


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["KERAS_BACKEND"] = "tensorflow"
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # The child imports this module by name: the folder digits_zoo is in goes first.
    root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join(
        [root, *filter(None, [environment.get("PYTHONPATH")])]
    )
    return environment


def convert(request: dict[str, Any]) -> None:
    """Writes the requested files; runs in the child, with Keras on TensorFlow.

    Args:
        request: what :func:`write_network_files` asks for (see its body).
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"the conversion needs Keras on TensorFlow (got {keras.backend.backend()})"
        )
    # The file was written by the parent a moment ago from its own fitted model.
    network = keras.saving.load_model(request["keras_file"], compile=False)
    pixel_max = float(request["pixel_max"])
    classes = np.asarray(request["classes"], dtype="int64")

    class RawPixels(keras.Model):
        """The network behind the scaling, returning the SavedModel's two outputs."""

        def __init__(self, network, **kwargs):
            super().__init__(**kwargs)
            self.network = network

        def call(self, pixels):
            probabilities = self.network(pixels / pixel_max, training=False)
            # TensorFlow's own argmax: Keras's (which orders -0.0 below 0.0) uses
            # bit operations that tf2onnx cannot convert.
            labels = tf.gather(tf.constant(classes), tf.argmax(probabilities, axis=1))
            return {OUTPUT_NAMES[0]: probabilities, OUTPUT_NAMES[1]: labels}

    model = RawPixels(network, name="raw_pixels")
    if "onnx" in request["formats"]:
        _teach_tf2onnx_erfc()
    signature = [tf.TensorSpec((None, request["n_features"]), tf.float32, name=INPUT_NAME)]
    model(np.zeros((1, request["n_features"]), "float32"))
    folder = Path(request["folder"])
    if "onnx" in request["formats"]:
        model.export(
            str(folder / FILES["onnx"]), format="onnx", input_signature=signature, verbose=False
        )
    if "litert" in request["formats"]:
        # Builtin operators only: the file then runs in any LiteRT runtime, which need not
        # carry TensorFlow's own operators (Keras allows them by default).
        options: dict[str, Any] = {
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
        }
        if request["quantize"]:
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        model.export(
            str(folder / FILES["litert"]),
            format="litert",
            input_signature=signature,
            verbose=False,
            **options,
        )


def _teach_tf2onnx_erfc() -> None:
    """Registers a tf2onnx handler for TensorFlow's ``Erfc`` (in this process only).

    TensorFlow's exact GELU (``activation="gelu"``) computes ``0.5 * x * erfc(-x / sqrt 2)``;
    ONNX has ``Erf`` but no ``Erfc``, and tf2onnx 1.17 copies the node unconverted (a graph
    ONNX Runtime refuses). ``erfc(x) = 1 - erf(x)`` in float32 is off by at most about
    1e-7 where ``erfc`` is small, far inside the export's tolerance.
    """
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    # The decorator registers the handler with tf2onnx.
    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.ones((), dtype))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            node.type = "Sub"
            ctx.replace_inputs(node, [one.output[0], erf.output[0]])


def main(argv: Sequence[str] | None = None) -> int:
    """The child's program: converts as ``argv[0]`` (a request JSON file) asks."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        convert(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    except Exception as error:  # Any failure becomes one line for the parent.
        text = str(error).strip().splitlines()
        print(f"{_FAILED}{type(error).__name__}: {text[0] if text else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
