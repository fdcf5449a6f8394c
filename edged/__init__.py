"""edged: classify camera frames with TensorFlow Lite and publish the results over MQTT."""

# the one place the version is written (pyproject.toml reads it from here); importing
# importlib.metadata to look it up would cost every start a tenth of a second
__version__ = "0.1.0"

__all__ = ["__version__"]
