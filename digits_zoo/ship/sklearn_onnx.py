"""ONNX files of scikit-learn models, written by skl2onnx, with the export's input and outputs.

skl2onnx converts the fitted estimator itself (its trees, support vectors,
stored neighbours, weights), taking pixels already scaled to ``[0, 1]`` and
returning ``label`` and ``probabilities``. Around it go the export's
conventions, so that the file is called like a network's: a ``Div`` node
first, from the raw ``pixels`` input, and the label renamed ``class``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from digits_zoo.ship.layout import INPUT_NAME, OUTPUT_NAMES
from zoo.errors import ZooError

# The name skl2onnx's input gets; the export's raw ``pixels`` are divided into it.
_SCALED = "scaled_pixels"


def write_sklearn_onnx(estimator: Any, path: str | Path, *, pixel_max: float) -> Path:
    """Writes a fitted scikit-learn classifier as an ONNX file that takes raw pixels.

    Args:
        estimator: the fitted classifier (trained on pixels divided by ``pixel_max``).
        path: the ``.onnx`` file to write.
        pixel_max: the largest raw pixel value (16 for the bundled digits).

    Returns:
        ``path``.

    Raises:
        ZooError: skl2onnx cannot convert this estimator.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    n_features = int(estimator.n_features_in_)
    try:
        with warnings.catch_warnings():
            # skl2onnx reads SVC attributes scikit-learn 1.9 deprecates (probA_, probB_):
            # a warning the user can do nothing about.
            warnings.simplefilter("ignore", FutureWarning)
            model = convert_sklearn(
                estimator,
                initial_types=[(_SCALED, FloatTensorType([None, n_features]))],
                # Probabilities as one float tensor, not a list of {class: probability} maps.
                options={id(estimator): {"zipmap": False}},
            )
    except Exception as error:  # skl2onnx raises many kinds for what it cannot convert.
        raise ZooError(
            f"skl2onnx cannot convert {type(estimator).__name__} to ONNX "
            f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200]}); "
            "export it without --format onnx"
        ) from None
    graph = model.graph
    outputs = {output.name: output for output in graph.output}
    if set(outputs) != {"label", "probabilities"}:
        raise ZooError(
            f"skl2onnx gave {type(estimator).__name__} the outputs {sorted(outputs)} (expected "
            "label and probabilities); export it without --format onnx"
        )
    if outputs["label"].type.tensor_type.elem_type != TensorProto.INT64:
        raise ZooError(
            f"skl2onnx gave {type(estimator).__name__} labels that are not integers; export "
            "it without --format onnx"
        )
    probabilities = onnx.ValueInfoProto()
    probabilities.CopyFrom(outputs["probabilities"])
    # Raw pixels in: the scaling is the graph's first node.
    graph.initializer.append(
        numpy_helper.from_array(np.asarray(pixel_max, dtype="float32"), name="pixel_max")
    )
    graph.node.insert(0, helper.make_node("Div", [INPUT_NAME, "pixel_max"], [_SCALED]))
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", n_features])
    )
    # The label out as ``class``, next to ``probabilities``, as the SavedModel names them.
    graph.node.append(helper.make_node("Identity", ["label"], [OUTPUT_NAMES[1]]))
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(OUTPUT_NAMES[1], TensorProto.INT64, ["n"]),
            probabilities,
        ]
    )
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path
