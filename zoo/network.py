"""The Keras network builder and optimizer for a DenseConfig.

Keras is imported inside the functions: it is a heavy library (and it picks
its backend when first imported), so ``import zoo`` stays free of it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from zoo.errors import ZooError
from zoo.space import DenseConfig
from zoo.validation import square_side

# The convolutional stem: 3x3 kernels, "same" padding, 2x2 max pooling after each pair.
CONV_KERNEL = 3
CONV_MIN_SIDE = 4


def conv_stem_layout(filters: int) -> tuple[int, ...]:
    """The filters of each convolution of a stem of ``filters``: two of them, pooling, two
    of twice as many, pooling (the classic small net for 28x28 digits, kept at 8x8)."""
    return (filters, filters, 2 * filters, 2 * filters)


class StemConvolution(NamedTuple):
    """One convolution of a stem: the side of the picture it reads, its input channels, its
    filters, and whether 2x2 max pooling follows it."""

    side: int
    channels: int
    filters: int
    pooled: bool


def conv_stem(filters: int, input_dim: int) -> list[StemConvolution]:
    """The convolutions of a stem of ``filters`` over rows of ``input_dim`` pixels, in order.

    Raises:
        ZooError: the rows are not square pictures of side 4 or more (:func:`picture_side`).
    """
    side, channels, stem = picture_side(input_dim), 1, []
    for index, out in enumerate(conv_stem_layout(filters)):
        pooled = index % 2 == 1
        stem.append(StemConvolution(side, channels, out, pooled))
        channels = out
        side = side // 2 if pooled else side
    return stem


def picture_side(input_dim: int) -> int:
    """The side of the square picture a convolutional stem reads a flat row as.

    Raises:
        ZooError: ``input_dim`` is not the square of a side of at least 4.
    """
    side = square_side(input_dim, CONV_MIN_SIDE)
    if side is None:
        raise ZooError(
            f"conv_filters needs square pictures of at least {CONV_MIN_SIDE}x{CONV_MIN_SIDE} "
            f"pixels (got rows of {input_dim} features); use conv_filters=0 for other data"
        )
    return side


def stem_output_dim(filters: int, input_dim: int) -> int:
    """The features a stem of ``filters`` hands the hidden layers for rows of ``input_dim``."""
    last = conv_stem(filters, input_dim)[-1]
    side = last.side // 2 if last.pooled else last.side
    return side * side * last.filters


class TrainingDiverged(ArithmeticError):
    """Training produced a non-finite loss (the learning rate is usually too high)."""


def build_dense_model(
    config: DenseConfig,
    input_dim: int,
    n_classes: int,
    weights: dict[str, list[np.ndarray]] | None = None,
    seed: int | None = None,
):
    """Builds and compiles the dense network a config describes.

    The network takes flat inputs already scaled to ``[0, 1]`` and returns
    class probabilities (softmax). With ``config.conv_filters`` the flat row is
    first read as a square picture by a convolutional stem
    (:func:`conv_stem`), whose flattened output feeds the hidden layers.

    Args:
        config: the hyperparameters.
        input_dim: number of input features (64 for the bundled 8x8 digits).
        n_classes: number of classes.
        weights: optional trained weights by layer name (``conv_0``, ``hidden_0``,
            ``batch_norm_0``, ``layer_norm_0``, ``probabilities``), in each
            layer's Keras order, to start from instead of fresh ones.
        seed: seeds the dropout layers (``None``: Keras's global seed).

    Returns:
        A compiled ``keras.Model`` trained with one-hot targets.
    """
    import keras

    if input_dim < 1 or n_classes < 2:
        raise ZooError(
            f"a dense net needs at least 1 input and 2 classes (got {input_dim} inputs, "
            f"{n_classes} classes)"
        )
    # Keras's random initializers compile a JAX function per new kernel shape
    # (a second or more for a whole network); weights about to be replaced
    # start as zeros instead, and get the usual initializer back afterwards.
    kernel_initializer = "glorot_uniform" if weights is None else "zeros"
    regularizer = keras.regularizers.L2(config.l2) if config.l2 else None
    inputs = keras.Input(shape=(input_dim,), name="pixels")
    x = inputs
    if config.conv_filters:
        stem = conv_stem(config.conv_filters, input_dim)
        side = stem[0].side
        x = keras.layers.Reshape((side, side, 1), name="picture")(x)
        for index, convolution in enumerate(stem):
            x = keras.layers.Conv2D(
                convolution.filters,
                CONV_KERNEL,
                padding="same",
                data_format="channels_last",
                kernel_initializer=kernel_initializer,
                kernel_regularizer=regularizer,
                name=f"conv_{index}",
            )(x)
            x = keras.layers.Activation(
                config.activation, name=f"conv_{config.activation}_{index}"
            )(x)
            if convolution.pooled:
                x = keras.layers.MaxPooling2D(
                    2, data_format="channels_last", name=f"pool_{index // 2}"
                )(x)
        x = keras.layers.Flatten(data_format="channels_last", name="flatten")(x)
    for index in range(config.n_layers):
        x = keras.layers.Dense(
            config.units,
            use_bias=config.normalization == "none",
            kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer,
            name=f"hidden_{index}",
        )(x)
        if config.normalization == "batch":
            x = keras.layers.BatchNormalization(name=f"batch_norm_{index}")(x)
        elif config.normalization == "layer":
            x = keras.layers.LayerNormalization(name=f"layer_norm_{index}")(x)
        x = keras.layers.Activation(config.activation, name=f"{config.activation}_{index}")(x)
        if config.dropout_rate:
            x = keras.layers.Dropout(
                config.dropout_rate,
                seed=None if seed is None else int(seed) + index,
                name=f"dropout_{index}",
            )(x)
    outputs = keras.layers.Dense(
        n_classes,
        activation="softmax",
        kernel_initializer=kernel_initializer,
        name="probabilities",
    )(x)
    model = keras.Model(inputs, outputs, name=f"dense_{config.n_layers}x{config.units}")
    if weights is not None:
        for name, values in weights.items():
            layer = model.get_layer(name)
            layer.set_weights(values)
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
                layer.kernel_initializer = keras.initializers.GlorotUniform()
    compile_dense(model, config)
    return model


def compile_dense(
    model, config: DenseConfig, total_steps: int | None = None, learning_rate: float | None = None
) -> None:
    """Compiles a dense network as its config trains it: a fresh optimizer
    (:func:`make_optimizer`), cross-entropy on one-hot targets with the config's label
    smoothing, and accuracy."""
    import keras

    model.compile(
        optimizer=make_optimizer(config, total_steps, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


def make_optimizer(
    config: DenseConfig, total_steps: int | None = None, learning_rate: float | None = None
):
    """Returns the Keras optimizer a config names, at its learning rate.

    Args:
        config: the hyperparameters.
        total_steps: the training steps of the whole fit; with
            ``lr_schedule="cosine"`` the rate decays from ``learning_rate``
            to zero over them (without it the rate is held, as for a
            network compiled only to be saved or exported).
        learning_rate: the rate to start at instead of the config's (fine-tuning's smaller one).
    """
    import keras

    start = config.learning_rate if learning_rate is None else float(learning_rate)
    rate: Any = start
    if config.lr_schedule == "cosine" and total_steps:
        rate = keras.optimizers.schedules.CosineDecay(start, decay_steps=int(total_steps))
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=0.9),
    }
    return optimizers[config.optimizer](learning_rate=rate)
