"""Inference on a Coral Edge TPU through libedgetpu's TFLite delegate.

This backend runs inside a worker process (:mod:`edged.infer.worker`), so that an abort, a
segfault or a hang in the delegate never takes the daemon down.  A device can be opened by
one process at a time: the worker of a device loads its delegate once and every Edge TPU
model on that device gets an interpreter with that same delegate.  Loading fails with the
runtime's own exceptions: ``OSError`` when the library is missing, ``ValueError`` when no
device answers, ``RuntimeError`` at ``allocate_tensors`` when an Edge TPU model meets no
delegate.
"""

from __future__ import annotations

import logging
from typing import Any

from edged.config import ModelConfig
from edged.infer.base import TFLiteBackend, register
from edged.infer.model import ModelFile
from edged.infer.runtime import get_runtime

log = logging.getLogger(__name__)


def delegate_options(cfg: ModelConfig) -> dict[str, str]:
    options = dict(cfg.edgetpu_options)
    if cfg.edgetpu_device:
        options["device"] = cfg.edgetpu_device
    return options


def load_edgetpu_delegate(cfg: ModelConfig) -> Any:
    """``load_delegate(model.edgetpu_library, {device: ...})``; raises OSError/ValueError."""
    try:
        return get_runtime().load_delegate(cfg.edgetpu_library, delegate_options(cfg))
    except AttributeError as exc:  # a library without the delegate plugin entry points
        raise OSError(f"{cfg.edgetpu_library} is not a TFLite delegate: {exc}") from exc


@register
class EdgeTpuBackend(TFLiteBackend):
    type_key = "edgetpu"

    def __init__(self, model: ModelFile, cfg: ModelConfig, delegate: Any = None) -> None:
        """``delegate``: the device's, already loaded (shared by every interpreter of the
        device in the worker process); None loads one for this model."""
        if delegate is None:
            delegate = load_edgetpu_delegate(cfg)
        super().__init__(model, cfg, delegates=[delegate])
        self._delegate = delegate
