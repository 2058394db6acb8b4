"""Named dense-network entries of the zoo."""

from __future__ import annotations

from zoo.dense import DenseNetClassifier
from zoo.registry import register_model


def _dense(n_layers: int, units: int, dropout_rate: float):
    def factory(seed: int = 0) -> DenseNetClassifier:
        return DenseNetClassifier(
            n_layers=n_layers, units=units, dropout_rate=dropout_rate, epochs=40, seed=seed
        )

    return factory


for _layers, _units, _dropout in ((1, 64, 0.0), (2, 256, 0.2), (3, 512, 0.3)):
    register_model(
        f"dense_{_layers}x{_units}",
        "keras",
        f"dense net, {_layers} hidden layer{'s' if _layers > 1 else ''} of {_units} relu units, "
        f"dropout {_dropout:g}, Adam, 40 epochs",
    )(_dense(_layers, _units, _dropout))
