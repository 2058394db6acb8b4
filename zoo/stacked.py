"""Fold-stacked dense networks: k copies of one network trained as one Keras model.

Cross-validating a configuration trains the same network k times on k
different row sets. On a CPU a small training step costs more in dispatch
than in arithmetic, and every new network costs seconds of XLA compilation,
so the zoo trains the k copies ("members") together:

* every weight has a leading member axis (a hidden kernel is
  ``(k, inputs, units)``) and a layer is one batched ``keras.ops.matmul``
  (a convolution of the optional stem too, over every pixel's neighbourhood),
  so one step advances all k fits and one compilation serves them all;
* each member draws its batches from its own training rows only: the data
  stay on the device as two non-trainable variables (features and labels)
  and a step receives row indices, ``(k, batch)``, with ``-1`` for padding
  (folds differ in size by a few rows; padded slots are masked out of the
  loss, the metrics and the batch-normalization statistics);
* an epoch is ``ceil(n / batch_size)`` steps, as in Keras, but of equal size
  (at most ``batch_size`` rows each) instead of full batches and a short
  last one, so every step has one shape: no second compilation for the
  remainder and no padded remainder batch computed in full;
* one Keras "step" is one whole epoch: the epoch's steps run in a compiled
  loop (``keras.ops.fori_loop``) and every member's validation rows are
  scored in the same call, so an epoch costs one dispatch.

The loss minimised is the sum of the members' losses, so the gradient for a
member's weights is exactly its own loss's gradient; optimizer state and
batch-normalization statistics are per member because they carry the member
axis too. Every member starts from the same initial weights and shuffles its
rows with the same seed, as separate fits with one seed would: a member
follows the path a single fit on its rows takes, up to floating-point
rounding (dropout masks are drawn for the whole stack, so with dropout the
paths differ by the dropout noise only). A single fit is a stack of one.

Compiled once per shape: the hyperparameters that change no array shape
(learning rate and its schedule, dropout rate, L2 penalty, label smoothing,
and adam's or adamw's weight decay) are values of variables that the
compiled step reads, not constants compiled into it. The network, its
trainer, optimizer and predictor are kept per shape (:class:`ShapeKey`:
convolutional stem, layers, width, activation, normalization, dropout or none, optimizer
family, data and stack sizes) in a small cache, and a fit of a cached shape
resets every variable to the fresh start a new build with its seed has
(:meth:`StackedNetwork.reset`), then trains with the program already
compiled: the same seed gives the same result, cached or not. A batch size
is an input shape of that program: each new one compiles once more within
its shape's trainer. :func:`release_compiled` (after each search trial)
frees everything else; the cache keeps the most recent
``MAX_CACHED_SHAPES`` shapes within ``MAX_CACHED_BYTES`` of variables.

The trainer overrides ``train_step`` with the backend's own signature (JAX:
stateless ``(state, data)``; TensorFlow: stateful ``(data)``) and otherwise
uses ``keras`` and ``keras.ops`` only, so it runs on either backend.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from zoo.augment import augment_bank, expand_rows, n_copies
from zoo.errors import ZooError
from zoo.network import (
    CONV_KERNEL,
    TrainingDiverged,
    build_dense_model,
    conv_stem,
    stem_output_dim,
)
from zoo.space import DenseConfig

# Keras's BatchNormalization and LayerNormalization defaults, so a member's
# weights mean the same in the plain network they are copied into.
BATCH_NORM_MOMENTUM = 0.99
NORM_EPSILON = 1e-3
# Prediction rows are padded up to a multiple of this, so folds of slightly
# different sizes reuse one compiled prediction function.
PREDICT_ROUNDING = 256
PREDICT_CHUNK = 8192
# A convolutional stem holds every pixel's neighbourhoods and filters: its chunks hold at most
# this many pixel-filters per member (1,024 rows of 8x8 pictures at 64 filters), and never
# fewer than PREDICT_ROUNDING rows.
CONV_PREDICT_PIXEL_FILTERS = 2**22
# keras.optimizers.AdamW's default decay: adamw trains as Adam with it, adam with 0.
ADAMW_WEIGHT_DECAY = 0.004
# The momentum zoo.network.make_optimizer gives SGD.
SGD_MOMENTUM = 0.9
# Compiled trainers kept for reuse: the most recent shapes, and no more
# variables (weights, optimizer state, data) than this in all, the newest always.
MAX_CACHED_SHAPES = 4
MAX_CACHED_BYTES = 256 * 2**20


def _filled(value: np.ndarray) -> Callable:
    """A Keras initializer giving ``value`` (numpy: no compiled function per shape)."""

    def initializer(shape, dtype=None):
        return ops.convert_to_tensor(np.broadcast_to(value, shape), dtype)

    return initializer


class StackedDense(keras.layers.Layer):
    """A dense layer per member: ``(k, n, inputs) -> (k, n, units)``.

    :meth:`reset` gives every member the same Glorot-uniform kernel (the
    distribution ``keras.layers.Dense`` uses, drawn for one
    ``(inputs, units)`` kernel) and a zero bias: the start a single fit with
    the same seed has. The kernel is drawn with numpy: Keras's initializers
    compile a JAX function for every new kernel shape, a fraction of a second each.

    Args:
        n_members: k.
        units: output width.
        use_bias: whether to add a bias.
    """

    def __init__(self, n_members: int, units: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.n_members = n_members
        self.units = units
        self.use_bias = use_bias

    def build(self, input_shape) -> None:
        shape = (self.n_members, int(input_shape[-1]), self.units)
        zero = np.float32(0.0)
        self.kernel = self.add_weight(shape=shape, initializer=_filled(zero), name="kernel")
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.n_members, self.units), initializer=_filled(zero), name="bias"
            )

    def reset(self, generator: np.random.Generator) -> None:
        """Sets the fresh start: one kernel drawn from ``generator`` for every member, zero bias."""
        _, inputs, units = self.kernel.shape
        limit = math.sqrt(6.0 / (inputs + units))
        one = generator.uniform(-limit, limit, (inputs, units)).astype("float32")
        self.kernel.assign(np.broadcast_to(one, self.kernel.shape))
        if self.bias is not None:
            self.bias.assign(np.zeros(self.bias.shape, dtype="float32"))

    def call(self, x):
        y = ops.matmul(x, self.kernel)
        if self.bias is not None:
            y = y + ops.expand_dims(self.bias, 1)
        return y


class StackedConv2D(keras.layers.Layer):
    """A 3x3 convolution per member, "same" padding: ``(k, n, H, W, c) -> (k, n, H, W, filters)``.

    :meth:`reset` gives every member the same Glorot-uniform kernel (the draw
    ``keras.layers.Conv2D`` makes: fans of ``9 * channels`` and ``9 * filters``) and a zero
    bias. The convolution is computed as a batched matmul over every pixel's 3x3
    neighbourhood: on the CPU, XLA ran that 15-25 times faster than a ``keras.ops.conv``
    per member or one grouped convolution for the k members (JAX, 64 filters, 2 members).

    Args:
        n_members: k.
        filters: output channels.
    """

    def __init__(self, n_members: int, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.n_members = n_members
        self.filters = filters

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        zero = _filled(np.float32(0.0))
        self.kernel = self.add_weight(
            shape=(self.n_members, CONV_KERNEL, CONV_KERNEL, channels, self.filters),
            initializer=zero,
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(self.n_members, self.filters), initializer=zero, name="bias"
        )

    def reset(self, generator: np.random.Generator) -> None:
        """Sets the fresh start: one kernel drawn from ``generator`` for every member, zero bias."""
        shape = tuple(self.kernel.shape[1:])
        receptive = CONV_KERNEL * CONV_KERNEL
        limit = math.sqrt(6.0 / (receptive * shape[2] + receptive * shape[3]))
        one = generator.uniform(-limit, limit, shape).astype("float32")
        self.kernel.assign(np.broadcast_to(one, self.kernel.shape))
        self.bias.assign(np.zeros(self.bias.shape, dtype="float32"))

    def call(self, x):
        n_members, _, height, width, channels = x.shape
        # Every pixel's 3x3 neighbourhood side by side, in the kernel's (row, column,
        # channel) order: the convolution is then one batched matmul, as a dense layer is.
        pad = CONV_KERNEL // 2
        padded = ops.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)))
        patches = ops.concatenate(
            [
                padded[:, :, row : row + height, column : column + width, :]
                for row in range(CONV_KERNEL)
                for column in range(CONV_KERNEL)
            ],
            axis=-1,
        )
        receptive = CONV_KERNEL * CONV_KERNEL * channels
        y = ops.matmul(
            ops.reshape(patches, (n_members, -1, receptive)),
            ops.reshape(self.kernel, (n_members, receptive, self.filters)),
        )
        y = y + ops.expand_dims(self.bias, 1)
        return ops.reshape(y, (n_members, -1, height, width, self.filters))


def _max_pool(x):
    """2x2 max pooling of every member's pictures: ``(k, n, H, W, c) -> (k, n, H/2, W/2, c)``."""
    n_members, _, height, width, channels = x.shape
    pooled = ops.max_pool(
        ops.reshape(x, (-1, height, width, channels)),
        pool_size=2,
        strides=2,
        padding="valid",
        data_format="channels_last",
    )
    return ops.reshape(pooled, (n_members, -1, height // 2, width // 2, channels))


class StackedBatchNormalization(keras.layers.Layer):
    """Batch normalization with statistics per member, over its valid rows only.

    Args:
        n_members: k.
    """

    def __init__(self, n_members: int, **kwargs):
        super().__init__(**kwargs)
        self.n_members = n_members

    def build(self, input_shape) -> None:
        shape = (self.n_members, int(input_shape[-1]))
        one, zero = _filled(np.float32(1.0)), _filled(np.float32(0.0))
        self.gamma = self.add_weight(shape=shape, initializer=one, name="gamma")
        self.beta = self.add_weight(shape=shape, initializer=zero, name="beta")
        self.moving_mean = self.add_weight(
            shape=shape, initializer=zero, trainable=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=shape, initializer=one, trainable=False, name="moving_variance"
        )

    def reset(self) -> None:
        """Sets Keras's fresh start: scale 1, offset 0, moving mean 0, moving variance 1."""
        shape = self.gamma.shape
        for variable, value in (
            (self.gamma, 1.0),
            (self.beta, 0.0),
            (self.moving_mean, 0.0),
            (self.moving_variance, 1.0),
        ):
            variable.assign(np.full(shape, value, dtype="float32"))

    def call(self, x, valid=None, training=False):
        if training:
            weights = ops.expand_dims(ops.cast(valid, x.dtype), -1)
            count = ops.sum(weights, axis=1)
            safe_count = ops.maximum(count, 1.0)
            mean = ops.sum(x * weights, axis=1) / safe_count
            centred = (x - ops.expand_dims(mean, 1)) * weights
            variance = ops.sum(ops.square(centred), axis=1) / safe_count
            # A member with no rows in this step keeps its statistics.
            seen = count > 0
            keep = BATCH_NORM_MOMENTUM
            moving_mean = self.moving_mean.value
            moving_variance = self.moving_variance.value
            self.moving_mean.assign(
                ops.where(seen, moving_mean * keep + mean * (1 - keep), moving_mean)
            )
            self.moving_variance.assign(
                ops.where(seen, moving_variance * keep + variance * (1 - keep), moving_variance)
            )
        else:
            mean, variance = self.moving_mean.value, self.moving_variance.value
        scale = self.gamma * ops.rsqrt(variance + NORM_EPSILON)
        shift = self.beta - mean * scale
        return x * ops.expand_dims(scale, 1) + ops.expand_dims(shift, 1)


class StackedLayerNormalization(keras.layers.Layer):
    """Layer normalization with a scale and an offset per member.

    Args:
        n_members: k.
    """

    def __init__(self, n_members: int, **kwargs):
        super().__init__(**kwargs)
        self.n_members = n_members

    def build(self, input_shape) -> None:
        shape = (self.n_members, int(input_shape[-1]))
        self.gamma = self.add_weight(
            shape=shape, initializer=_filled(np.float32(1.0)), name="gamma"
        )
        self.beta = self.add_weight(shape=shape, initializer=_filled(np.float32(0.0)), name="beta")

    def reset(self) -> None:
        """Sets Keras's fresh start: scale 1, offset 0."""
        self.gamma.assign(np.ones(self.gamma.shape, dtype="float32"))
        self.beta.assign(np.zeros(self.beta.shape, dtype="float32"))

    def call(self, x):
        mean = ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
        normalized = (x - mean) * ops.rsqrt(variance + NORM_EPSILON)
        return normalized * ops.expand_dims(self.gamma, 1) + ops.expand_dims(self.beta, 1)


def _dropout(x, rate, seed_generator):
    """``keras.layers.Dropout``'s masks (JAX: the same draws) with ``rate`` a tensor.

    Keras's own dropout compares its rate with 0 and 1 in Python, so it needs a
    constant; here the rate is read from a variable inside the compiled step.
    """
    keep = 1.0 - rate
    draws = keras.random.uniform(ops.shape(x), seed=seed_generator)
    return ops.where(draws < keep, x / keep, ops.zeros_like(x))


class StackedNetwork(keras.layers.Layer):
    """The k members of one dense configuration: pixels ``(k, n, F)`` -> logits ``(k, n, C)``.

    The layers mirror :func:`zoo.network.build_dense_model` one for one (same
    names, same initial values), so a member's weights drop into the plain
    network unchanged (:meth:`member_weights`). Only the config's shape
    hyperparameters (convolutional stem, layers, width, activation,
    normalization, dropout or none) fix the network; the dropout rate and the L2 penalty are
    non-trainable variables, set with the initial weights by :meth:`reset`.

    Args:
        config: the hyperparameters (the same for every member).
        input_dim: features per row.
        n_classes: number of classes.
        n_members: k, the number of networks stacked.
        seed: seeds the initial weights (see :meth:`reset`).
    """

    def __init__(
        self,
        config: DenseConfig,
        input_dim: int,
        n_classes: int,
        n_members: int,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_dim = input_dim
        self.n_classes = n_classes
        self.n_members = n_members
        # The config fields that fix the variables; the other values are reset()'s.
        self.shape = _network_shape(config)
        self.units = config.units
        self.normalization = config.normalization
        use_bias = config.normalization == "none"
        self.conv_filters = config.conv_filters
        self.stem = conv_stem(config.conv_filters, input_dim) if config.conv_filters else []
        self.convs = [
            StackedConv2D(n_members, convolution.filters, name=f"conv_{index}")
            for index, convolution in enumerate(self.stem)
        ]
        self.hidden = [
            StackedDense(n_members, config.units, use_bias, name=f"hidden_{index}")
            for index in range(config.n_layers)
        ]
        self.norms = []
        if config.normalization == "batch":
            self.norms = [
                StackedBatchNormalization(n_members, name=f"batch_norm_{index}")
                for index in range(config.n_layers)
            ]
        elif config.normalization == "layer":
            self.norms = [
                StackedLayerNormalization(n_members, name=f"layer_norm_{index}")
                for index in range(config.n_layers)
            ]
        # One seed generator per hidden layer, as each keras.layers.Dropout has;
        # reset() seeds them.
        self.dropout_seeds = []
        if config.dropout_rate:
            self.dropout_seeds = [
                keras.random.SeedGenerator(0, name=f"dropout_{index}")
                for index in range(config.n_layers)
            ]
        self.output_layer = StackedDense(n_members, n_classes, name="probabilities")
        self.activation = keras.activations.get(config.activation)
        self.build()
        self.reset(config, seed)

    def build(self, input_shape=None) -> None:
        zero = _filled(np.float32(0.0))
        self.dropout_rate = self.add_weight(
            shape=(), initializer=zero, trainable=False, name="dropout_rate"
        )
        self.l2 = self.add_weight(shape=(), initializer=zero, trainable=False, name="l2")
        width = self.input_dim
        for conv, convolution in zip(self.convs, self.stem, strict=True):
            side = convolution.side
            conv.build((self.n_members, None, side, side, convolution.channels))
        if self.convs:
            width = stem_output_dim(self.conv_filters, self.input_dim)
        for index, dense in enumerate(self.hidden):
            dense.build((self.n_members, None, width))
            width = self.units
            if self.norms:
                self.norms[index].build((self.n_members, None, width))
        self.output_layer.build((self.n_members, None, width))

    def reset(self, config: DenseConfig, seed: int) -> None:
        """Sets every variable to the fresh start of a network built with ``seed`` for ``config``.

        The initial weights are a single fit's with that seed (numpy draws in
        the order such a fit makes them: the dropout layers' seeds, then each
        kernel); ``config``'s dropout rate and L2 penalty are set too.

        Raises:
            ZooError: ``config`` has another shape than the network's.
        """
        if _network_shape(config) != self.shape:
            raise ZooError(
                f"a network of shape {self.shape} cannot take config {config.short()} "
                f"(shape {_network_shape(config)}); build one for it"
            )
        generator = np.random.default_rng(seed)
        seeds = [int(generator.integers(2**31)) for _ in self.dropout_seeds]
        for layer in (*self.convs, *self.hidden, self.output_layer):
            layer.reset(generator)
        for norm in self.norms:
            norm.reset()
        for seed_generator, layer_seed in zip(self.dropout_seeds, seeds, strict=True):
            state = seed_generator.state
            state.assign(np.array([layer_seed, 0], dtype=state.dtype))
        self.dropout_rate.assign(np.float32(config.dropout_rate))
        self.l2.assign(np.float32(config.l2))

    def call(self, x, valid=None, training=False):
        if self.convs:
            side = self.stem[0].side
            x = ops.reshape(x, (self.n_members, -1, side, side, 1))
            for conv, convolution in zip(self.convs, self.stem, strict=True):
                x = self.activation(conv(x))
                if convolution.pooled:
                    x = _max_pool(x)
            # Flattened as keras.layers.Flatten flattens a picture: rows, columns, channels.
            x = ops.reshape(x, (self.n_members, -1, int(np.prod(x.shape[2:]))))
        for index, dense in enumerate(self.hidden):
            x = dense(x)
            if self.normalization == "batch":
                x = self.norms[index](x, valid=valid, training=training)
            elif self.normalization == "layer":
                x = self.norms[index](x)
            x = self.activation(x)
            if training and self.dropout_seeds:
                x = _dropout(x, self.dropout_rate.value, self.dropout_seeds[index])
        return self.output_layer(x)

    def l2_penalty(self):
        """Returns each member's L2 penalty on its convolution and hidden kernels: ``(k,)``."""
        l2 = self.l2.value
        total = ops.zeros((self.n_members,))
        for layer in (*self.convs, *self.hidden):
            axes = tuple(range(1, len(layer.kernel.shape)))
            total = total + l2 * ops.sum(ops.square(layer.kernel), axis=axes)
        return total

    def member_weights(self, index: int) -> dict[str, list[np.ndarray]]:
        """Returns member ``index``'s weights by layer name, in Keras layer order."""
        layers = [*self.convs, *self.hidden, *self.norms, self.output_layer]
        return {
            layer.name: [np.asarray(ops.convert_to_numpy(w))[index] for w in layer.weights]
            for layer in layers
        }

    def count_member_params(self) -> int:
        """Returns the number of trainable parameters of one member."""
        return sum(int(np.prod(w.shape[1:])) for w in self.trainable_weights)


def _network_shape(config: DenseConfig) -> tuple:
    """Convolutional stem, layers, width, activation, normalization and whether there is dropout."""
    return (
        config.conv_filters,
        config.n_layers,
        config.units,
        config.activation,
        config.normalization,
        bool(config.dropout_rate),
    )


class MemberMetrics(keras.metrics.Metric):
    """Per-member loss and accuracy sums over an epoch, for training and validation.

    ``result()`` gives ``loss``, ``accuracy``, ``val_loss`` and
    ``val_accuracy``: vectors of k values, or plain scalars when k is 1.
    """

    def __init__(self, n_members: int, with_validation: bool, **kwargs):
        super().__init__(name="member_metrics", **kwargs)
        self.n_members = n_members
        self.with_validation = with_validation
        names = ["loss_sum", "correct", "count"]
        if with_validation:
            names += ["val_loss_sum", "val_correct", "val_count"]
        self.sums = {
            name: self.add_variable(shape=(n_members,), initializer="zeros", name=name)
            for name in names
        }

    def update_state(self, outputs, prefix: str = "") -> None:
        """Adds a step's ``losses``, ``count`` and ``correct`` (the trainer's outputs)."""
        self.sums[f"{prefix}loss_sum"].assign_add(outputs["losses"] * outputs["count"])
        self.sums[f"{prefix}correct"].assign_add(outputs["correct"])
        self.sums[f"{prefix}count"].assign_add(outputs["count"])

    def result(self):
        def mean(total, count):
            value = self.sums[total] / ops.maximum(self.sums[count], 1.0)
            return value[0] if self.n_members == 1 else value

        results = {
            "loss": mean("loss_sum", "count"),
            "accuracy": mean("correct", "count"),
        }
        if self.with_validation:
            results["val_loss"] = mean("val_loss_sum", "val_count")
            results["val_accuracy"] = mean("val_correct", "val_count")
        return results

    def reset_state(self) -> None:
        for variable in self.sums.values():
            variable.assign(ops.zeros(variable.shape))


def member_losses(logits, labels, valid, label_smoothing, penalty):
    """Each member's mean loss over its valid rows, its row count and its correct count.

    The loss is the categorical cross-entropy of the (smoothed) one-hot labels
    plus the member's L2 penalty, as Keras reports a single network's loss.

    Args:
        logits: ``(k, n, C)``.
        labels: ``(k, n)`` class indices.
        valid: ``(k, n)``, false on padded slots.
        label_smoothing: a scalar (a tensor: the compiled step reads it).
        penalty: ``(k,)``, each member's L2 penalty.

    Returns:
        ``(losses, count, correct)``, each of shape ``(k,)``.
    """
    n_classes = logits.shape[-1]
    targets = ops.one_hot(labels, n_classes)
    targets = targets * (1.0 - label_smoothing) + label_smoothing / n_classes
    cross_entropy = -ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1)
    weights = ops.cast(valid, logits.dtype)
    cross_entropy = ops.where(valid, cross_entropy, 0.0)
    count = ops.sum(weights, axis=1)
    hits = ops.cast(ops.argmax(logits, axis=-1) == labels, logits.dtype) * weights
    losses = ops.sum(cross_entropy, axis=1) / ops.maximum(count, 1.0) + penalty
    return losses, count, ops.sum(hits, axis=1)


class StackTrainer(keras.Model):
    """Trains a :class:`StackedNetwork`: one Keras step is one epoch of every member.

    Its input is a dict of row indices into ``features``/``labels`` (held as
    non-trainable variables): ``steps`` ``(S, k, batch)``, one epoch's steps,
    and ``val`` ``(k, V)``, every member's validation rows; ``-1`` marks padding.
    Its output holds the logits and each member's loss, row count and
    correct count, computed in ``call`` where the label smoothing (a variable)
    is read: Keras computes the metrics where only metric variables are inputs.

    Args:
        network: the stacked network to train.
        features: ``(n, F)`` float32, every row any member trains or validates on.
        labels: ``(n,)`` class indices.
        label_smoothing: of the cross-entropy.
        with_validation: whether epochs end by scoring ``val`` rows.
    """

    def __init__(
        self,
        network: StackedNetwork,
        features: np.ndarray,
        labels: np.ndarray,
        label_smoothing: float,
        with_validation: bool,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network = network
        self.features = self.add_weight(
            shape=features.shape,
            initializer=_filled(np.asarray(features, dtype="float32")),
            trainable=False,
            name="features",
        )
        self.labels = self.add_weight(
            shape=labels.shape,
            dtype="int32",
            initializer=_filled(np.asarray(labels, dtype="int32")),
            trainable=False,
            name="labels",
        )
        self.label_smoothing = self.add_weight(
            shape=(),
            initializer=_filled(np.float32(label_smoothing)),
            trainable=False,
            name="label_smoothing",
        )
        self.member_metrics = MemberMetrics(network.n_members, with_validation)
        self.built = True

    def set_data(self, features: np.ndarray, labels: np.ndarray, label_smoothing: float) -> None:
        """Sets the rows, labels and label smoothing of the next fit."""
        self.features.assign(features)
        self.labels.assign(labels)
        self.label_smoothing.assign(np.float32(label_smoothing))

    def call(self, indices, training=False):
        valid = indices >= 0
        rows = ops.where(valid, indices, 0)
        # Padded slots read a zero row, so nothing non-finite can leak from them.
        x = ops.where(ops.expand_dims(valid, -1), ops.take(self.features, rows, axis=0), 0.0)
        logits = self.network(x, valid=valid, training=training)
        losses, count, correct = member_losses(
            logits,
            ops.take(self.labels, rows, axis=0),
            valid,
            self.label_smoothing.value,
            self.network.l2_penalty(),
        )
        return {"logits": logits, "losses": losses, "count": count, "correct": correct}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # The sum over members: each member's gradient is its own loss's gradient.
        return ops.sum(y_pred["losses"])

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.member_metrics.update_state(y_pred)
        return self.get_metrics_result()

    def train_step(self, *args):
        # JAX calls train_step(state, data) and expects (logs, state); TensorFlow
        # (and torch) call train_step(data) and update the variables in place.
        if len(args) == 2:
            return self._stateless_epoch(*args)
        return self._stateful_epoch(args[0])

    def _stateless_epoch(self, state, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)

        def step(state, indices):
            _, state = keras.Model.train_step(self, state, (indices,))
            return state

        steps = x["steps"][0]
        n_steps, n_members, batch = steps.shape

        def body(index, state):
            indices = ops.slice(steps, (index, 0, 0), (1, n_members, batch))
            return step(state, ops.squeeze(indices, 0))

        state = ops.fori_loop(0, n_steps, body, state)
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        mapping = list(zip(self.metrics_variables, metrics_variables, strict=True))
        outputs = None
        if "val" in x:
            outputs, _ = self.stateless_call(trainable, non_trainable, x["val"][0], training=False)
        with keras.StatelessScope(state_mapping=mapping) as scope:
            if outputs is not None:
                self.member_metrics.update_state(outputs, prefix="val_")
            logs = self.get_metrics_result()
        metrics_variables = [_current(scope, variable, value) for variable, value in mapping]
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def _stateful_epoch(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        steps = x["steps"][0]
        n_steps, n_members, batch = steps.shape

        def body(index, done):
            indices = ops.slice(steps, (index, 0, 0), (1, n_members, batch))
            keras.Model.train_step(self, (ops.squeeze(indices, 0),))
            return done + 1

        ops.fori_loop(0, n_steps, body, 0)
        if "val" in x:
            outputs = self(x["val"][0], training=False)
            self.member_metrics.update_state(outputs, prefix="val_")
        return self.get_metrics_result()


def _current(scope, variable, value):
    updated = scope.get_current_value(variable)
    return value if updated is None else updated


class _WatchLoss(keras.callbacks.Callback):
    """Stops training after the first epoch in which a member's loss is not finite."""

    def __init__(self):
        super().__init__()
        self.diverged: tuple[int, int, float] | None = None

    def on_epoch_end(self, epoch, logs=None):
        losses = np.atleast_1d(np.asarray((logs or {}).get("loss", np.nan), dtype="float64"))
        bad = np.flatnonzero(~np.isfinite(losses))
        if len(bad):
            self.diverged = (epoch, int(bad[0]), float(losses[bad[0]]))
            self.model.stop_training = True


def optimizer_family(name: str) -> str:
    """The optimizer a config's ``optimizer`` trains with: adamw is Adam with weight decay."""
    return "adam" if name == "adamw" else name


class TrainingOptimizer:
    """A Keras optimizer whose hyperparameters are its own variables, for a compiled step to read.

    The learning rate is computed at each step from three variables (the
    base rate, a cosine flag and the fit's step count): held, or decayed
    from the base rate to zero over the fit as
    ``keras.optimizers.schedules.CosineDecay`` does. adam and adamw are one
    ``keras.optimizers.Adam`` whose weight decay is a variable (adamw's
    0.004, as ``keras.optimizers.AdamW``, or 0); rmsprop is
    ``keras.optimizers.RMSprop`` and sgd ``keras.optimizers.SGD`` with
    momentum 0.9, as :func:`zoo.network.make_optimizer` builds them. So only
    the family fixes a compiled program; :meth:`reset` sets a fit's values.

    Args:
        name: the config's ``optimizer``.
    """

    def __init__(self, name: str):
        self.family = optimizer_family(name)
        if self.family == "adam":
            optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        elif self.family == "rmsprop":
            optimizer = keras.optimizers.RMSprop(learning_rate=self.learning_rate)
        elif self.family == "sgd":
            optimizer = keras.optimizers.SGD(
                learning_rate=self.learning_rate, momentum=SGD_MOMENTUM
            )
        else:
            raise ZooError(f"optimizer must be adam, adamw, rmsprop or sgd (got {name!r})")
        self.optimizer = optimizer
        self.base_rate = optimizer.add_variable((), name="base_learning_rate")
        self.cosine = optimizer.add_variable((), name="cosine_schedule")
        self.total_steps = optimizer.add_variable((), name="schedule_steps")
        self.weight_decay = None
        if self.family == "adam":
            self.weight_decay = optimizer.add_variable((), name="weight_decay")
            # Keras applies a decay whenever weight_decay is set; a variable is read each step.
            optimizer.weight_decay = self.weight_decay

    def learning_rate(self):
        """The current step's rate (Keras calls it inside the compiled step)."""
        base = self.base_rate.value
        steps = ops.maximum(self.total_steps.value, 1.0)
        step = ops.minimum(ops.cast(self.optimizer.iterations, base.dtype), steps)
        pi = ops.array(math.pi, dtype=base.dtype)
        decayed = base * (0.5 * (1.0 + ops.cos(ops.multiply(pi, step / steps))))
        return ops.where(self.cosine.value > 0, decayed, base)

    def reset(self, config: DenseConfig, total_steps: int) -> None:
        """Zeroes the optimizer's state (step count, moments) and sets ``config``'s values.

        Raises:
            ZooError: ``config``'s optimizer is of another family.
        """
        if optimizer_family(config.optimizer) != self.family:
            raise ZooError(
                f"an optimizer of family {self.family} cannot train with {config.optimizer}"
            )
        for variable in self.optimizer.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))
        self.base_rate.assign(np.float32(config.learning_rate))
        self.cosine.assign(np.float32(config.lr_schedule == "cosine"))
        self.total_steps.assign(np.float32(total_steps))
        if self.weight_decay is not None:
            decay = ADAMW_WEIGHT_DECAY if config.optimizer == "adamw" else 0.0
            self.weight_decay.assign(np.float32(decay))


class ShapeKey(NamedTuple):
    """What fixes a stacked trainer's compiled program: every fit with equal keys shares it.

    ``trainer`` is the trainer class (a subclass builds its own). The batch
    size is not part of it: it is an input shape of the program, so each new
    one compiles the step once more within the same trainer.
    """

    trainer: type
    conv_filters: int
    n_layers: int
    units: int
    activation: str
    normalization: str
    dropout: bool
    optimizer: str
    features: tuple[int, int]
    n_classes: int
    n_members: int
    with_validation: bool


class CacheInfo(NamedTuple):
    """The compiled-trainer cache's counters (as ``functools.lru_cache``'s ``cache_info``)."""

    hits: int
    misses: int
    shapes: int
    nbytes: int


class _Compiled:
    """One shape's network, trainer, optimizer and predictor, reused by its every fit.

    ``owner`` is the :class:`StackedFit` whose weights the network holds;
    before a fit overwrites them, :meth:`release` hands it a copy.
    """

    def __init__(
        self,
        key: ShapeKey,
        config: DenseConfig,
        features: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        n_members: int,
    ):
        self.key = key
        self.network = StackedNetwork(
            config, features.shape[1], n_classes, n_members, name="stacked_network"
        )
        self.trainer = key.trainer(
            self.network,
            features,
            labels,
            config.label_smoothing,
            with_validation=key.with_validation,
        )
        self.optimizer = TrainingOptimizer(config.optimizer)
        self.trainer.compile(optimizer=self.optimizer.optimizer)
        self.optimizer.optimizer.build(self.trainer.trainable_variables)
        self.predictor = _Predictor(self.network, name="member_predictor")
        self.owner: weakref.ref | None = None
        variables = [*self.trainer.variables, *self.optimizer.optimizer.variables]
        self.nbytes = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)

    def release(self) -> None:
        """Gives the fit that owns the network's weights a copy of them."""
        owner = self.owner() if self.owner is not None else None
        if owner is not None:
            owner._detach()
        self.owner = None

    def start(
        self,
        config: DenseConfig,
        features: np.ndarray,
        labels: np.ndarray,
        seed: int,
        total_steps: int,
    ) -> None:
        """Resets every variable to a fresh fit's start: weights, optimizer state and data."""
        self.release()
        self.network.reset(config, seed)
        self.trainer.set_data(features, labels, config.label_smoothing)
        self.optimizer.reset(config, total_steps)


class _CompiledCache:
    """The most recently used :class:`_Compiled` trainers, by shape."""

    def __init__(self):
        self.entries: OrderedDict[ShapeKey, _Compiled] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: ShapeKey, build: Callable[[], _Compiled]) -> _Compiled:
        entry = self.entries.pop(key, None)
        if entry is None:
            self.misses += 1
            entry = build()
        else:
            self.hits += 1
        self.entries[key] = entry
        # The oldest go first; the newest stays whatever its size.
        while len(self.entries) > 1 and (
            len(self.entries) > MAX_CACHED_SHAPES
            or sum(e.nbytes for e in self.entries.values()) > MAX_CACHED_BYTES
        ):
            _, oldest = self.entries.popitem(last=False)
            oldest.release()
        return entry

    def clear(self) -> None:
        for entry in self.entries.values():
            entry.release()
        self.entries.clear()


