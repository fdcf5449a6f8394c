"""The tensor contract between preprocessing and inference: what a model's input wants
(:class:`InputSpec`, reported by a backend) and a frame prepared for it (:class:`ModelInput`).
Neither stage imports the other; both import this."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class InputSpec:
    """What a model's input tensor wants.

    ``scale``/``zero_point`` are the tensor's own quantization parameters (0/0 for float).
    ``mean``/``std`` describe the normalization the model was trained with:
    ``x = (pixel - mean) / std``.  When they are ``None`` on a quantized input, pixels are
    fed unchanged (uint8) or shifted by 128 (int8), which is what quantized image
    classifiers conventionally expect.
    """

    height: int
    width: int
    dtype: np.dtype[np.generic]
    scale: float = 0.0
    zero_point: int = 0
    mean: float | None = None
    std: float | None = None

    @property
    def quantized(self) -> bool:
        return np.issubdtype(self.dtype, np.integer)


@dataclass(frozen=True)
class ModelInput:
    """A preprocessed 1xHxWxC tensor and the input spec it was made for: a backend runs it
    only if that is its own spec (see :class:`edged.infer.supervisor.Supervisor`)."""

    tensor: npt.NDArray[np.generic]
    spec: InputSpec


@dataclass(frozen=True)
class SensorOutput:
    """A class vector computed on the camera's own sensor (the IMX500), handed over beside
    its frame: the frame needs no preprocessing and no invoke, only classification.

    ``scores`` are probabilities (a softmax the network asks for is already applied) or
    scores as the network gives them; ``labels`` are the network's own, or None for the
    CPU model's (when the class counts match) or class indices."""

    scores: npt.NDArray[np.float32]
    labels: tuple[str, ...] | None
    labels_source: str
    model: str  # the network's file name
    backend: str
    ms: float  # the sensor's DNN time
