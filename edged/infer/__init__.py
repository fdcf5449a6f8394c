"""Inference backends: load a model on a device (CPU in-process, a worker process, the Edge
TPU) and run preprocessed tensors.  Nothing here knows about pixels or classes; the
:mod:`edged.engine` puts preprocessing, a backend and classification together."""

from edged.infer.base import BACKENDS, InferenceBackend, OutputSpec, TFLiteBackend
from edged.infer.model import ModelError, ModelFile, inspect_model

__all__ = [
    "BACKENDS",
    "InferenceBackend",
    "ModelError",
    "ModelFile",
    "OutputSpec",
    "TFLiteBackend",
    "inspect_model",
]