_CACHE = _CompiledCache()


def cache_info() -> CacheInfo:
    """Returns the compiled-trainer cache's hits, misses, shapes held and their variables' bytes.

    A miss builds (and so compiles) a shape's trainer; a hit reuses it.
    """
    return CacheInfo(
        _CACHE.hits,
        _CACHE.misses,
        len(_CACHE.entries),
        sum(e.nbytes for e in _CACHE.entries.values()),
    )


def release_compiled() -> None:
    """Frees what a finished search trial leaves behind, keeping the compiled trainers for reuse.

    Keras's global state keeps a trial's objects referenced and they sit in
    reference cycles, so a long search would otherwise grow with every
    trial: ``clear_session`` drops that state and runs one garbage
    collection. The compiled trainers of the most recent shapes stay cached
    for the next trials (bounded by ``MAX_CACHED_SHAPES`` and
    ``MAX_CACHED_BYTES``); :func:`clear_compiled` frees them too. JAX's small
    shared functions (by shape) stay compiled: measured on an 8-trial search,
    ``jax.clear_caches()`` as well saved 58 MB of 935 and cost 12% more time.
    """
    keras.backend.clear_session()


def clear_compiled() -> None:
    """Empties the compiled-trainer cache (fits still alive keep a copy of their weights)."""
    _CACHE.clear()
    keras.backend.clear_session()


