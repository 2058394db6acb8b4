"""Fold-stacked dense networks: k copies of one network trained as one Keras model.

Cross-validating a configuration trains the same network k times on k
different row sets. On a CPU a small training step costs more in dispatch
than in arithmetic, and every new network costs seconds of XLA compilation,
so the zoo trains the k copies ("members") together:

* every weight has a leading member axis (a hidden kernel is
  ``(k, inputs, units)``) and a layer is one batched ``keras.ops.matmul``,
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
  scored in the same call, so an epoch costs one dispatch, and a fit one
  compilation.

The loss minimised is the sum of the members' losses, so the gradient for a
member's weights is exactly its own loss's gradient; optimizer state and
batch-normalization statistics are per member because they carry the member
axis too. Every member starts from the same initial weights and shuffles its
rows with the same seed, as separate fits with one seed would: a member
follows the path a single fit on its rows takes, up to floating-point
rounding (dropout masks are drawn for the whole stack, so with dropout the
paths differ by the dropout noise only). A single fit is a stack of one.

The trainer overrides ``train_step`` with the backend's own signature (JAX:
stateless ``(state, data)``; TensorFlow: stateful ``(data)``) and otherwise
uses ``keras`` and ``keras.ops`` only, so it runs on either backend.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

from zoo.augment import augment_bank, expand_rows, n_copies
from zoo.errors import ZooError
from zoo.network import TrainingDiverged, build_dense_model, make_optimizer
from zoo.space import DenseConfig

# Keras's BatchNormalization and LayerNormalization defaults, so a member's
# weights mean the same in the plain network they are copied into.
BATCH_NORM_MOMENTUM = 0.99
NORM_EPSILON = 1e-3
# Prediction rows are padded up to a multiple of this, so folds of slightly
# different sizes reuse one compiled prediction function.
PREDICT_ROUNDING = 256
PREDICT_CHUNK = 8192


class StackedDense(keras.layers.Layer):
    """A dense layer per member: ``(k, n, inputs) -> (k, n, units)``.

    Every member starts from the same Glorot-uniform kernel (the
    distribution ``keras.layers.Dense`` uses, drawn for one ``(inputs, units)``
    kernel) and a zero bias: the start a single fit with the same seed has.
    The kernel is drawn with numpy: Keras's initializers compile a JAX
    function for every new kernel shape, a fraction of a second each.

    Args:
        n_members: k.
        units: output width.
        use_bias: whether to add a bias.
        generator: draws the initial kernel.
    """

    def __init__(
        self,
        n_members: int,
        units: int,
        use_bias: bool = True,
        generator: np.random.Generator | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_members = n_members
        self.units = units
        self.use_bias = use_bias
        self.generator = generator if generator is not None else np.random.default_rng()

    def build(self, input_shape) -> None:
        inputs = int(input_shape[-1])
        limit = math.sqrt(6.0 / (inputs + self.units))
        one = self.generator.uniform(-limit, limit, (inputs, self.units)).astype("float32")
        start = np.broadcast_to(one, (self.n_members, inputs, self.units))
        self.kernel = self.add_weight(
            shape=start.shape,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(start, dtype),
            name="kernel",
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(self.n_members, self.units), initializer="zeros", name="bias"
            )

    def call(self, x):
        y = ops.matmul(x, self.kernel)
        if self.bias is not None:
            y = y + ops.expand_dims(self.bias, 1)
        return y


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
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(
            shape=shape, initializer="zeros", trainable=False, name="moving_mean"
        )
        self.moving_variance = self.add_weight(
            shape=shape, initializer="ones", trainable=False, name="moving_variance"
        )

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
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta")

    def call(self, x):
        mean = ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
        normalized = (x - mean) * ops.rsqrt(variance + NORM_EPSILON)
        return normalized * ops.expand_dims(self.gamma, 1) + ops.expand_dims(self.beta, 1)


class StackedNetwork(keras.layers.Layer):
    """The k members of one dense configuration: pixels ``(k, n, F)`` -> logits ``(k, n, C)``.

    The layers mirror :func:`zoo.network.build_dense_model` one for one (same
    names, same initial values), so a member's weights drop into the plain
    network unchanged (:meth:`member_weights`).

    Args:
        config: the hyperparameters (the same for every member).
        input_dim: features per row.
        n_classes: number of classes.
        n_members: k, the number of networks stacked.
        seed: seeds the initial weights.
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
        generator = np.random.default_rng(seed)
        self.config = config
        self.input_dim = input_dim
        self.n_classes = n_classes
        self.n_members = n_members
        use_bias = config.normalization == "none"
        self.hidden = [
            StackedDense(n_members, config.units, use_bias, generator, name=f"hidden_{index}")
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
        self.dropouts = []
        if config.dropout_rate:
            self.dropouts = [
                keras.layers.Dropout(
                    config.dropout_rate,
                    seed=int(generator.integers(2**31)),
                    name=f"dropout_{index}",
                )
                for index in range(config.n_layers)
            ]
        self.output_layer = StackedDense(
            n_members, n_classes, generator=generator, name="probabilities"
        )
        self.activation = keras.activations.get(config.activation)

    def build(self, input_shape=None) -> None:
        width = self.input_dim
        for index, dense in enumerate(self.hidden):
            dense.build((self.n_members, None, width))
            width = self.config.units
            if self.norms:
                self.norms[index].build((self.n_members, None, width))
        self.output_layer.build((self.n_members, None, width))
        self.built = True

    def call(self, x, valid=None, training=False):
        for index, dense in enumerate(self.hidden):
            x = dense(x)
            if self.config.normalization == "batch":
                x = self.norms[index](x, valid=valid, training=training)
            elif self.config.normalization == "layer":
                x = self.norms[index](x)
            x = self.activation(x)
            if self.dropouts:
                x = self.dropouts[index](x, training=training)
        return self.output_layer(x)

    def l2_penalty(self):
        """Returns each member's L2 penalty on its hidden kernels, shape ``(k,)``."""
        total = ops.zeros((self.n_members,))
        if self.config.l2:
            for dense in self.hidden:
                total = total + self.config.l2 * ops.sum(ops.square(dense.kernel), axis=(1, 2))
        return total

    def member_weights(self, index: int) -> dict[str, list[np.ndarray]]:
        """Returns member ``index``'s weights by layer name, in Keras layer order."""
        layers = [*self.hidden, *self.norms, self.output_layer]
        return {
            layer.name: [np.asarray(ops.convert_to_numpy(w))[index] for w in layer.weights]
            for layer in layers
        }

    def count_member_params(self) -> int:
        """Returns the number of trainable parameters of one member."""
        return sum(int(np.prod(w.shape[1:])) for w in self.trainable_weights)


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

    def update_state(self, outputs, label_smoothing: float, prefix: str = "") -> None:
        losses, count, correct = member_losses(outputs, label_smoothing)
        self.sums[f"{prefix}loss_sum"].assign_add(losses * count)
        self.sums[f"{prefix}correct"].assign_add(correct)
        self.sums[f"{prefix}count"].assign_add(count)

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


def member_losses(outputs: dict, label_smoothing: float):
    """Each member's mean loss over its valid rows, its row count and its correct count.

    The loss is the categorical cross-entropy of the (smoothed) one-hot labels
    plus the member's L2 penalty, as Keras reports a single network's loss.

    Returns:
        ``(losses, count, correct)``, each of shape ``(k,)``.
    """
    logits, labels, valid = outputs["logits"], outputs["labels"], outputs["valid"]
    n_classes = logits.shape[-1]
    targets = ops.one_hot(labels, n_classes)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / n_classes
    cross_entropy = -ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1)
    weights = ops.cast(valid, logits.dtype)
    cross_entropy = ops.where(valid, cross_entropy, 0.0)
    count = ops.sum(weights, axis=1)
    hits = ops.cast(ops.argmax(logits, axis=-1) == labels, logits.dtype) * weights
    losses = ops.sum(cross_entropy, axis=1) / ops.maximum(count, 1.0) + outputs["penalty"]
    return losses, count, ops.sum(hits, axis=1)


