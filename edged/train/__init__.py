"""Transfer learning on the device: retrain the last layer of an int8 classifier."""

from edged.train.pipeline import TrainError, TrainOptions, train

__all__ = ["TrainError", "TrainOptions", "train"]
