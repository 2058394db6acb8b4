"""The model zoo: a small registry of named scikit-learn classifiers.

The registry is a leaf: it imports no model module. The modules that define
entries (:mod:`zoo.baselines`, :mod:`zoo.entries`) call :func:`register_model`
when imported, and importing the ``zoo`` package imports them all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoo.errors import ZooError


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: how to make it and what it is."""

    name: str
    kind: str
    description: str
    factory: Callable[..., Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, kind: str, description: str):
    """Registers a factory ``factory(seed=0, **overrides)`` under ``name``.

    Args:
        name: the zoo name; it encodes the shape (``dense_2x256``, ``knn_k3``).
        kind: ``keras`` or ``sklearn``.
        description: one line for ``digits-zoo list``.

    Raises:
        ValueError: the name is already registered.
    """

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, kind, description, factory)
        return factory

    return decorator


def list_models(pattern: str = "*", kind: str | None = None) -> list[str]:
    """Returns the registered names matching a shell-style pattern, sorted."""
    return sorted(
        name
        for name, entry in _REGISTRY.items()
        if fnmatch.fnmatch(name, pattern) and (kind is None or entry.kind == kind)
    )


def model_entry(name: str) -> ModelEntry:
    """Returns the registry entry for ``name``.

    Raises:
        ZooError: no such model; the message lists the valid names.
    """
    if name not in _REGISTRY:
        raise ZooError(
            f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))} "
            "(see digits-zoo list)"
        )
    return _REGISTRY[name]


def create_model(name: str, seed: int = 0, **overrides: Any):
    """Returns a new, unfitted classifier of the zoo.

    Args:
        name: a name from :func:`list_models`.
        seed: seeds whatever is random in the model.
        **overrides: estimator parameters to change (``create_model("knn_k3",
            n_neighbors=5)``).

    Raises:
        ZooError: an unknown name or parameter.
    """
    estimator = model_entry(name).factory(seed=seed)
    if overrides:
        valid = estimator.get_params()
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ZooError(
                f"{name} has no parameter {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        estimator.set_params(**overrides)
    return estimator
