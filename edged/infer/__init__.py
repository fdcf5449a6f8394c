"""Inference: load a model on a backend, and turn frames into classifications."""

from edged.infer.base import BACKENDS, InferenceBackend, OutputSpec, TFLiteBackend
from edged.infer.engine import Engine, open_engine, resolve_model_config
from edged.infer.model import ModelError, ModelFile, inspect_model

__all__ = [
    "BACKENDS",
    "Engine",
    "InferenceBackend",
    "ModelError",
    "ModelFile",
    "OutputSpec",
    "TFLiteBackend",
    "inspect_model",
    "open_engine",
    "resolve_model_config",
]