class StackedFit:
    """The result of :func:`fit_stacked`: the trained members and their histories.

    Its weights stay in the cached network that trained them until a later
    fit of the same shape starts; that fit first gives this one a copy, and
    ``network`` is then a network of its own holding them.

    Args:
        config: the hyperparameters the members trained with.
        histories: each member's per-epoch ``loss``, ``accuracy`` (and ``val_``) values.
        entry: the cached trainer whose network holds the weights.
    """

    def __init__(self, config: DenseConfig, histories: list[dict[str, list[float]]], entry):
        self.config = config
        self.histories = histories
        self._entry: _Compiled | None = entry
        self._shape = (entry.network.input_dim, entry.network.n_classes, entry.network.n_members)
        self._weights: list[np.ndarray] | None = None
        self._own: StackedNetwork | None = None
        self._own_predictor: _Predictor | None = None

    def _detach(self) -> None:
        """Copies the weights out of the cached network, which a new fit is about to reset."""
        network = self._entry.network
        self._weights = [np.array(ops.convert_to_numpy(v)) for v in network.variables]
        self._entry = None

    @property
    def network(self) -> StackedNetwork:
        """A stacked network holding these members' weights."""
        if self._entry is not None:
            return self._entry.network
        if self._own is None:
            input_dim, n_classes, n_members = self._shape
            own = StackedNetwork(self.config, input_dim, n_classes, n_members)
            for variable, value in zip(own.variables, self._weights, strict=True):
                variable.assign(value)
            self._own, self._weights = own, None
        return self._own

    def member_weights(self, index: int) -> dict[str, list[np.ndarray]]:
        """Returns member ``index``'s weights by layer name, in Keras layer order."""
        return self.network.member_weights(index)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Returns every member's class probabilities for ``X``: ``(k, n, C)``."""
        network = self.network
        if self._entry is not None:
            predictor = self._entry.predictor
        else:
            if self._own_predictor is None:
                self._own_predictor = _Predictor(network, name="member_predictor")
            predictor = self._own_predictor
        X = np.asarray(X, dtype="float32")
        n_members = network.n_members
        size = PREDICT_CHUNK
        if network.convs:
            # Whole multiples of the rounding, and at least one of them (256 rows).
            per_row = network.input_dim * network.conv_filters
            rows = min(size, CONV_PREDICT_PIXEL_FILTERS // per_row)
            size = max(PREDICT_ROUNDING, rows // PREDICT_ROUNDING * PREDICT_ROUNDING)
        parts = []
        for start in range(0, max(len(X), 1), size):
            chunk = X[start : start + size]
            padded = -(-max(len(chunk), 1) // PREDICT_ROUNDING) * PREDICT_ROUNDING
            batch = np.zeros((n_members, padded, X.shape[1]), dtype="float32")
            batch[:, : len(chunk)] = chunk
            probabilities = predictor.predict_on_batch(batch)
            parts.append(np.asarray(probabilities)[:, : len(chunk)])
        return np.concatenate(parts, axis=1)


class _Predictor(keras.Model):
    """Class probabilities of every member, one compiled function for all of them."""

    def __init__(self, network: StackedNetwork, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.built = True

    def call(self, x, training=False):
        return ops.softmax(self.network(x, training=False), axis=-1)


class StackedMember:
    """One member of a trained stack: what a fold estimator of ``fit_folds`` holds as ``model_``.

    It predicts with the member's own weights (``predict``) and can turn into
    the plain Keras network a single fit gives (``to_keras``), for saving.

    Args:
        stack: the trained stack.
        index: which member.
    """

    def __init__(self, stack: StackedFit, index: int):
        self.stack = stack
        self.index = index

    def predict(self, X, batch_size=None, verbose=0) -> np.ndarray:
        """Returns this member's class probabilities for ``X``."""
        return self.stack.predict_proba(X)[self.index]

    def count_params(self) -> int:
        """Returns the number of trainable parameters of this member."""
        return self.stack.network.count_member_params()

    def to_keras(self):
        """Returns a compiled plain Keras network holding this member's weights."""
        return plain_network(self.stack, self.index)


def plain_network(stack: StackedFit, index: int):
    """Builds :func:`zoo.network.build_dense_model`'s network with member ``index``'s weights.

    The network is compiled with a fresh optimizer (the stack's optimizer
    state is not carried over).
    """
    network = stack.network
    model = build_dense_model(
        stack.config, network.input_dim, network.n_classes, stack.member_weights(index)
    )
    # A built (fresh) optimizer saves all its slots, so loading the file matches them.
    model.optimizer.build(model.trainable_variables)
    return model


def epoch_batches(
    rows: Sequence[np.ndarray], batch_size: int, epochs: int, seed: int
) -> Iterator[np.ndarray]:
    """Yields each epoch's row indices, ``(S, k, b)``, ``-1`` marking padding.

    An epoch of a member is ``S = ceil(longest / batch_size)`` steps, the
    number a single fit on the largest fold takes, and its rows are spread
    evenly over them (batches of ``b = ceil(longest / S) <= batch_size``
    rows; a member with fewer rows has one padded slot in some steps). Equal
    batches keep every step the same shape, so one compiled step serves the
    whole epoch without computing a padded remainder batch, and no member
    ever has an empty step. Each member's rows are shuffled every epoch by
    its own generator seeded with ``seed``, the order a single fit with that
    seed uses. Epochs are made one at a time, so memory does not grow with
    their number.
    """
    longest = max(len(r) for r in rows)
    n_steps = -(-longest // batch_size)
    width = -(-longest // n_steps)
    generators = [np.random.default_rng(seed) for _ in rows]
    slots = []
    for member_rows in rows:
        # Step s takes rows [starts[s], starts[s + 1]) of the shuffled order.
        starts = (np.arange(n_steps + 1) * len(member_rows)) // n_steps
        slots.append(np.arange(width)[None, :] < np.diff(starts)[:, None])
    for _ in range(epochs):
        layout = np.full((n_steps, len(rows), width), -1, dtype="int32")
        for member, member_rows in enumerate(rows):
            layout[:, member][slots[member]] = generators[member].permutation(member_rows)
        yield layout


def _validation_layout(rows: Sequence[np.ndarray]) -> np.ndarray:
    longest = max(1, max(len(r) for r in rows))
    layout = np.full((len(rows), longest), -1, dtype="int32")
    for member, member_rows in enumerate(rows):
        layout[member, : len(member_rows)] = member_rows
    return layout


def fit_stacked(
    config: DenseConfig,
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    train_rows: Sequence[np.ndarray],
    val_rows: Sequence[np.ndarray] | None = None,
    *,
    epochs: int,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 0,
    batch_size: int | None = None,
) -> StackedFit:
    """Trains one member per entry of ``train_rows``, all in one Keras model.

    A trainer already compiled for this shape (:class:`ShapeKey`) is reused,
    reset to the fresh start a new one would have: the result is the same.

    Args:
        config: the hyperparameters, shared by every member.
        features: ``(n, F)`` rows scaled to ``[0, 1]``; members index into them.
        labels: ``(n,)`` class indices in ``[0, n_classes)``.
        n_classes: number of classes.
        train_rows: for each member, the indices of the rows it trains on.
        val_rows: for each member, the indices of the rows scored after each
            epoch (``val_loss``, ``val_accuracy``), or ``None``.
        epochs: passes over each member's training rows (with
            ``config.augment``, over every augmented copy of them).
        seed: seeds the initial weights (the same for every member), the
            shuffling, dropout and the random augmented copies (whose
            amounts ``config.augment_strength`` scales).
        callbacks: Keras callbacks; their ``model`` is the :class:`StackTrainer`
            and their epoch logs hold one value per member (a scalar for one).
        verbose: Keras's verbosity.
        batch_size: rows per step, overriding ``config.batch_size`` (benchmarks
            use batch sizes outside the search space).

    Returns:
        The trained stack with each member's history (``loss``, ``accuracy``
        and, with ``val_rows``, ``val_loss``, ``val_accuracy`` per epoch).

    Raises:
        ZooError: a member has no training rows.
        TrainingDiverged: a member's loss became NaN or infinite.
    """
    if not train_rows or min(len(r) for r in train_rows) == 0:
        raise ZooError("every fold needs at least one training row (got an empty one)")
    n_members = len(train_rows)
    copies = n_copies(config.augment)
    if copies > 1:
        # Members train on every copy of their rows; validation keeps the
        # original rows (copy 0 of the bank), so it never sees a transformed image.
        n_rows = len(features)
        features = augment_bank(features, config.augment, int(seed), config.augment_strength)
        labels = np.tile(np.asarray(labels), copies)
        train_rows = [expand_rows(rows, n_rows, copies) for rows in train_rows]
    features = np.asarray(features, dtype="float32")
    labels = np.asarray(labels, dtype="int32")
    batch = int(batch_size or config.batch_size)
    steps = epoch_batches(train_rows, batch, int(epochs), int(seed))
    total_steps = int(epochs) * -(-max(len(r) for r in train_rows) // batch)
    val = None if val_rows is None else _validation_layout(val_rows)

    def epochs_data():
        # One Keras "batch" per epoch: its steps, and the validation rows.
        for epoch_steps in steps:
            data = {"steps": epoch_steps[None]}
            if val is not None:
                data["val"] = val[None]
            yield (data,)

    shape = ShapeKey(
        StackTrainer,
        config.conv_filters,
        config.n_layers,
        config.units,
        config.activation,
        config.normalization,
        bool(config.dropout_rate),
        optimizer_family(config.optimizer),
        features.shape,
        int(n_classes),
        n_members,
        val_rows is not None,
    )
    # Every random draw is seeded explicitly (numpy for the initial weights and
    # the shuffling, the dropout layers' own seeds): keras.utils.set_random_seed
    # would import TensorFlow, seconds of start-up, to seed it too.
    entry = _CACHE.get(
        shape, lambda: _Compiled(shape, config, features, labels, int(n_classes), n_members)
    )
    entry.start(config, features, labels, int(seed), total_steps)
    watch = _WatchLoss()
    history = entry.trainer.fit(
        epochs_data(),
        epochs=int(epochs),
        steps_per_epoch=1,
        shuffle=False,
        callbacks=[watch, *callbacks],
        verbose=verbose,
    )
    if watch.diverged is not None:
        epoch, member, value = watch.diverged
        where = f"fold {member + 1}, " if n_members > 1 else ""
        raise TrainingDiverged(
            f"loss became {value} in {where}epoch {epoch + 1} ({config.short()}); "
            "try a lower learning_rate"
        )
    histories = [
        {
            key: [float(np.atleast_1d(value)[member]) for value in values]
            for key, values in history.history.items()
            if key in ("loss", "accuracy", "val_loss", "val_accuracy")
        }
        for member in range(n_members)
    ]
    fit = StackedFit(config, histories, entry)
    entry.owner = weakref.ref(fit)
    return fit
