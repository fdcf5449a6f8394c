"""Find a TFLite runtime: ai_edge_litert, then tflite_runtime, then tensorflow.lite."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow.lite", "tensorflow.lite.python.interpreter"),
)


class RuntimeMissing(ImportError):
    pass


@dataclass(frozen=True)
class Runtime:
    name: str
    Interpreter: Any
    load_delegate: Any


@cache
def get_runtime() -> Runtime:
    errors = []
    for name, module in CANDIDATES:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return Runtime(name, mod.Interpreter, mod.load_delegate)
    raise RuntimeMissing(
        "no TFLite runtime found; install ai-edge-litert (pip install ai-edge-litert). Tried: "
        + "; ".join(errors)
    )
