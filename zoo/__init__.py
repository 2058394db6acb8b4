"""digits-zoo's model zoo: datasets, the dense-net search space and the models.

Importing ``zoo`` fills the model registry; it does not import Keras and sets
no environment variable (scikit-learn, which it imports, sets its own
``KMP_*`` ones). A program that trains networks calls
:func:`zoo.environment.set_process_defaults` before Keras is imported, for
digits-zoo's defaults (the JAX backend, quiet TensorFlow, JAX's persistent
compilation cache).
"""

# Importing the modules that define entries registers them (as timm's
# models/__init__.py does): the registry itself imports no model module.
from zoo import baselines, entries  # noqa: F401
from zoo.data import Dataset, load_dataset
from zoo.errors import DataError, ZooError
from zoo.registry import create_model, list_models, model_entry, register_model
from zoo.space import DenseConfig, space_names

__all__ = [
    "Dataset",
    "DataError",
    "DenseConfig",
    "ZooError",
    "create_model",
    "list_models",
    "load_dataset",
    "model_entry",
    "register_model",
    "space_names",
]
