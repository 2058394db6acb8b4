"""TensorFlow Serving's REST API: its request and response JSON, model status and metadata.

This module follows TensorFlow Serving's REST API documentation
(``tensorflow_serving/g3doc/api_rest.md``) for a model whose ``serving_default``
signature takes one input, ``pixels``, and returns two outputs,
``probabilities`` and ``class`` (the signature ``digits-zoo export`` writes;
scikit-learn exports are served as if they had it too):

* predict requests in the row format, ``{"instances": [image, ...]}`` or
  ``{"instances": [{"pixels": image}, ...]}``, are answered
  ``{"predictions": [{"probabilities": [...], "class": c}, ...]}``;
* requests in the columnar format, ``{"inputs": tensor}`` or
  ``{"inputs": {"pixels": tensor}}``, are answered
  ``{"outputs": {"probabilities": [[...], ...], "class": [c, ...]}}``;
* ``signature_name`` may be given and must then be ``serving_default``: the
  SavedModel's second signature, ``network`` (the bare network, on pixels
  scaled to 0..1), is for ``tensorflow_model_server`` and is neither listed in
  the metadata nor served here;
* pixels are JSON numbers: ``true``, ``false``, strings and nulls are refused,
  as TensorFlow Serving refuses them for a ``DT_FLOAT`` input.

An image is a flat list of the dataset's raw pixels (64 values ``0..16`` for
the bundled digits) or the same as nested rows (``8 x 8``, or ``8 x 8 x 1``).
The functions here take parsed JSON and return JSON-ready dicts; the HTTP side
is :mod:`digits_zoo.serve.app`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digits_zoo.serve.errors import RequestError
from digits_zoo.ship.inputs import as_rows
from digits_zoo.ship.layout import SAVED_MODEL, SIGNATURE
from digits_zoo.ship.load import LoadedExport

INPUT = "pixels"
OUTPUTS = ("probabilities", "class")
METHOD = "tensorflow/serving/predict"
_REQUEST_KEYS = ("signature_name", "instances", "inputs")
# The SavedModel's second signature (see digits_zoo.ship.export), not served here.
NETWORK_SIGNATURE = "network"


def parse_predict(request: Any, export: LoadedExport) -> tuple[np.ndarray, bool]:
    """Reads a predict request's images as raw pixel rows.

    Args:
        request: the parsed JSON body.
        export: the export the request is for (its image shape and pixel range).

    Returns:
        ``(rows, columnar)``: float32 ``[n, n_features]``, and whether the request
        used the columnar (``inputs``) format.

    Raises:
        RequestError: a request TensorFlow Serving would refuse, or images of the
            wrong shape, non-numeric or out of range.
    """
    if not isinstance(request, dict):
        raise RequestError(
            f"the request body must be a JSON object (got a JSON {_json_type(request)}); send "
            '{"instances": [image, ...]} or {"inputs": {"pixels": [image, ...]}}'
        )
    unknown = sorted(set(request) - set(_REQUEST_KEYS))
    if unknown:
        raise RequestError(
            f"unknown key in the predict request (got {unknown[0]!r}); a predict request holds "
            f"{', '.join(repr(key) for key in _REQUEST_KEYS)} only"
        )
    signature = request.get("signature_name", SIGNATURE)
    if signature == NETWORK_SIGNATURE:
        raise RequestError(
            f"signature_name {NETWORK_SIGNATURE!r} is not served here (got {signature!r}): it is "
            "the SavedModel's bare network on pixels scaled to 0..1, for tensorflow_model_server; "
            f"leave signature_name out (or send {SIGNATURE!r}) to send raw pixels"
        )
    if signature != SIGNATURE:
        raise RequestError(
            f"unknown signature_name (got {signature!r}); this model serves {SIGNATURE!r} only"
        )
    if ("instances" in request) == ("inputs" in request):
        raise RequestError(
            "a predict request needs either 'instances' (row format) or 'inputs' (columnar "
            f"format), not {'both' if 'inputs' in request else 'neither'}"
        )
    if "instances" in request:
        return _instances(request["instances"], export), False
    return _inputs(request["inputs"], export), True


def _instances(instances: Any, export: LoadedExport) -> np.ndarray:
    if not isinstance(instances, list) or not instances:
        raise RequestError(
            f"'instances' must be a non-empty list of images (got {_describe(instances)})"
        )
    named = [isinstance(item, dict) for item in instances]
    if any(named):
        if not all(named):
            raise RequestError(
                "'instances' mixes objects and plain values; give every instance as "
                f'{{"{INPUT}": image}} or every one as a bare image'
            )
        for item in instances:
            if set(item) != {INPUT}:
                keys = ", ".join(repr(key) for key in item) or "none"
                raise RequestError(
                    f"each instance object must hold the one input {INPUT!r} (got keys {keys})"
                )
        instances = [item[INPUT] for item in instances]
    array = _tensor(instances, "instances")
    rows = as_rows(array, export, "instances")
    if len(rows) != len(array):
        # as_rows also reads one bare image; in the row format the list holds images.
        raise RequestError(
            f"'instances' must be a list of images, each {_image_shapes(export)} (got shape "
            f"{list(array.shape)})"
        )
    return rows


def _inputs(inputs: Any, export: LoadedExport) -> np.ndarray:
    if isinstance(inputs, dict):
        if set(inputs) != {INPUT}:
            keys = ", ".join(repr(key) for key in inputs) or "none"
            raise RequestError(
                f"'inputs' must name the one input {INPUT!r} (got keys {keys}), or be the "
                "tensor itself"
            )
        inputs = inputs[INPUT]
    return as_rows(_tensor(inputs, "inputs"), export, "inputs")


def refuse_booleans(request: Any) -> None:
    """Refuses a request holding a JSON ``true`` or ``false`` anywhere (numpy reads them as 1, 0).

    Raises:
        RequestError: a boolean found.
    """
    stack = [request]
    while stack:
        value = stack.pop()
        if isinstance(value, bool):
            raise RequestError(
                f"pixels must be numbers (got {str(value).lower()}); send 1 or 0, not true or false"
            )
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())


def _tensor(value: Any, source: str) -> np.ndarray:
    """A JSON (nested) list as a numeric array; strings, booleans, nulls and ragged lists refused."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(
            f"{source}: the nested lists are ragged (rows of different lengths); every image "
            "needs the same shape"
        ) from None
    if array.dtype.kind not in "iuf":
        found = {"b": "booleans", "U": "strings", "S": "strings"}.get(
            array.dtype.kind, "nulls, objects or numbers too large"
        )
        raise RequestError(f"{source}: pixels must be numbers (got {found})")
    return array


