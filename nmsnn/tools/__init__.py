"""Tools beside the framework: the backend benchmark (``python -m nmsnn.tools.bench``) and the
comparison with non-spiking models behind ``nmsnn-compare``."""
