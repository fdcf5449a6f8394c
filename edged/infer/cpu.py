"""Inference on the CPU with the TFLite runtime's built-in kernels (XNNPACK)."""

from __future__ import annotations

from edged.config import ModelConfig
from edged.infer.base import TFLiteBackend, register
from edged.infer.model import ModelFile


@register
class CpuBackend(TFLiteBackend):
    type_key = "cpu"

    def __init__(self, model: ModelFile, cfg: ModelConfig) -> None:
        super().__init__(model, cfg, delegates=None)