def _image_shapes(export: LoadedExport) -> str:
    shapes = [(export.n_features,), export.image_shape, (*export.image_shape, 1)]
    return " or ".join(str(list(shape)) for shape in shapes)


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list"
    return f"a JSON {_json_type(value)}"


def predict_response(
    probabilities: np.ndarray, classes: np.ndarray, columnar: bool
) -> dict[str, Any]:
    """The predict response for the request's format.

    Args:
        probabilities: float32 ``[n, n_classes]``.
        classes: the predicted label of each row.
        columnar: answer in the columnar format (``outputs``) rather than the row
            format (``predictions``).
    """
    probability_rows = probabilities.tolist()
    labels = [int(label) for label in classes]
    if columnar:
        return {"outputs": {"probabilities": probability_rows, "class": labels}}
    return {
        "predictions": [
            {"probabilities": row, "class": label}
            for row, label in zip(probability_rows, labels, strict=True)
        ]
    }


def version_status(versions: list[int], failed: dict[int, str] | None = None) -> dict[str, Any]:
    """The model status response (``GetModelStatusResponse``), newest version first.

    Args:
        versions: the versions loaded and serving (``AVAILABLE``).
        failed: versions that failed to load -> why; reported as TensorFlow
            Serving reports them (state ``END``, error code ``UNKNOWN``, the
            message).
    """
    states = {number: ("AVAILABLE", "OK", "") for number in versions}
    for number, message in (failed or {}).items():
        states.setdefault(number, ("END", "UNKNOWN", message))
    return {
        "model_version_status": [
            {
                "version": str(number),
                "state": state,
                "status": {"error_code": code, "error_message": message},
            }
            for number, (state, code, message) in sorted(states.items(), reverse=True)
        ]
    }


def metadata_response(name: str, version: int, signature_def: dict[str, Any]) -> dict[str, Any]:
    """The model metadata response (``GetModelMetadataResponse``) of one version."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature_def}}},
    }


def signature_def(export: LoadedExport) -> dict[str, Any]:
    """The ``serving_default`` SignatureDef of an export, as TensorFlow Serving writes it in JSON.

    A SavedModel's is read from its ``saved_model.pb``; a scikit-learn export,
    which has none, gets the same inputs and outputs with its own tensor names.
    """
    if export.format == "tf_saved_model":
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        model = saved_model_pb2.SavedModel.FromString((export.path / SAVED_MODEL).read_bytes())
        return json_format.MessageToDict(
            model.meta_graphs[0].signature_def[SIGNATURE],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    n_classes = len(export.classes)
    return {
        "inputs": {INPUT: _tensor_info(INPUT, "DT_FLOAT", None)},
        "outputs": {
            "class": _tensor_info("class", "DT_INT64", [-1]),
            "probabilities": _tensor_info("probabilities", "DT_FLOAT", [-1, n_classes]),
        },
        "method_name": METHOD,
        "defaults": {},
    }


def _tensor_info(name: str, dtype: str, shape: list[int] | None) -> dict[str, Any]:
    dims = [{"size": str(size), "name": ""} for size in shape or []]
    return {
        "name": name,
        "dtype": dtype,
        "tensor_shape": {"dim": dims, "unknown_rank": shape is None},
    }
