"""Running the portable model files with their own runtimes: ONNX Runtime and LiteRT.

Both files hold the same function as the SavedModel's ``serving_default``
signature: ``pixels`` in (float32 ``[n, n_features]``, raw values as the
dataset stores them), ``probabilities`` (float32 ``[n, n_classes]``) and
``class`` (int64 ``[n]``) out. These are the runtimes a user of the file runs
it with (``onnxruntime``, ``ai_edge_litert``), so loading and predicting here
is what export verifies and what ``predict`` and ``evaluate`` do.

A file is read once, as bytes, and handed to its runtime from memory, so its
checksum is taken of exactly the bytes that run. An ONNX file that keeps
tensors in other files (ONNX's external data) is refused before ONNX Runtime
sees it, and so is a LiteRT file that names operators beyond LiteRT's
builtins (TensorFlow's own ``Flex`` operators can read and write files).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from digits_zoo.ship.layout import INPUT_NAME, OUTPUT_NAMES, SIGNATURE
from zoo.errors import ZooError


class UnloadableModel(ZooError):
    """A model file its runtime cannot load, or that is not a digits-zoo export.

    Attributes:
        reason: what the runtime said, in one line.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def sha256(data: bytes) -> str:
    """The hex SHA-256 of a model file's bytes, as ``metadata.json`` records it."""
    return hashlib.sha256(data).hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


class OnnxModel:
    """An ONNX file loaded into an ONNX Runtime session (CPU).

    Args:
        data: the file's bytes.
        source: the file's path, for messages.
        n_features: pixels per image the export takes.

    Raises:
        ZooError: the bytes are not an ONNX model ONNX Runtime can run, or its
            input and outputs are not the export's.
    """

    def __init__(self, data: bytes, source: str | Path, n_features: int):
        import onnxruntime

        external = _external_tensors(data)
        if external:
            # From bytes, ONNX Runtime looks for external data under the working folder:
            # a crafted file could read files there into its weights, and out through its answers.
            raise UnloadableModel(
                f"{str(source)!r} keeps tensors in other files (ONNX external data: "
                f"{', '.join(external[:5])}); digits-zoo's exports are one self-contained file, "
                "export again",
                f"external data {', '.join(external[:5])}",
            )
        options = onnxruntime.SessionOptions()
        # Errors only: a session otherwise logs warnings about the graph's shapes.
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                data, options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own kinds for a damaged file.
            raise UnloadableModel(
                f"onnxruntime cannot load {str(source)!r} ({_first_line(error)}); the export "
                "is damaged, export again",
                _first_line(error),
            ) from None
        inputs = {node.name: list(node.shape) for node in self.session.get_inputs()}
        outputs = sorted(node.name for node in self.session.get_outputs())
        shape = inputs.get(INPUT_NAME)
        if (
            len(inputs) != 1
            or shape is None
            or len(shape) != 2
            or shape[1] != n_features
            or not set(OUTPUT_NAMES) <= set(outputs)
        ):
            reason = f"inputs {inputs}, outputs {outputs}"
            raise UnloadableModel(
                f"{str(source)!r} is not a digits-zoo ONNX export (got {reason}; expected "
                f"{INPUT_NAME!r} of shape [n, {n_features}] in, {list(OUTPUT_NAMES)} out); "
                "export again",
                reason,
            )

    def predict_proba(self, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(probabilities, classes)`` for float32 raw pixel rows."""
        probabilities, classes = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x_raw})
        return np.asarray(probabilities, dtype="float32"), np.asarray(classes, dtype="int64")


class LiteRTModel:
    """A LiteRT (``.tflite``) file loaded into LiteRT's interpreter (``ai_edge_litert``).

    The interpreter holds one set of buffers, so calls from several threads
    (a server's) take turns.

    Args:
        data: the file's bytes.
        source: the file's path, for messages.
        n_features: pixels per image the export takes.

    Raises:
        ZooError: the bytes are not a LiteRT model, or its signature is not the export's.
    """

    def __init__(self, data: bytes, source: str | Path, n_features: int):
        from ai_edge_litert.interpreter import Interpreter

        try:
            # LiteRT's verifier checks the FlatBuffer first: a cut or malformed file stops here.
            self.interpreter = Interpreter(model_content=data)
        except Exception as error:  # LiteRT raises ValueError or RuntimeError for a damaged file.
            raise UnloadableModel(
                f"LiteRT cannot load {str(source)!r} ({_first_line(error)}); the export is "
                "damaged, export again",
                _first_line(error),
            ) from None
        custom = _custom_operators(data)
        if custom:
            # This interpreter has no TensorFlow operators (Flex) to run them; runtimes that
            # do can read and write files with them.
            raise UnloadableModel(
                f"{str(source)!r} uses operators outside LiteRT's builtins (got "
                f"{', '.join(custom)}); digits-zoo's exports use builtins only, export again",
                f"custom operators {', '.join(custom)}",
            )
        signature = self.interpreter.get_signature_list().get(SIGNATURE, {})
        shape = None
        if signature.get("inputs") == [INPUT_NAME]:
            self.runner = self.interpreter.get_signature_runner(SIGNATURE)
            shape = list(self.runner.get_input_details()[INPUT_NAME]["shape_signature"])
        if (
            shape is None
            or len(shape) != 2
            or shape[1] != n_features
            or not set(OUTPUT_NAMES) <= set(signature.get("outputs", []))
        ):
            reason = f"signature {SIGNATURE!r} is {signature or 'missing'}"
            raise UnloadableModel(
                f"{str(source)!r} is not a digits-zoo LiteRT export ({reason}; expected "
                f"{INPUT_NAME!r} of shape [n, {n_features}] in, {list(OUTPUT_NAMES)} out); "
                "export again",
                reason,
            )
        self._lock = threading.Lock()

    def predict_proba(self, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(probabilities, classes)`` for float32 raw pixel rows."""
        with self._lock:
            # The runner resizes its input to the batch; its outputs are the interpreter's
            # own buffers, which the next call overwrites, so they are copied.
            outputs = self.runner(**{INPUT_NAME: x_raw})
            probabilities = np.array(outputs[OUTPUT_NAMES[0]], dtype="float32")
            classes = np.array(outputs[OUTPUT_NAMES[1]], dtype="int64")
        return probabilities, classes


def _custom_operators(data: bytes) -> list[str]:
    """The custom operators (TensorFlow's own ``Flex*`` ones among them) a LiteRT file uses.

    Read from the file's operator table, after LiteRT's verifier has accepted the bytes.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    names = []
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.CUSTOM:
            names.append((code.CustomCode() or b"?").decode("utf-8", "replace"))
    return sorted(set(names))


def _external_tensors(data: bytes) -> list[str]:
    """The tensors an ONNX model keeps in other files (ONNX's external data), by name.

    Every tensor is looked at: initializers, sparse ones, constants in node
    attributes, in subgraphs and in the model's functions. Bytes onnx cannot
    parse give none: ONNX Runtime then says what is wrong with them.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        return []

    def in_nodes(nodes):
        for node in nodes:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    yield from in_graph(attribute.g)
                for graph in attribute.graphs:
                    yield from in_graph(graph)

    def in_graph(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        yield from in_nodes(graph.node)

    tensors = [*in_graph(model.graph)]
    for function in model.functions:
        tensors.extend(in_nodes(function.node))
    return [
        tensor.name or "(unnamed)"
        for tensor in tensors
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    ]
