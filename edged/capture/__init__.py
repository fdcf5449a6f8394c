"""Frame sources.  One file per backend, registered by the config's ``type``."""

from __future__ import annotations

from typing import Any

from edged.capture import picamera2, replay
from edged.capture.base import SOURCES, Frame, FrameSource

__all__ = ["SOURCES", "Frame", "FrameSource", "open_source", "picamera2", "replay"]


def open_source(cfg: Any, input_size: tuple[int, int]) -> FrameSource:
    """Build the source named by ``cfg.type``; ``input_size`` is the (width, height) the
    preprocessing needs (the model input, enlarged by the center crop)."""
    cls = SOURCES.get(cfg.type)
    if cls is None:
        raise ValueError(f"capture type {cfg.type!r} is unknown; valid: {', '.join(SOURCES)}")
    return cls(cfg, input_size)  # type: ignore[call-arg]
