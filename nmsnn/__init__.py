"""nmsnn: spiking neural networks that classify and regress tabular data."""

from nmsnn.errors import CheckpointError, ConfigError, DataError, NmsnnError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "NmsnnError",
    "SpikingClassifier",
    "SpikingRegressor",
    "__version__",
    "from_nir",
]


def __getattr__(name: str):
    # the estimators pull in Lightning and scikit-learn: import them on first use
    if name in ("SpikingClassifier", "SpikingRegressor"):
        from nmsnn import estimators

        return getattr(estimators, name)
    if name == "from_nir":  # NIR graphs as nmsnn models (the export extra's nir package)
        from nmsnn.neuromorphic import from_nir

        return from_nir
    raise AttributeError(f"module 'nmsnn' has no attribute {name!r}")
