"""Fitted models on disk: Keras networks as ``.keras``, scikit-learn models as ``.skops``.

Neither format runs arbitrary code when loaded from a trusted run directory;
skops refuses any type it was not told to trust.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.dense import DenseNetClassifier, load_dense, save_dense
from zoo.ensemble import DenseEnsembleClassifier, load_ensemble, save_ensemble
from zoo.errors import ZooError

MODELS_DIR = "models"


def save_fitted(estimator: Any, run_dir: str | Path, name: str) -> str:
    """Saves a fitted leaderboard model under ``run_dir/models``.

    Returns:
        The path relative to ``run_dir`` (the leaderboard's ``model_path``).
    """
    folder = Path(run_dir) / MODELS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(estimator, DenseNetClassifier):
        target = folder / f"{name}.keras"
        save_dense(estimator, target)
    elif isinstance(estimator, DenseEnsembleClassifier):
        target = folder / f"{name}.keras"
        save_ensemble(estimator, target)
    else:
        import skops.io

        target = folder / f"{name}.skops"
        temporary = folder / f".{name}.skops.tmp"
        skops.io.dump(estimator, temporary)
        temporary.replace(target)
    return str(target.relative_to(run_dir))


def load_fitted(path: str | Path) -> Any:
    """Loads a model saved by :func:`save_fitted`, trusting only scikit-learn and numpy types.

    Raises:
        ZooError: the file is missing or of an unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"fitted model not found (got {str(path)!r})")
    if path.suffix == ".keras":
        sidecar_path = Path(f"{path}.json")
        sidecar = (
            json.loads(sidecar_path.read_text(encoding="utf-8")) if sidecar_path.is_file() else {}
        )
        if sidecar.get("ensemble"):
            return load_ensemble(path, sidecar)
        return load_dense(path)
    if path.suffix == ".skops":
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        allowed = [t for t in untrusted if t.startswith(("sklearn.", "numpy."))]
        refused = sorted(set(untrusted) - set(allowed))
        if refused:
            raise ZooError(
                f"{path} holds types outside scikit-learn and numpy ({', '.join(refused)}); "
                "refusing to load it"
            )
        return skops.io.load(path, trusted=allowed)
    raise ZooError(f"unknown model file (got {str(path)!r}); expected .keras or .skops")
