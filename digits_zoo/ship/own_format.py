"""Each model's own export format: a network as a SavedModel, a scikit-learn model as skops.

The SavedModel takes raw pixels and holds the scaling and the reshaping, so
that TensorFlow Serving can serve it as it is; the skops file holds the fitted
estimator without pickle. Portable files beside them are written by
:mod:`digits_zoo.ship.keras_formats` and :mod:`digits_zoo.ship.sklearn_onnx`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.ship.layout import SIGNATURE, SKOPS_MODEL
from zoo.dense import DenseNetClassifier
from zoo.ensemble import DenseEnsembleClassifier
from zoo.errors import ZooError


def write_saved_model(
    estimator: DenseNetClassifier | DenseEnsembleClassifier,
    folder: str | Path,
    image_shape: tuple[int, ...],
    pixel_max: float,
) -> None:
    """Writes a fitted dense network as a SavedModel that takes raw pixels.

    The ``serving_default`` signature takes ``pixels`` (float32, raw values
    ``0..pixel_max``) flat as ``[n, n_features]`` or as images ``[n, *image_shape]``
    or ``[n, *image_shape, 1]``, divides by ``pixel_max`` itself and returns
    ``probabilities`` (float32 ``[n, n_classes]``) and ``class`` (int64
    labels). The network itself is converted from JAX with jax2tf (for CPU and
    CUDA) by Keras's ``ExportArchive`` (on the TensorFlow backend it is traced
    as it is); the reshaping and scaling around it are TensorFlow ops, since
    jax2tf needs inputs of a known rank. Keras also
    publishes the bare network as a second signature, ``network`` (flat
    pixels already scaled to ``[0, 1]``).

    Args:
        estimator: the fitted network.
        folder: where to write (it may exist and be empty).
        image_shape: the shape of one image, such as ``(8, 8)``.
        pixel_max: the largest raw pixel value (16 for the bundled digits).
    """
    import keras
    import tensorflow as tf

    n_features = int(estimator.n_features_in_)
    if int(np.prod(image_shape)) != n_features:
        raise ZooError(
            f"image shape {tuple(image_shape)} does not hold the network's {n_features} inputs"
        )
    archive = keras.export.ExportArchive()
    # On JAX the network is converted by jax2tf: no gradients are served, and exporting for
    # both platforms lets an export made on one kind of machine serve on the other. On
    # TensorFlow (KERAS_BACKEND=tensorflow) it is TensorFlow already; Keras refuses the options.
    jax_options = (
        {
            "jax2tf_kwargs": {
                "with_gradient": False,
                "native_serialization_platforms": ("cpu", "cuda"),
            }
        }
        if keras.backend.backend() == "jax"
        else {}
    )
    network = archive.track_and_add_endpoint(
        "network",
        estimator.model_,
        input_signature=[tf.TensorSpec((None, n_features), tf.float32, name="scaled_pixels")],
        **jax_options,
    )
    classes = tf.constant(np.asarray(estimator.classes_, dtype="int64"))
    accepted = [(n_features,), tuple(image_shape), (*image_shape, 1)]
    depth = max(len(shape) for shape in accepted)
    shapes_text = " or ".join(str(list(shape)) for shape in accepted)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="pixels")], autograph=False)
    def serve(pixels):
        shape = tf.shape(pixels, out_type=tf.int64)
        # Zeros in front give every shape at least `depth` entries to compare.
        padded = tf.concat([tf.zeros([depth], tf.int64), shape], axis=0)
        fits = tf.constant(False)
        for trailing in accepted:
            match = tf.reduce_all(tf.equal(padded[-len(trailing) :], trailing))
            fits = tf.logical_or(fits, match)
        check = tf.debugging.Assert(
            fits, [f"pixels must end in shape {shapes_text}; got shape", shape]
        )
        with tf.control_dependencies([check]):
            flat = tf.reshape(pixels, [-1, n_features])
        probabilities = network(flat / tf.constant(pixel_max, tf.float32))
        return {
            "probabilities": probabilities,
            "class": tf.gather(classes, tf.argmax(probabilities, axis=1)),
        }

    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(folder), verbose=False)


def write_skops(estimator: Any, folder: str | Path) -> None:
    """Writes a fitted scikit-learn model as ``folder/model.skops``."""
    import skops.io

    skops.io.dump(estimator, Path(folder) / SKOPS_MODEL)
