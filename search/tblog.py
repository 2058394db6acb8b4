"""TensorBoard logs for search trials, written without importing TensorFlow.

Each trial gets ``RUN_DIR/logs/<trial>/``: the fold-mean learning curves as
scalars per epoch and the trial's hyperparameters with its CV score for the
HParams dashboard, so ``tensorboard --logdir RUN_DIR/logs`` shows the search.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import metadata, plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

# TensorBoard's own EventFileWriter opens its file through ``tf.io.gfile``,
# which imports TensorFlow when it is installed: seconds and some 600 MB per
# search process, for a file that plain ``open`` writes the same.
FILE_VERSION = "brain.Event:2"


def _hparams_summary(hparams: dict[str, Any], group_name: str) -> Summary:
    info = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for name in sorted(hparams):
        value = hparams[name]
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = float(value)
        else:
            info.hparams[name].string_value = str(value)
    summary = Summary()
    summary.value.add(
        tag=metadata.SESSION_START_INFO_TAG,
        metadata=metadata.create_summary_metadata(
            plugin_data_pb2.HParamsPluginData(session_start_info=info)
        ),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def _scalar(tag: str, value: float) -> Summary:
    return Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])


def write_trial_log(
    log_dir: str | Path,
    trial_name: str,
    hparams: dict[str, Any],
    histories: list[dict[str, list[float]]],
    cv_scores: list[float],
) -> None:
    """Writes one trial's TensorBoard events.

    Args:
        log_dir: the run's ``logs`` folder.
        trial_name: the trial's folder name (its group in the HParams view).
        hparams: the hyperparameter values.
        histories: per-fold Keras histories; their mean per epoch is logged.
        cv_scores: per-fold validation accuracies; their mean is ``cv_accuracy``.
    """
    folder = Path(log_dir) / trial_name
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    events = [
        Event(wall_time=now, file_version=FILE_VERSION),
        Event(wall_time=now, step=0, summary=_hparams_summary(hparams, trial_name)),
    ]
    keys = sorted({key for history in histories for key in history})
    for key in keys:
        curves = [history[key] for history in histories if key in history]
        length = min(len(curve) for curve in curves)
        mean = np.mean([curve[:length] for curve in curves], axis=0)
        for epoch, value in enumerate(mean, start=1):
            events.append(Event(wall_time=now, step=epoch, summary=_scalar(f"epoch_{key}", value)))
    events.append(
        Event(wall_time=now, step=0, summary=_scalar("cv_accuracy", float(np.mean(cv_scores))))
    )
    # TensorBoard's file name; written under a hidden name first, so a killed
    # trial leaves no half-written events file for TensorBoard to read.
    name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}"
    partial = folder / f".{name}.partial"
    with open(partial, "wb") as handle:
        writer = RecordWriter(handle)
        for event in events:
            writer.write(event.SerializeToString())
    partial.replace(folder / name)