class StackTrainer(keras.Model):
    """Trains a :class:`StackedNetwork`: one Keras step is one epoch of every member.

    Its input is a dict of row indices into ``features``/``labels`` (held as
    non-trainable variables): ``steps`` ``(S, k, batch)``, one epoch's steps,
    and ``val`` ``(k, V)``, every member's validation rows; ``-1`` marks padding.

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
        self.label_smoothing = float(label_smoothing)
        self.features = self.add_weight(
            shape=features.shape,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(features),
            trainable=False,
            name="features",
        )
        self.labels = self.add_weight(
            shape=labels.shape,
            dtype="int32",
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(labels, "int32"),
            trainable=False,
            name="labels",
        )
        self.member_metrics = MemberMetrics(network.n_members, with_validation)
        network.build()
        self.built = True

    def call(self, indices, training=False):
        valid = indices >= 0
        rows = ops.where(valid, indices, 0)
        # Padded slots read a zero row, so nothing non-finite can leak from them.
        x = ops.where(ops.expand_dims(valid, -1), ops.take(self.features, rows, axis=0), 0.0)
        return {
            "logits": self.network(x, valid=valid, training=training),
            "labels": ops.take(self.labels, rows, axis=0),
            "valid": valid,
            "penalty": self.network.l2_penalty(),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # The sum over members: each member's gradient is its own loss's gradient.
        losses, _, _ = member_losses(y_pred, self.label_smoothing)
        return ops.sum(losses)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.member_metrics.update_state(y_pred, self.label_smoothing)
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
                self.member_metrics.update_state(outputs, self.label_smoothing, prefix="val_")
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
            self.member_metrics.update_state(outputs, self.label_smoothing, prefix="val_")
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


@dataclass
class StackedFit:
    """The result of :func:`fit_stacked`: the trained members and their histories."""

    network: StackedNetwork
    histories: list[dict[str, list[float]]]
    _predictor: keras.Model | None = field(default=None, repr=False)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Returns every member's class probabilities for ``X``: ``(k, n, C)``."""
        if self._predictor is None:
            self._predictor = _Predictor(self.network, name="member_predictor")
        X = np.asarray(X, dtype="float32")
        n_members = self.network.n_members
        parts = []
        for start in range(0, max(len(X), 1), PREDICT_CHUNK):
            chunk = X[start : start + PREDICT_CHUNK]
            padded = -(-max(len(chunk), 1) // PREDICT_ROUNDING) * PREDICT_ROUNDING
            batch = np.zeros((n_members, padded, X.shape[1]), dtype="float32")
            batch[:, : len(chunk)] = chunk
            probabilities = self._predictor.predict_on_batch(batch)
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
        return plain_network(self.stack.network, self.index)


def release_compiled() -> None:
    """Frees what one search trial built before the next, which builds its own.

    Each trial is a new network, so its model, data on the device and
    compiled training step are of no use to the next; Keras's global state
    keeps them referenced and they sit in reference cycles, so a long search
    would otherwise grow with every trial. ``clear_session`` drops that state
    and runs one garbage collection, which frees them (and JAX's compiled
    programs of the dead functions). JAX's small shared functions (weight
    initializers by shape) stay compiled: measured on an 8-trial search,
    ``jax.clear_caches()`` as well saved 58 MB of 935 and cost 12% more time (one run each).
    """
    keras.backend.clear_session()


def plain_network(network: StackedNetwork, index: int):
    """Builds :func:`zoo.network.build_dense_model`'s network with member ``index``'s weights.

    The network is compiled with a fresh optimizer (the stack's optimizer
    state is not carried over).
    """
    model = build_dense_model(
        network.config, network.input_dim, network.n_classes, network.member_weights(index)
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
            shuffling, dropout and the random augmented copies.
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
    # Every random draw is seeded explicitly (numpy for the initial weights and
    # the shuffling, the dropout layers' own seeds): keras.utils.set_random_seed
    # would import TensorFlow, seconds of start-up, to seed it too.
    network = StackedNetwork(config, features.shape[1], n_classes, n_members, int(seed))
    copies = n_copies(config.augment)
    if copies > 1:
        # Members train on every copy of their rows; validation keeps the
        # original rows (copy 0 of the bank), so it never sees a transformed image.
        n_rows = len(features)
        features = augment_bank(features, config.augment, int(seed))
        labels = np.tile(np.asarray(labels), copies)
        train_rows = [expand_rows(rows, n_rows, copies) for rows in train_rows]
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

    trainer = StackTrainer(
        network,
        np.asarray(features, dtype="float32"),
        np.asarray(labels, dtype="int32"),
        config.label_smoothing,
        with_validation=val_rows is not None,
    )
    trainer.compile(optimizer=make_optimizer(config, total_steps))
    watch = _WatchLoss()
    history = trainer.fit(
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
    return StackedFit(network, histories)
