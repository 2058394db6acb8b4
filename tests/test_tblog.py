"""TensorBoard logs of search trials: readable by TensorBoard, written without TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search.tblog import write_trial_log

HISTORIES = [{"loss": [1.0, 0.5], "val_accuracy": [0.8, 0.9]}, {"loss": [0.8, 0.3]}]


def test_events_hold_fold_mean_curves_hparams_and_cv_score(tmp_path):
    write_trial_log(
        tmp_path, "random_0", {"units": 256, "activation": "relu"}, HISTORIES, [0.9, 0.8]
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((tmp_path / "random_0").iterdir())
    assert len(files) == 1 and files[0].name.startswith("events.out.tfevents.")
    events = EventAccumulator(str(tmp_path / "random_0"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("epoch_loss")] == [
        (1, pytest.approx(0.9)),
        (2, pytest.approx(0.4)),
    ]
    assert [e.value for e in events.Scalars("epoch_val_accuracy")] == pytest.approx([0.8, 0.9])
    assert events.Scalars("cv_accuracy")[0].value == pytest.approx(0.85)
    plugin = events.PluginTagToContent("hparams")
    assert list(plugin) == ["_hparams_/session_start_info"]
    assert b"relu" in plugin["_hparams_/session_start_info"]


def test_writing_logs_does_not_import_tensorflow(tmp_path):
    # A process of its own: this test process may have imported TensorFlow already.
    code = (
        "import sys; from search.tblog import write_trial_log; "
        f"write_trial_log({str(tmp_path)!r}, 't', {{'units': 8}}, [{{'loss': [1.0]}}], [0.5]); "
        "print('tensorflow' in sys.modules)"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert finished.stdout.strip() == "False"
    assert list((tmp_path / "t").glob("events.out.tfevents.*"))
