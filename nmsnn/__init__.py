"""nmsnn: spiking neural networks that classify and regress tabular data."""

from nmsnn.errors import CheckpointError, ConfigError, DataError, NmsnnError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "DataError", "NmsnnError", "__version__"]
